"""The layout's rules, checked on the source: no import circle anywhere (imports inside functions
count too), the trainer core imports no UI or server code, and no module grows past a size a
reader can hold in their head.

Imports under ``if TYPE_CHECKING:`` never run: they name a type for annotations, and a part may
name the class that composes it (the panel's actions name the panel they act for) without that
being a circle.

A small AST walk rather than import-linter: the rules are three, and the walk needs no plugin
configuration or extra dependency for CI.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "epoch_widgets")
UI_OR_SERVER = ("epoch_widgets", "ipywidgets", "bqplot", "traitlets", "tornado", "jupyter_server", "IPython",
                "ipykernel")
MAX_LINES = 420


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports, wherever the import statement sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                 for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import mod" imports the module pkg.mod when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a list of modules, or [] when there is none."""
    state: dict[str, int] = {}       # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_no_module_imports_itself_through_others():
    cycle = find_cycle(import_graph())
    assert not cycle, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name, path", sorted((n, p) for n, p in modules().items() if n.startswith("trainer")))
def test_the_trainer_core_imports_no_ui_or_server_code(name, path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        bad = [n for n in names if n.split(".")[0] in UI_OR_SERVER]
        assert not bad, f"{name} imports {bad}: trainer/ must work without the notebook and server faces"


@pytest.mark.parametrize("name, path", sorted(modules().items()))
def test_modules_stay_small(name, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by responsibility (at most {MAX_LINES})"


# (part, parts it must not import): the charts are shared by the panel, its Runs tab and
# compare_runs, so they know nothing of the panel; the server extension runs without widgets.
LAYERS = (("epoch_widgets.charts", ("epoch_widgets.panel", "epoch_widgets.server")),
          ("epoch_widgets.server", ("epoch_widgets.panel", "epoch_widgets.charts")),
          ("epoch_widgets.panel", ("epoch_widgets.server",)))


@pytest.mark.parametrize("part, forbidden", LAYERS)
def test_the_widget_packages_keep_their_layers(part, forbidden):
    graph = import_graph()
    assert any(name.startswith(part + ".") for name in graph), f"{part} has no modules"
    bad = sorted(f"{name} -> {target}" for name, targets in graph.items()
                 if name == part or name.startswith(part + ".")
                 for target in targets if target.startswith(forbidden))
    assert not bad, f"{part} must not import {forbidden}: " + ", ".join(bad)
