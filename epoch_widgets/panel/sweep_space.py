"""The Sweep tab's search-space form: which config fields to vary, and over what.

One row per field a sweep may vary, from the config schema: a checkbox, the kind of range
(log-uniform, uniform, or a list of choices) and its bounds or choices, prefilled from the field's
limits and the panel's current settings (``prefill``). ``space()`` turns the ticked rows into the
``trainer.sweep`` search space; what the sweep itself refuses (a range outside the field's limits)
comes back as its ConfigError naming the field.
"""
from __future__ import annotations

from html import escape
from typing import Any, Callable, Optional

import ipywidgets as W

import trainer
from trainer.config import FieldSpec
from trainer.sweep.space import variable_fields

from . import fields

KINDS = ("log-uniform", "uniform", "choice")
CHOICE_SEPARATOR = "|"
# Ticked when the tab first shows: the example space.
DEFAULT_VARIED = ("learning_rate", "dropout_rate")
LOG_FIELDS = ("learning_rate", "eta_min", "min_delta")
VARIABLE = frozenset(spec.name for spec in variable_fields())


def searchable(spec: FieldSpec) -> bool:
    """Whether the form offers ``spec``: a field a sweep may vary (``trainer.sweep.variable_fields``)
    that is a number, a choice or a list of units."""
    return (spec.name in VARIABLE and not spec.optional and spec.type in ("int", "float", "choice", "list[int]")
            and len(spec.choices) != 1)


