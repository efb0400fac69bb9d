"""A sweep's trials drawn: their validation curves overlaid, each varied parameter against the
metric, and a sortable table of the trials.

Everything here is fed plain trial dicts (``number``, ``params``, ``state``, ``history``,
``best_metric``, ``epochs_done``, ``reason``), so a sweep followed live and a sweep read back from
its folder draw alike. Running trials are drawn bright, ended ones softer, pruned ones faded and
marked with a cross where they were cut off.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable, Optional, Sequence

import bqplot as bq
import ipywidgets as W
import numpy as np
import pandas as pd

from .compare import _format, _number, _sorted, color_of
from .epoch_axis import epoch_axis, show_epochs

RUNNING_OPACITY = 1.0
ENDED_OPACITY = 0.7
FADED_OPACITY = 0.25         # pruned, stopped or failed: still there to compare, out of the way
LIVE_STATES = ("running", "paused", "waiting")
FIXED_COLUMNS = ("trial", "state", "epochs")


def trial_table(trials: Sequence[dict[str, Any]], params: Sequence[str], metric: str) -> pd.DataFrame:
    """One row per trial: its number, each varied parameter, its best ``metric``, epochs and state."""
    rows = []
    for t in trials:
        row: dict[str, Any] = {"trial": t["number"]}
        for name in params:
            value = t.get("params", {}).get(name)
            row[name] = str(list(value)) if isinstance(value, (list, tuple)) else value
        row[f"best {metric}"] = t.get("best_metric")
        row["epochs"] = t.get("epochs_done", len(t.get("history") or ()))
        row["state"] = t.get("state")
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", *params, f"best {metric}", "epochs", "state"])


def best_trial(trials: Sequence[dict[str, Any]], direction: str) -> Optional[dict[str, Any]]:
    """The completed trial with the best metric (``direction`` "minimize" or "maximize"), if any."""
    done = [t for t in trials if t.get("state") == "completed" and _finite(t.get("best_metric"))]
    if not done:
        return None
    pick = min if direction == "minimize" else max
    return pick(done, key=lambda t: float(t["best_metric"]))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _opacity(state: str) -> float:
    if state in LIVE_STATES:
        return RUNNING_OPACITY
    return ENDED_OPACITY if state == "completed" else FADED_OPACITY


class SweepCurves:
    """Every trial's ``metric`` per epoch in one figure (``view``); pruned trials end in a cross."""

    def __init__(self, metric: str = "val_loss") -> None:
        self.metric = metric
        self.x, self.y = bq.LinearScale(min=1.0, max=2.0), bq.LinearScale()
        self.y_axis = bq.Axis(scale=self.y, label=metric, side="left", grid_lines="dashed", tick_format=".3~g",
                              label_offset="48px")
        self.lines: dict[int, bq.Lines] = {}
        self.pruned = bq.Scatter(x=np.zeros(0), y=np.zeros(0), scales={"x": self.x, "y": self.y}, marker="cross",
                                 default_size=48, colors=["#6b7280"], labels=["pruned"])
        self.view = bq.Figure(marks=[self.pruned], axes=[epoch_axis(self.x), self.y_axis], animation_duration=0,
                              title=f"Trials: {metric}", title_style={"font-size": "14px"},
                              fig_margin={"top": 40, "bottom": 40, "left": 66, "right": 15},
                              layout=W.Layout(flex="1 1 0%", height="300px", min_width="320px"))

    def update(self, trials: Sequence[dict[str, Any]], metric: Optional[str] = None) -> None:
        """Draw ``trials`` (new lines for new trials; existing ones get their new points and state)."""
        if metric is not None and metric != self.metric:
            self.metric, self.y_axis.label = metric, metric
            self.view.title = f"Trials: {metric}"
        cut_x, cut_y, last_epoch = [], [], 1
        for t in trials:
            epochs = np.array([float(h["epoch"]) for h in t.get("history") or ()])
            values = np.array([_number(h.get(self.metric)) for h in t.get("history") or ()])
            last_epoch = max(last_epoch, int(epochs[-1]) if len(epochs) else 1)
            line = self.lines.get(t["number"])
            if line is None:
                line = self.lines[t["number"]] = bq.Lines(
                    x=epochs, y=values, scales={"x": self.x, "y": self.y}, colors=[color_of(t["number"])],
                    labels=[f"trial {t['number']}"], stroke_width=2)
            elif len(line.x) != len(epochs) or not np.array_equal(np.asarray(line.y), values, equal_nan=True):
                with line.hold_sync():
                    line.x, line.y = epochs, values
            opacity = _opacity(str(t.get("state")))
            style = "dashed" if t.get("state") in ("pruned", "stopped", "failed") else "solid"
            if list(line.opacities or [None]) != [opacity] or line.line_style != style:
                with line.hold_sync():
                    line.opacities, line.line_style = [opacity], style
            if t.get("state") == "pruned" and len(epochs) and math.isfinite(values[-1]):
                cut_x.append(epochs[-1])
                cut_y.append(values[-1])
        marks = [*self.lines.values(), self.pruned]
        if list(self.view.marks) != marks:
            self.view.marks = marks
        if len(self.pruned.x) != len(cut_x) or not np.array_equal(np.asarray(self.pruned.x), cut_x):
            with self.pruned.hold_sync():
                self.pruned.x, self.pruned.y = np.array(cut_x, dtype=float), np.array(cut_y, dtype=float)
        show_epochs(self.view.axes[0], 1, max(last_epoch, 2))

    def clear(self) -> None:
        for line in self.lines.values():
            line.close()
        self.lines = {}
        self.view.marks = [self.pruned]
        self.pruned.x, self.pruned.y = np.zeros(0), np.zeros(0)


