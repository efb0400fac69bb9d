"""Comparing runs: their curves overlaid in bqplot, a sortable table of what differs, and
checkboxes choosing which runs show.

``compare_runs(source)`` takes run folders, a folder holding runs, in-memory ``trainer.Trainer``
runs or a mix, and works from the saved files alone in a fresh kernel. :class:`RunsView` lists the
runs under a folder plus runs added while the kernel lives (``add_run``): the panel's "Runs" tab.
Reading the runs is :mod:`trainer.run_records`' job; this module only draws them.
"""
from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import bqplot as bq
import ipywidgets as W
import numpy as np
import pandas as pd

from trainer.run_records import RunRecord, comparison_table, find_runs, load_runs, metrics_frame, read_run, record_of

from .change_marks import ChangeMarks
from .epoch_axis import epoch_axis, show_epochs
from .legend import Item, legend_html
from .run_labels import RunLabel, run_names

# matplotlib's tab10: one color per run, in order.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
# figure: (title, y label, history key or keys as (train, val))
FIGURES: dict[str, tuple[str, str, tuple[Optional[str], str]]] = {
    "loss": ("Loss", "loss", ("train_loss", "val_loss")),
    "accuracy": ("Accuracy", "accuracy", ("train_accuracy", "val_accuracy")),
    "mae": ("MAE", "MAE", ("train_mae", "val_mae")),
    "learning_rate": ("Learning rate", "learning rate", (None, "learning_rate")),
}
SPLITS = {"train and validation": ("train", "val"), "validation": ("val",), "train": ("train",)}


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _figure(title: str, y_label: str) -> tuple[bq.Figure, bq.LinearScale, bq.LinearScale]:
    x, y = bq.LinearScale(min=1.0, max=2.0), bq.LinearScale()
    axes = [epoch_axis(x),
            bq.Axis(scale=y, label=y_label, side="left", grid_lines="dashed", tick_format=".3~g",
                    label_offset="48px")]
    # No legend inside the plot (it covered the y-axis labels and a curve): an HTML one goes below.
    fig = bq.Figure(marks=[], axes=axes, title=title, animation_duration=0,
                    title_style={"font-size": "14px"}, fig_margin={"top": 40, "bottom": 40, "left": 66, "right": 15},
                    layout=W.Layout(flex="1 1 0%", height="280px", min_width="280px"))
    return fig, x, y


