"""Every tutorial notebook runs top to bottom under nbval, as a newcomer would run it.

nbval re-executes each notebook in a fresh kernel and compares every cell's output with the one
stored in the notebook, except cells marked ``# NBVAL_IGNORE_OUTPUT`` (widgets, timings, figures
that vary between machines). Each notebook runs in a copy inside a temporary folder, so what it
writes never lands in the repository.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 300       # generous: several test suites share two CPU cores
# Parameters a notebook is run with here instead of its own: the quickstart trains for about half a
# minute per run so that a person sees the curves grow; its outputs do not depend on the sizes.
TEST_PARAMETERS = {"01_quickstart": {"ROWS": 4000, "EPOCHS": 8}}


def _code(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def _marks(path: Path) -> list[pytest.MarkDecorator]:
    code = _code(path)
    marks = [pytest.mark.kernel, pytest.mark.slow]
    if 'backend="tensorflow"' in code:
        marks.append(pytest.mark.tensorflow)
    if "BackgroundServer" in code:
        marks.append(pytest.mark.server)
    return marks


def test_the_series_is_there() -> None:
    names = [p.stem for p in NOTEBOOKS]
    for topic in ["quickstart", "schedulers_and_early_stopping", "sequence_models", "tensorflow_vs_pytorch",
                  "http_api", "load_and_predict", "resume_after_crash", "compare_runs", "sweeps"]:
        assert any(name.endswith(topic) for name in names), f"no notebook on {topic} in {names}"
    numbers = [int(name[:2]) for name in names]
    assert numbers == sorted(set(numbers)), f"notebook numbers repeat: {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_ready_for_nbval(path: Path) -> None:
    """Parameters come first, and the notebook is stored executed (nbval compares against those
    outputs) without widget state (stale after a run and large)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and code[0].source.startswith("# Parameters"), \
        f"{path.name}: the first code cell should be '# Parameters' with the knobs a reader may change"
    unexecuted = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not unexecuted, (f"{path.name}: code cells {unexecuted} are stored unexecuted, so nbval has no "
                            f"output to compare; run the notebook top to bottom and save it")
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), \
        f"{path.name}: stored from a run out of order ({counts}); restart the kernel, run all, save"
    errors = [i for i, c in enumerate(code) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: code cells {errors} are stored with errors"
    assert "widgets" not in nb.metadata, \
        f"{path.name}: holds saved widget state; save without it (Settings > Save Widget State off)"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel is not python3"


def _set_parameters(path: Path, values: dict[str, int]) -> None:
    """Rewrite assignments in ``path``'s Parameters cell (the first code cell), keeping the rest."""
    if not values:
        return
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    for name, value in values.items():
        cell.source, found = re.subn(rf"(?m)^{name}\s*=\s*[^#\n]*", f"{name} = {value}  ", cell.source)
        assert found == 1, f"{path.name}'s Parameters cell no longer sets {name}"
    nbformat.write(nb, path)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=_marks(p)) for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(path: Path, tmp_path: Path) -> None:
    if 'backend="tensorflow"' in _code(path) and importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed: pip install -e '.[tensorflow]'")
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    _set_parameters(copy, TEST_PARAMETERS.get(path.stem, {}))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", f"--nbval-cell-timeout={CELL_TIMEOUT_S}",
         "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-W", "ignore::DeprecationWarning", copy.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"{path.name} failed under nbval:\n{report}"
    cells = sum(1 for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) == cells, f"expected {cells} cells to pass:\n{report}"


APP = NOTEBOOK_DIR / "app.ipynb"


def test_the_app_notebook_is_stored_without_outputs() -> None:
    """``notebooks/app.ipynb`` is what ``voila`` serves (not a tutorial, so not in the numbered
    series nbval runs): the panel and its data-file picker, nothing else shown, nothing stored."""
    nb = nbformat.read(APP, as_version=4)
    nbformat.validate(nb)
    assert all(c.cell_type == "code" for c in nb.cells), "Voila would show markdown cells: keep the app to the panel"
    assert nb.cells[0].source.startswith("# Parameters")
    assert all(not c.outputs and c.execution_count is None for c in nb.cells), "store the app without outputs"


@pytest.mark.kernel
@pytest.mark.slow
def test_the_app_notebook_shows_only_the_panel_with_its_picker(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(APP, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                   ).execute()
    outputs = [o for c in nb.cells for o in c.outputs]
    assert [o.output_type for o in outputs] == ["execute_result"], outputs
    assert "application/vnd.jupyter.widget-view+json" in outputs[0].data