def prefill(spec: FieldSpec, current: Any) -> tuple[str, Any]:
    """(kind, bounds or choices) for ``spec`` around its ``current`` value, inside its limits."""
    lo = spec.minimum if spec.minimum is not None else -float("inf")
    hi = spec.maximum if spec.maximum is not None else float("inf")
    if spec.type == "choice":
        return "choice", list(spec.choices)
    if spec.type == "list[int]":
        units = list(current or spec.default or [64])
        return "choice", [[max(1, u // 2) for u in units], units, [u * 2 for u in units]]
    if spec.type == "int":
        values = sorted({int(min(max(v, lo), hi)) for v in (current // 2, current, current * 2)})
        return "choice", values
    if spec.name in LOG_FIELDS and current > 0:
        return "log-uniform", [max(current / 10, lo), min(current * 10, hi)]
    top = min(hi, current * 2.5) if current > 0 else hi
    if not top < float("inf"):
        top = (current or 1.0) * 10
    bottom = lo if lo > -float("inf") else current / 2
    # An open end of the field's range is not a value a trial may draw: stay a step inside it.
    step = (top - bottom) / 100
    return "uniform", [bottom + step if spec.exclusive_min and bottom == lo else bottom,
                       top - step if spec.exclusive_max and top == hi else top]


class SpaceRow:
    """One field's row: vary it or not, the kind of range, its bounds or its choices."""

    def __init__(self, spec: FieldSpec, on_change: Callable[[], None]) -> None:
        self.spec = spec
        self.codec = fields.TextCodec(spec)
        self.vary = W.Checkbox(value=False, description=fields.label(spec.name), indent=False,
                               tooltip=f"vary {spec.name} between trials", layout=W.Layout(width="210px"))
        if spec.type == "float":
            kinds = list(KINDS)
        elif spec.type == "int":         # whole numbers: a few values, or any between two ends
            kinds = ["choice", "uniform", "log-uniform"]
        else:
            kinds = ["choice"]
        self.kind = W.Dropdown(options=kinds, value=kinds[0], layout=W.Layout(width="120px"))
        self.low = W.Text(layout=W.Layout(width="110px"), placeholder="from")
        self.high = W.Text(layout=W.Layout(width="110px"), placeholder="to")
        self.choices = W.Text(layout=W.Layout(width="330px"),
                              placeholder="e.g. 128, 64 | 256, 128" if spec.type == "list[int]" else "e.g. 16 | 32 | 64")
        self.hint = W.HTML(layout=W.Layout(margin="0 0 0 8px"))
        self.view = W.HBox([self.vary, self.kind, self.low, self.high, self.choices, self.hint],
                           layout=W.Layout(align_items="center", flex="0 0 auto"))
        self.edited = False          # a row the user changed keeps its values; the others follow the settings
        self._filling = False
        for widget in (self.vary, self.kind, self.low, self.high, self.choices):
            widget.observe(lambda _c: on_change(), "value")
        for widget in (self.kind, self.low, self.high, self.choices):
            widget.observe(lambda _c: setattr(self, "edited", self.edited or not self._filling), "value")
        self.kind.observe(lambda _c: self._show_kind(), "value")
        self._show_kind()

    def fill(self, current: Any) -> None:
        """Bounds or choices around ``current``, unless the user has edited this row."""
        if self.edited:
            return
        kind, values = prefill(self.spec, current)
        self._filling = True
        try:
            self.kind.value = kind if kind in self.kind.options else self.kind.options[0]
            if kind == "choice":
                self.choices.value = f" {CHOICE_SEPARATOR} ".join(self.codec.to_text(v) for v in values)
            else:
                self.low.value, self.high.value = (f"{v:.6g}" for v in values)
        finally:
            self._filling = False

    def _show_kind(self) -> None:
        ranged = self.kind.value != "choice"
        for widget, shown in ((self.low, ranged), (self.high, ranged), (self.choices, not ranged)):
            widget.layout.display = None if shown else "none"

    def read(self) -> tuple[Optional[tuple[str, Any]], Optional[str]]:
        """(kind, bounds or choices) when ticked and readable, else (None, what is wrong or None)."""
        if not self.vary.value:
            return None, None
        if self.kind.value == "choice":
            parts = [p for p in self.choices.value.split(CHOICE_SEPARATOR) if p.strip()]
            if not parts:
                return None, f"give the choices separated by {CHOICE_SEPARATOR!r}"
            try:
                values = [self.codec.parse(p) for p in parts]
            except ValueError as exc:
                return None, f"{exc} (choices are separated by {CHOICE_SEPARATOR!r})"
            return ("choice", values), None
        number = int if self.spec.type == "int" else float
        try:
            low, high = number(self.low.value), number(self.high.value)
        except ValueError:
            return None, f"give both ends of the range as {'whole ' if number is int else ''}numbers"
        if not low < high:
            return None, f"the range must go up: {low:g} is not below {high:g}"
        return (self.kind.value, [low, high]), None


class SpaceForm:
    """Rows for every field a sweep may vary (``view``); ``space()`` is the ticked rows' search space."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self.rows = {s.name: SpaceRow(s, on_change) for s in trainer.config_fields() if searchable(s)}
        for name in DEFAULT_VARIED:
            if name in self.rows:
                self.rows[name].vary.value = True
        self.view = W.VBox([r.view for r in self.rows.values()],
                           layout=W.Layout(max_height="240px", overflow="hidden auto", width="100%"))

    def prefill(self, config: dict[str, Any]) -> None:
        """Bounds and choices around ``config``'s values (the panel's current settings), in the rows
        the user has not edited."""
        for name, row in self.rows.items():
            row.fill(config.get(name, row.spec.default))

    def spec(self) -> tuple[dict[str, tuple[str, Any]], dict[str, str]]:
        """({field: (kind, bounds or choices)} for the ticked rows, {field: problem})."""
        chosen, problems = {}, {}
        for name, row in self.rows.items():
            value, problem = row.read()
            if value is not None:
                chosen[name] = value
            if problem is not None:
                problems[name] = problem
        return chosen, problems

    def show_problems(self, problems: dict[str, str]) -> None:
        for name, row in self.rows.items():
            text = problems.get(name, "")
            html = f"<span style='color:#d32f2f'>{escape(text)}</span>" if text else ""
            if row.hint.value != html:
                row.hint.value = html

    def space(self) -> dict[str, Any]:
        """The search space for ``trainer.sweep``; ValueError naming the fields whose rows are unreadable."""
        chosen, problems = self.spec()
        self.show_problems(problems)
        if problems:
            raise ValueError("; ".join(f"{n}: {p}" for n, p in problems.items()))
        return {name: to_distribution(kind, values) for name, (kind, values) in chosen.items()}

    def log_fields(self) -> list[str]:
        return [n for n, r in self.rows.items() if r.vary.value and r.kind.value == "log-uniform"]

    def set_varied(self, names: list[str]) -> None:
        for name, row in self.rows.items():
            row.vary.value = name in names


def to_distribution(kind: str, values: Any) -> Any:
    """``trainer.sweep``'s distribution for a row: log_uniform, uniform or choice."""
    if kind == "log-uniform":
        return trainer.log_uniform(*values)
    if kind == "uniform":
        return trainer.uniform(*values)
    return trainer.choice(values)