class ParamPlots:
    """One scatter per varied parameter: its value (x) against the trial's best metric (y)."""

    def __init__(self) -> None:
        self.figures: dict[str, bq.Figure] = {}
        self._marks: dict[str, bq.Scatter] = {}
        self.view = W.Box([], layout=W.Layout(display="flex", flex_flow="row wrap", width="100%"))

    def update(self, trials: Sequence[dict[str, Any]], params: Sequence[str], metric: str,
               log_params: Iterable[str] = ()) -> None:
        """Redraw for ``params`` (those in ``log_params`` on a log scale); trials without a metric are left out."""
        logs = set(log_params)
        for name in [n for n in self.figures if n not in params]:
            self.figures.pop(name).close()
            self._marks.pop(name).close()
        scored = [t for t in trials if _finite(t.get("best_metric"))]
        for name in params:
            values = [t.get("params", {}).get(name) for t in scored]
            numeric = all(_finite(v) for v in values)
            if name not in self.figures or self._kind(name) != (numeric, name in logs):
                self._make(name, numeric, name in logs, metric)
            mark = self._marks[name]
            x = np.array(values, dtype=float) if numeric else np.array([_category(v) for v in values], dtype=object)
            y = np.array([float(t["best_metric"]) for t in scored])
            colors = [color_of(t["number"]) for t in scored]
            opacities = [_opacity(str(t.get("state"))) for t in scored]
            if not numeric:
                mark.scales["x"].domain = sorted({_category(v) for v in values})
            with mark.hold_sync():
                mark.x, mark.y, mark.colors, mark.opacities = x, y, colors or ["#1f77b4"], opacities or [1.0]
            self.figures[name].axes[1].label = metric
        wanted = [self.figures[n] for n in params]
        if list(self.view.children) != wanted:
            self.view.children = wanted

    def _kind(self, name: str) -> tuple[bool, bool]:
        scale = self._marks[name].scales["x"]
        return not isinstance(scale, bq.OrdinalScale), isinstance(scale, bq.LogScale)

    def _make(self, name: str, numeric: bool, log: bool, metric: str) -> None:
        if name in self.figures:
            self.figures.pop(name).close()
            self._marks.pop(name).close()
        x = (bq.LogScale() if log else bq.LinearScale()) if numeric else bq.OrdinalScale()
        y = bq.LinearScale()
        mark = bq.Scatter(x=np.zeros(0), y=np.zeros(0), scales={"x": x, "y": y}, default_size=40,
                          stroke="#374151")
        axes = [bq.Axis(scale=x, label=name, tick_format=".3~g" if numeric else None),
                bq.Axis(scale=y, label=metric, side="left", tick_format=".3~g",
                        label_offset="48px")]
        self._marks[name] = mark
        self.figures[name] = bq.Figure(marks=[mark], axes=axes, title=f"{name} against {metric}",
                                       animation_duration=0, title_style={"font-size": "13px"},
                                       fig_margin={"top": 36, "bottom": 44, "left": 66, "right": 15},
                                       layout=W.Layout(flex="1 1 0%", height="240px", min_width="240px"))

    def close(self) -> None:
        for fig in self.figures.values():
            fig.close()
        for mark in self._marks.values():
            mark.close()
        self.view.close()


def _category(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class TrialsTable:
    """The trials as a sortable table (``view``): a column to sort by and the order; the best trial in bold."""

    def __init__(self) -> None:
        self.sort_by = W.Dropdown(description="sort by", options=["trial"], value="trial")
        self.order = W.ToggleButtons(options=["ascending", "descending"], value="ascending",
                                     style={"button_width": "100px"})
        self.html = W.HTML(layout=W.Layout(width="100%", max_width="100%", overflow="auto"))
        self.frame = trial_table([], [], "val_loss")
        self._best: Optional[int] = None
        self.sort_by.observe(lambda _c: self._render(), "value")
        self.order.observe(lambda _c: self._render(), "value")
        self.view = W.VBox([W.HBox([self.sort_by, self.order]), self.html], layout=W.Layout(width="100%"))
        self._render()

    @property
    def table_frame(self) -> pd.DataFrame:
        """The table as shown: sorted by the chosen column."""
        return _sorted(self.frame.set_index("trial", drop=False), self.sort_by.value,
                       self.order.value == "ascending").reset_index(drop=True)

    def update(self, trials: Sequence[dict[str, Any]], params: Sequence[str], metric: str,
               best: Optional[int]) -> None:
        self.frame, self._best = trial_table(trials, params, metric), best
        columns = list(self.frame.columns)
        keep = self.sort_by.value if self.sort_by.value in columns else "trial"
        if list(self.sort_by.options) != columns:
            with self.sort_by.hold_trait_notifications():
                self.sort_by.options = columns
                self.sort_by.value = keep
        self._render()

    def _render(self) -> None:
        if self.frame.empty:
            html = "<i>No trials yet: choose what to vary and press Start sweep.</i>"
        else:
            frame = self.table_frame
            cell = "padding:2px 8px;white-space:nowrap"
            head = "".join(f"<th style='text-align:left;{cell}'>{escape(str(c))}</th>" for c in frame.columns)
            body = []
            for _i, row in frame.iterrows():
                number = int(row["trial"])
                weight = "font-weight:bold;" if number == self._best else ""
                cells = [f"<td style='{cell}{weight}'>" + (f"<span style='color:{color_of(number)}'>&#9632;</span> "
                                                           if c == "trial" else "") + f"{escape(_format(v))}</td>"
                         for c, v in row.items()]
                body.append("<tr>" + "".join(cells) + "</tr>")
            html = (f"<table style='border-collapse:collapse;font-size:13px'><thead><tr>{head}</tr></thead>"
                    f"<tbody>{''.join(body)}</tbody></table>")
        if self.html.value != html:
            self.html.value = html