class RunComparison(W.VBox):
    """Overlaid curves, run checkboxes and a sortable table for a list of :class:`RunRecord`.

    One color per run; train curves solid, validation dashed (``split`` shows one or both). A run
    is identified by its ``label`` (``shown``, ``show_only``) and shown by ``names``: what sets it
    apart (:func:`run_labels.run_names`), in full in its hover text.
    """

    def __init__(self, records: Iterable[RunRecord] = ()):
        self.records: list[RunRecord] = []
        self.checkboxes: dict[str, W.Checkbox] = {}
        self.names: dict[str, RunLabel] = {}
        self.figures: dict[str, bq.Figure] = {}
        self._scales: dict[str, tuple[bq.LinearScale, bq.LinearScale]] = {}
        self._marks: dict[str, dict[tuple[str, str], bq.Mark]] = {}   # label -> (figure, split) -> mark
        self._rows: list[W.HBox] = []
        for name, (title, y_label, _keys) in FIGURES.items():
            fig, x, y = _figure(title, y_label)
            self.figures[name], self._scales[name] = fig, (x, y)
        self.split = W.ToggleButtons(options=list(SPLITS), value="train and validation", description="curves",
                                     style={"button_width": "150px"})
        self.split.observe(lambda _c: self._update_marks(), "value")
        self.run_list = W.VBox(layout=W.Layout(max_height="220px", overflow="auto"))
        self.all_button = W.Button(description="all", layout=W.Layout(width="60px"), tooltip="Show every run")
        self.none_button = W.Button(description="none", layout=W.Layout(width="60px"), tooltip="Hide every run")
        self.all_button.on_click(lambda _b: self.show_only([r.label for r in self.records]))
        self.none_button.on_click(lambda _b: self.show_only([]))
        self.sort_by = W.Dropdown(description="sort by", options=["run"], value="run")
        self.order = W.ToggleButtons(options=["ascending", "descending"], value="ascending",
                                     style={"button_width": "100px"})
        self.sort_by.observe(lambda _c: self._render_table(), "value")
        self.order.observe(lambda _c: self._render_table(), "value")
        # The table scrolls inside the panel's width rather than widening it.
        self.table = W.HTML(layout=W.Layout(width="100%", max_width="100%", overflow="auto"))
        self.legend_note = W.HTML("<small>solid: train &middot; dashed: validation &middot; dotted, with a "
                                  "triangle: a change made while the run trained (hover it)</small>")
        self.legend = W.HTML(layout=W.Layout(width="100%"))
        self.figure_box = W.Box([], layout=W.Layout(display="flex", flex_flow="row wrap", width="100%"))
        wrap = W.Layout(display="flex", flex_flow="row wrap", max_width="100%")
        super().__init__([W.Box([W.VBox([W.HTML("<b>Runs</b>"), self.run_list,
                                         W.HBox([self.all_button, self.none_button])]),
                                 W.VBox([self.split, self.legend_note])], layout=wrap),
                          self.figure_box, self.legend, W.Box([self.sort_by, self.order], layout=wrap), self.table],
                         layout=W.Layout(width="100%", max_width="100%"))
        self.set_runs(list(records))

    # ------------------------------------------------------------------ public
    @property
    def shown(self) -> list[str]:
        """Labels of the runs whose curves show."""
        return [r.label for r in self.records if self.checkboxes[r.label].value]

    def show_only(self, labels: Iterable[str]) -> None:
        wanted = set(labels)
        unknown = wanted - set(self.checkboxes)
        if unknown:
            raise KeyError(f"no runs named {sorted(unknown)}; the runs are {[r.label for r in self.records]}")
        with self.hold_trait_notifications():
            for label, box in self.checkboxes.items():
                box.value = label in wanted
        self._update_marks()

    @property
    def metrics(self) -> pd.DataFrame:
        """Every run's per-epoch metrics, long: ``run``, ``epoch``, ``metric``, ``value``."""
        return metrics_frame(self.records)

    @property
    def table_frame(self) -> pd.DataFrame:
        """The table as shown: best metrics, state and differing config fields, sorted."""
        return _sorted(comparison_table(self.records), self.sort_by.value, self.order.value == "ascending")

    def set_runs(self, records: list[RunRecord]) -> None:
        """Show these runs (checkbox choices are kept for labels seen before)."""
        previous = {label: box.value for label, box in self.checkboxes.items()}
        for marks in self._marks.values():
            for mark in marks.values():
                mark.close()
        for row in self._rows:
            for child in row.children:
                child.close()
            row.close()
        self.records = list(records)
        self.names = {r.label: name for r, name in zip(self.records, run_names(self.records))}
        self._marks, self.checkboxes = {}, {}
        rows = []
        for index, record in enumerate(self.records):
            color = color_of(index)
            name = self.names[record.label]
            box = W.Checkbox(value=previous.get(record.label, True), description=name.short, tooltip=name.full,
                             indent=False, layout=W.Layout(width="auto"))
            box.observe(lambda _c: self._update_marks(), "value")
            self.checkboxes[record.label] = box
            swatch = W.HTML(f"<span style='display:inline-block;width:14px;height:4px;background:{color};"
                            f"vertical-align:middle'></span>", layout=W.Layout(width="22px"))
            rows.append(W.HBox([swatch, box]))
            self._marks[record.label] = self._make_marks(record, color)
        self._rows = rows
        self.run_list.children = rows
        tasks = {r.task for r in self.records}
        # Figures without data are left out, not hidden: a figure drawn at a width of 0 gives its plot
        # area a negative size, which the browser reports as an error for each of its rectangles.
        hidden = {"accuracy"} if tasks and "classification" not in tasks else set()
        hidden |= set() if "regression" in tasks else {"mae"}
        self.figure_box.children = [fig for name, fig in self.figures.items() if name not in hidden]
        columns = ["run", *comparison_table(self.records).columns] if self.records else ["run"]
        keep = self.sort_by.value if self.sort_by.value in columns else ("best_loss" if "best_loss" in columns else "run")
        with self.sort_by.hold_trait_notifications():
            self.sort_by.options = columns
            self.sort_by.value = keep
        self._update_marks()
        self._render_table()

    # ------------------------------------------------------------------ drawing
    def _make_marks(self, record: RunRecord, color: str) -> dict[tuple[str, str], bq.Mark]:
        marks: dict[tuple[str, str], bq.Mark] = {}
        epochs = np.array([float(e["epoch"]) for e in record.history])
        for name, (_title, _y, (train_key, val_key)) in FIGURES.items():
            x, y = self._scales[name]
            for split, key in (("train", train_key), ("val", val_key)):
                if key is None or not any(key in e for e in record.history):
                    continue
                values = np.array([_number(e.get(key)) for e in record.history])
                dashed = split == "val" and name != "learning_rate"
                marks[(name, split)] = bq.Lines(x=epochs, y=values, scales={"x": x, "y": y}, colors=[color],
                                                line_style="dashed" if dashed else "solid", labels=[record.label],
                                                display_legend=False, stroke_width=2)
            if record.config_changes:       # a steered run: where it was changed, in its color
                changes = ChangeMarks(x, color, label=f"{record.label}: change")
                changes.show(record.config_changes)
                marks[(name, "change line")], marks[(name, "change")] = changes.marks
        return marks

    def _update_marks(self) -> None:
        splits = SPLITS[self.split.value]
        shown = [r for r in self.records if self.checkboxes[r.label].value]
        for name, fig in self.figures.items():
            marks = [mark for record in shown for (figure, split), mark in self._marks[record.label].items()
                     if figure == name and (split in splits or name == "learning_rate"
                                            or split.startswith("change"))]
            if list(fig.marks) != marks:
                fig.marks = marks
        # One epoch range for every figure, from the longest run shown, on whole-epoch ticks.
        last = max((int(e["epoch"]) for r in shown for e in r.history), default=1)
        for fig in self.figures.values():
            show_epochs(fig.axes[0], 1, max(last, 2))
        colors = {r.label: color_of(i) for i, r in enumerate(self.records)}
        items = [Item(self.names[r.label].short, colors[r.label], title=self.names[r.label].full) for r in shown]
        html = legend_html(items) if items else ""
        if self.legend.value != html:
            self.legend.value = html

    def _render_table(self) -> None:
        if not self.records:
            self.table.value = "<i>No runs to compare yet.</i>"
            return
        frame = self.table_frame
        colors = {r.label: color_of(i) for i, r in enumerate(self.records)}
        head = "".join(f"<th style='text-align:left;padding:2px 8px'>{escape(str(c))}</th>"
                       for c in ["run", *frame.columns])
        body = []
        # The run's name wraps within a bounded width; the values keep to one line and the table
        # scrolls sideways inside the panel's width when they need more.
        name_cell = "padding:2px 8px;min-width:8em;max-width:18em"
        cell = "padding:2px 8px;white-space:nowrap"
        for label, row in frame.iterrows():
            cells = [f"<td style='{name_cell}' title='{escape(self.names[label].full, quote=True)}'>"
                     f"<span style='color:{colors[label]}'>&#9632;</span> {escape(self.names[label].short)}</td>"]
            cells += [f"<td style='{cell}'>{escape(_format(v))}</td>" for v in row.tolist()]
            body.append("<tr>" + "".join(cells) + "</tr>")
        self.table.value = (f"<div style='max-width:100%;overflow-x:auto'><table style='border-collapse:collapse;"
                            f"font-size:13px'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def compare_runs(source: Any) -> RunComparison:
    """A widget comparing runs: ``source`` is a run folder, a folder holding runs (searched
    recursively, newest first), a ``trainer.Trainer``, or a list of any of these."""
    return RunComparison(load_runs(source))


class RunsView(W.VBox):
    """The runs under a folder plus the runs of this session, compared: the panel's "Runs" tab.

    ``add_run(run)`` keeps an in-memory run (every Start of a panel); it is shown as it stands and
    refreshed when a change is applied to it (steering) and when it ends. ``refresh()`` re-reads the folder.
    """

    def __init__(self, folder: Union[str, Path, None] = None, runs: Iterable[Any] = ()):
        self.folder = W.Text(value=str(folder) if folder is not None else "", description="folder",
                             placeholder="a folder holding saved runs", layout=W.Layout(width="420px", max_width="70%"))
        self.refresh_button = W.Button(description="Refresh", icon="refresh", tooltip="Read the folder again")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.message = W.HTML()
        self.comparison = RunComparison()
        self._runs: list[Any] = []
        self._unsubscribe: dict[int, Callable[[], None]] = {}
        super().__init__([W.HBox([self.folder, self.refresh_button]), self.message, self.comparison])
        for run in runs:
            self._runs.append(run)
            self._follow(run)
        self.refresh()

    @property
    def records(self) -> list[RunRecord]:
        return self.comparison.records

    def add_run(self, run: Any) -> None:
        """Keep ``run`` (a trainer.Trainer) for comparison; it is re-read when it ends."""
        if any(r is run for r in self._runs):
            return
        self._runs.append(run)
        self._follow(run)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the folder and the kept runs and redraw."""
        records: list[RunRecord] = []
        kept_paths = set()
        for number, run in enumerate(self._runs, start=1):
            record = record_of(run)
            if record.label == "run":
                record.label = f"run {number}"
            if record.path is not None:
                kept_paths.add(_resolved(record.path))
            records.append(record)
        records.reverse()          # newest Start first
        problems = []
        saved = 0
        text = self.folder.value.strip()
        if text:
            try:
                for path in find_runs(text):
                    if _resolved(path) in kept_paths:
                        continue
                    try:
                        records.append(read_run(path))
                        saved += 1
                    except (OSError, ValueError) as exc:
                        problems.append(str(exc))
            except FileNotFoundError as exc:
                problems.append(str(exc))
        self.comparison.set_runs(load_runs(records) if records else [])
        parts = [f"{len(self._runs)} run(s) of this session"] if self._runs else []
        if text:
            parts.append(f"{saved} saved under {escape(text)}")
        note = ", ".join(parts) if parts else "No runs yet: start one, or name a folder holding saved runs."
        if problems:
            note += "<br><span style='color:#c62828'>" + "<br>".join(escape(p) for p in problems[:5]) + "</span>"
        self.message.value = note

    def _follow(self, run: Any) -> None:
        state = getattr(getattr(run, "state", None), "value", getattr(run, "state", None))
        if state not in ("pending", "running", "paused") or not hasattr(run, "add_callback"):
            return

        def on_event(event: str, _data: dict[str, Any]) -> None:
            if event == "config_change":        # the steered column and markers follow at once
                self.refresh()
            elif event == "train_end":
                stop = self._unsubscribe.pop(id(run), None)
                if stop is not None:
                    stop()
                self.refresh()

        self._unsubscribe[id(run)] = run.add_callback(on_event)

    def close(self) -> None:
        for stop in self._unsubscribe.values():
            stop()
        self._unsubscribe.clear()
        self.comparison.close()
        super().close()


def _sorted(frame: pd.DataFrame, column: str, ascending: bool) -> pd.DataFrame:
    if column == "run" or column not in frame.columns:
        return frame.sort_index(ascending=ascending, kind="stable")
    values = frame[column]
    numeric = pd.to_numeric(values, errors="coerce")
    key = numeric if numeric.notna().sum() == values.notna().sum() else values.map(lambda v: "" if v is None else str(v))
    order = key.sort_values(ascending=ascending, na_position="last", kind="stable").index
    return frame.loc[order]


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _resolved(path: Path) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except OSError:
        return Path(path)
