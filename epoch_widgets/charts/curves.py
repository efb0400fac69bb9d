"""Live training curves in bqplot: loss, accuracy (or MAE) and learning rate, with HTML legends
that carry the current and best values, integer epoch ticks, a log scale for the loss, zoom,
and a tooltip on every epoch point.

The marks are created once; ``render()`` pushes only what changed since the last push, each mark
inside ``hold_sync()`` so one mark costs one message. Series longer than ``max_points`` are
downsampled (min and max of each bucket, so spikes survive), which makes a 10,000-epoch run cost
about what a 500-epoch run costs per refresh. While training, new epochs are pushed at most once
per ``EPOCH_PUSH_INTERVAL`` (``render(paced=True)``): an epoch end touches a dozen marks, and runs
with epochs shorter than that would otherwise spend the kernel's time on messages no one can follow.
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional

import bqplot as bq
import ipywidgets as W
import numpy as np

import trainer
from trainer.steering import steered_epochs

from .change_marks import ChangeMarks, positions
from .epoch_axis import epoch_axis, show_epochs
from .legend import Item, fmt, legend_html
from .run_labels import RunLabel
from .series import MAX_POINTS, Series, downsample_indices, lr_preview
from ..theme import BATCH_OPACITY, BEST_COLOR, CHANGE_COLOR, GHOST_OPACITY, LR_COLOR, TRAIN_COLOR, VAL_COLOR

__all__ = ["Curves", "MAX_POINTS", "GHOST_OPACITY", "downsample_indices", "lr_preview"]

EPOCH_PUSH_INTERVAL = 1.0     # seconds: the least time between two paced pushes of new epochs


def _figure(title: str, y_label: str, marks: list[bq.Mark], x: bq.Scale, y: bq.Scale) -> bq.Figure:
    axes = [epoch_axis(x),
            bq.Axis(scale=y, label=y_label, side="left", grid_lines="dashed", tick_format=".3~g",
                    label_offset="48px")]
    # No hover toolbar (it covered the title): the panel's own buttons zoom and reset.
    return bq.Figure(marks=marks, axes=axes, title=title, animation_duration=0, display_toolbar=False,
                     title_style={"font-size": "14px"}, fig_margin={"top": 32, "bottom": 40, "left": 66, "right": 16},
                     layout=W.Layout(width="100%", height="240px"))


def _lines(x: bq.Scale, y: bq.Scale, colors: list[str], labels: list[str], **kw: Any) -> bq.Lines:
    empty = np.empty((len(colors), 0)) if len(colors) > 1 else np.empty(0)
    return bq.Lines(x=np.empty(0), y=empty, scales={"x": x, "y": y}, colors=colors, labels=labels, **kw)


def _points(x: bq.Scale, y: bq.Scale, color: str, name: str) -> bq.Scatter:
    """The epoch points of one curve, each with a tooltip (a Lines mark has one for the whole line)."""
    tip = bq.Tooltip(fields=["x", "y"], formats=["d", ".4~g"], labels=["epoch", name])
    return bq.Scatter(x=np.empty(0), y=np.empty(0), scales={"x": x, "y": y}, colors=[color], default_size=24,
                      stroke=color, tooltip=tip, labels=[name])


def _best_marker(x: bq.Scale, y: bq.Scale) -> bq.Scatter:
    tip = bq.Tooltip(fields=["x", "y"], formats=["d", ".4~g"], labels=["best epoch", "value"])
    return bq.Scatter(x=np.empty(0), y=np.empty(0), scales={"x": x, "y": y}, colors=[BEST_COLOR],
                      marker="diamond", default_size=110, labels=["best epoch"], tooltip=tip)


def _set(mark: bq.Mark, **values: Any) -> None:
    """Assign only what differs, in one message."""
    changed = {k: v for k, v in values.items() if not np.array_equal(np.asarray(getattr(mark, k)), np.asarray(v))}
    if changed:
        with mark.hold_sync():
            for k, v in changed.items():
                setattr(mark, k, v)


class Curves:
    """The three live figures of a panel, their legends and tools, and the data behind them."""

    def __init__(self, max_points: int = MAX_POINTS, epoch_push_interval: float = EPOCH_PUSH_INTERVAL):
        self.max_points = max_points
        self.epoch_push_interval = epoch_push_interval
        self._epochs_pushed_at = -math.inf
        self.series = Series()
        self.previous: Optional[Series] = None      # the run before, drawn faded
        self.previous_label = RunLabel("", "")     # what set the previous run apart from this one
        self.classification = True       # what the metric figure shows: accuracy, else MAE
        self.best_epoch: Optional[int] = None
        self.ended_note = ""
        self.planned_epochs = 1
        self._batch_x: list[float] = []
        self._batch_y: list[float] = []
        self.changes: list[dict[str, Any]] = []      # the run's config_change data, in order
        self._change_batches: dict[int, int] = {}   # an epoch's batch count, for a change within it
        self._preview_config: Optional[trainer.TrainingConfig] = None    # the schedule's run, as set_preview got it
        self._change_version = 0
        self._epoch_version = self._batch_version = self._title_version = 0
        self._pushed: dict[str, Any] = {}

        sx, self.loss_linear, self.loss_log = bq.LinearScale(min=1.0, max=2.0), bq.LinearScale(), bq.LogScale()
        mx, lx = bq.LinearScale(min=1.0, max=2.0), bq.LinearScale(min=1.0, max=2.0)
        # Where the live run's settings were changed, one set of markers per figure.
        self.change_marks = [ChangeMarks(sx), ChangeMarks(mx), ChangeMarks(lx)]
        sy = self.loss_linear
        self.loss_ghost = _lines(sx, sy, [TRAIN_COLOR, VAL_COLOR], ["previous train", "previous val"],
                                 opacities=[GHOST_OPACITY, GHOST_OPACITY], line_style="dashed")
        self.loss_lines = _lines(sx, sy, [TRAIN_COLOR, VAL_COLOR], ["train", "val"], stroke_width=2)
        self.loss_points = (_points(sx, sy, TRAIN_COLOR, "train loss"), _points(sx, sy, VAL_COLOR, "val loss"))
        self.batch_line = _lines(sx, sy, [TRAIN_COLOR], ["train (epoch in progress)"], stroke_width=1.5,
                                 opacities=[BATCH_OPACITY])
        self.loss_best = _best_marker(sx, sy)
        self.loss_figure = _figure("Loss", "loss", [*self.change_marks[0].marks, self.loss_ghost, self.batch_line,
                                                    self.loss_lines, *self.loss_points, self.loss_best], sx, sy)

        my = bq.LinearScale()
        self.metric_ghost = _lines(mx, my, [TRAIN_COLOR, VAL_COLOR], ["previous train", "previous val"],
                                   opacities=[GHOST_OPACITY, GHOST_OPACITY], line_style="dashed")
        self.metric_lines = _lines(mx, my, [TRAIN_COLOR, VAL_COLOR], ["train", "val"], stroke_width=2)
        self.metric_points = (_points(mx, my, TRAIN_COLOR, "train"), _points(mx, my, VAL_COLOR, "val"))
        self.metric_best = _best_marker(mx, my)
        self.metric_figure = _figure("Accuracy", "accuracy", [*self.change_marks[1].marks, self.metric_ghost,
                                                              self.metric_lines, *self.metric_points, self.metric_best],
                                     mx, my)

        ly = bq.LinearScale()
        self.lr_ghost = _lines(lx, ly, [LR_COLOR], ["previous"], opacities=[GHOST_OPACITY], line_style="dotted")
        self.lr_preview = _lines(lx, ly, [LR_COLOR], ["schedule"], line_style="dashed", opacities=[0.7])
        self.lr_line = _lines(lx, ly, [LR_COLOR], ["used"], stroke_width=2)
        self.lr_points = _points(lx, ly, LR_COLOR, "learning rate")
        self.lr_figure = _figure("Learning rate", "learning rate",
                                 [*self.change_marks[2].marks, self.lr_ghost, self.lr_preview, self.lr_line,
                                  self.lr_points], lx, ly)

        self.loss_legend, self.metric_legend, self.lr_legend = W.HTML(), W.HTML(), W.HTML()
        self.log_toggle = W.ToggleButton(description="Log scale", icon="signal", value=False,
                                         tooltip="Show the loss on a logarithmic scale", layout=W.Layout(width="auto"))
        self.zoom_toggle = W.ToggleButton(description="Zoom", icon="search-plus", value=False,
                                          tooltip="Drag to pan and scroll to zoom in the charts",
                                          layout=W.Layout(width="auto"))
        self.reset_button = W.Button(description="Reset view", icon="expand", tooltip="Show all the data again",
                                     layout=W.Layout(width="auto"))
        self.log_toggle.observe(lambda ch: self.set_log_scale(ch["new"]), "value")
        self.zoom_toggle.observe(lambda ch: self.set_zoom(ch["new"]), "value")
        self.reset_button.on_click(lambda _b: self.reset_view())
        self.tools = [self.log_toggle, self.zoom_toggle, self.reset_button]
        cards = [W.VBox([fig, legend], layout=W.Layout(flex="1 1 320px", min_width="290px", max_width="100%"))
                 for fig, legend in ((self.loss_figure, self.loss_legend), (self.metric_figure, self.metric_legend),
                                     (self.lr_figure, self.lr_legend))]
        # Wrapping: at narrow widths (a side panel open, a phone) the charts stack instead of overflowing.
        self.view = W.Box(cards, layout=W.Layout(display="flex", flex_flow="row wrap", width="100%"))

    @property
    def figures(self) -> list[bq.Figure]:
        return [self.loss_figure, self.metric_figure, self.lr_figure]

    @property
    def marks(self) -> list[bq.Mark]:
        return [m for f in self.figures for m in f.marks]

    # ------------------------------------------------------------------ data in (messages only for
    # the faded copy and the LR preview; the rest waits for render())
    def begin_run(self, classification: bool, previous_label: Optional[RunLabel] = None) -> None:
        """Start a new run's curves; the previous run's stay behind, faded, labelled with what set it
        apart (``previous_label``, from :func:`run_labels.difference_labels`)."""
        if len(self.series):
            self.previous, self.previous_label = self.series, previous_label or RunLabel("", "")
            self._push_epochs(self.previous, (self.loss_ghost, self.metric_ghost, self.lr_ghost))
        if self.previous is not None and self.previous.classification != classification:
            # Accuracy and MAE share no scale: drop a faded curve of the other kind.
            _set(self.metric_ghost, x=np.empty(0), y=np.empty((2, 0)))
        self.series = Series(classification)
        self._pushed["epochs_shown"] = 0        # of this run's epochs, the figures show none yet
        self.set_task(classification)
        self.best_epoch = None
        self.ended_note = ""
        self._batch_x, self._batch_y = [], []
        self.changes, self._change_batches = [], {}
        self._change_version += 1
        self._epoch_version += 1
        self._batch_version += 1
        self._title_version += 1

    def set_task(self, classification: bool) -> None:
        if classification != self.classification:
            self.classification = classification
            self._title_version += 1

    def add_epoch(self, entry: dict[str, Any], improved: bool) -> None:
        self.series.append_entry(entry)
        if improved:
            self.best_epoch = entry["epoch"]
        self._epoch_version += 1

    def add_change(self, change: dict[str, Any], num_batches: Optional[int] = None) -> None:
        """A change applied to the run (a ``config_change`` event's data), drawn as a marker;
        ``num_batches``: the batches of the epoch it applied in, for its exact place."""
        self.changes.append(dict(change))
        if num_batches:
            self._change_batches[int(change.get("epoch") or 1)] = num_batches
        new_epochs = (change.get("changes") or {}).get("epochs")
        if isinstance(new_epochs, dict) and isinstance(new_epochs.get("new"), int):
            self.planned_epochs = new_epochs["new"]      # the axis follows an extended (or shortened) run
        if self._preview_config is not None:
            self.set_preview(self._preview_config)
        self._change_version += 1

    def change_positions(self) -> tuple[float, ...]:
        """Where the run's changes are drawn on the epoch axis."""
        return tuple(positions(self.changes, self._change_batches))

    def begin_epoch(self) -> None:
        self._batch_x, self._batch_y = [], []
        self._batch_version += 1

    def add_batch(self, epoch: int, batch: int, num_batches: int, loss: float) -> None:
        """The running training loss of epoch ``epoch`` (1-based) after ``batch`` of ``num_batches``.

        The first few batches' mean is one or two batches' loss, noise that would stretch the loss
        axis at every epoch start: the line starts after 5% of the epoch (at least 2 batches)."""
        if batch < max(2, math.ceil(0.05 * num_batches)):
            return
        self._batch_x.append(epoch - 1 + batch / max(num_batches, 1))
        self._batch_y.append(loss)
        self._batch_version += 1

    def end_run(self, note: str) -> None:
        """Drop the in-epoch line (the epoch points say it all now) and note how the run ended."""
        self._batch_x, self._batch_y = [], []
        self._batch_version += 1
        self.ended_note = note
        self._title_version += 1

    def set_preview(self, config: trainer.TrainingConfig) -> None:
        """Draw the learning-rate schedule ``config`` will follow (before and during a run); the
        run's changes (``add_change``) redraw it as they rebase it."""
        self.planned_epochs = steered_epochs(config, self.changes)
        self._preview_config = config
        x, y = lr_preview(config, self.max_points, self.changes, self._change_batches)
        _set(self.lr_preview, x=x, y=y)

    # ------------------------------------------------------------------ tools
    def set_log_scale(self, log: bool) -> None:
        """The loss on a logarithmic (True) or linear y scale."""
        scale = self.loss_log if log else self.loss_linear
        for mark in self.loss_figure.marks:
            if mark not in self.change_marks[0].marks:      # those keep their own 0..1 scale
                mark.scales = {**mark.scales, "y": scale}
        self.loss_figure.axes[1].scale = scale
        if self.log_toggle.value != log:
            self.log_toggle.value = log
        if self.zoom_toggle.value:
            self.set_zoom(True)

    def set_zoom(self, on: bool) -> None:
        """Pan and zoom with the mouse in every figure; off puts the whole data back in view."""
        for fig in self.figures:
            x, y = fig.axes[0].scale, fig.axes[1].scale
            fig.interaction = bq.interacts.PanZoom(scales={"x": [x], "y": [y]}) if on else None
        if not on:
            self.reset_view()

    def reset_view(self) -> None:
        for fig in self.figures:
            y = fig.axes[1].scale
            if y.min is not None or y.max is not None:
                with y.hold_sync():
                    y.min = y.max = None
        self._pushed.pop("domain", None)
        self._render_domains(force=True)

    # ------------------------------------------------------------------ data out (messages)
    @property
    def epochs_pending(self) -> bool:
        """Whether epochs were added since the last push (a paced render may hold them back)."""
        return self._pushed.get("epoch") != self._epoch_version

    @property
    def epochs_held_back(self) -> int:
        """How many of the run's epochs the figures do not show yet (0 once pushed)."""
        return max(0, len(self.series) - self._pushed.get("epochs_shown", 0)) if self.epochs_pending else 0

    def render(self, paced: bool = False) -> None:
        """Push what changed since the last render to the frontend.

        ``paced``: when new epochs came less than ``epoch_push_interval`` after the last push of
        epochs, push nothing yet; the figures, their legends and the in-epoch line wait together so
        that they never disagree. A later render pushes them. A run's first epochs are never held
        back: the push of its empty curves at its start must not delay them (a run of very short
        epochs showed nothing for a second, or until its end)."""
        if self.epochs_pending:
            now = time.monotonic()
            shown = self._pushed.get("epochs_shown", 0)
            if paced and shown and now - self._epochs_pushed_at < self.epoch_push_interval:
                return
            self._epochs_pushed_at = now
            self._pushed["epoch"], self._pushed["epochs_shown"] = self._epoch_version, len(self.series)
            self._render_epochs()
        if self._pushed.get("batch") != self._batch_version:
            self._pushed["batch"] = self._batch_version
            x, y = np.asarray(self._batch_x, dtype=float), np.asarray(self._batch_y, dtype=float)
            idx = downsample_indices(len(x), [y], self.max_points)
            _set(self.batch_line, x=x[idx], y=y[idx])
        if self._pushed.get("changes") != self._change_version:
            self._pushed["changes"] = self._change_version
            for marks in self.change_marks:
                marks.show(self.changes, self._change_batches)
        if self._pushed.get("title") != self._title_version:
            self._pushed["title"] = self._title_version
            self._render_titles()
        self._render_domains()
        self._render_legends()

    def _push_epochs(self, series: Series, marks: tuple[bq.Lines, bq.Lines, bq.Lines]) -> None:
        """Send the (downsampled) per-epoch series to a loss, a metric and a learning-rate mark."""
        a = series.arrays(self.max_points)
        loss, metric, lr = marks
        for mark, y in ((loss, np.vstack([a["train_loss"], a["val_loss"]])),
                        (metric, np.vstack([a["train_metric"], a["val_metric"]])), (lr, a["lr"])):
            _set(mark, x=a["epoch"], y=y)

    def _render_epochs(self) -> None:
        self._push_epochs(self.series, (self.loss_lines, self.metric_lines, self.lr_line))
        a = self.series.arrays(self.max_points)
        for mark, column in ((self.loss_points[0], "train_loss"), (self.loss_points[1], "val_loss"),
                             (self.metric_points[0], "train_metric"), (self.metric_points[1], "val_metric"),
                             (self.lr_points, "lr")):
            keep = ~np.isnan(a[column])
            _set(mark, x=a["epoch"][keep], y=a[column][keep])
        best = self.best_epoch
        bx = np.array([best], dtype=float) if best else np.empty(0)
        for marker, values in ((self.loss_best, self.series.val_loss), (self.metric_best, self.series.val_metric)):
            by = np.array([values[best - 1]], dtype=float) if best and best <= len(values) else np.empty(0)
            _set(marker, x=bx if len(by) else np.empty(0), y=by)

    def _render_titles(self) -> None:
        loss_title = "Loss" + (f": {self.ended_note}" if self.ended_note else "")
        metric_title, metric_label = ("Accuracy", "accuracy") if self.classification else ("Mean absolute error", "MAE")
        if self.loss_figure.title != loss_title:
            self.loss_figure.title = loss_title
        if self.metric_figure.title != metric_title:
            self.metric_figure.title = metric_title
            self.metric_figure.axes[1].label = metric_label

    def x_domain(self) -> tuple[int, int]:
        """Whole epochs every figure spans, the same for all three: 1..the run's planned epochs, or
        further when the data (the previous run's included) goes further; from 0 while the first
        epoch's running loss is drawn."""
        highs = [self.planned_epochs] + [s.last_epoch() for s in (self.series, self.previous)
                                         if s is not None and len(s)]
        if self._batch_x:
            highs.append(math.ceil(self._batch_x[-1]))
        low = 0 if self._batch_x and self._batch_x[0] < 1 else 1
        return low, max(max(highs), low + 1, 2)

    def _render_domains(self, force: bool = False) -> None:
        low, high = self.x_domain()
        if (self.zoom_toggle.value and not force) or self._pushed.get("domain") == (low, high):
            return
        self._pushed["domain"] = (low, high)
        for fig in self.figures:
            show_epochs(fig.axes[0], low, high)

    def _render_legends(self) -> None:
        s, prev = self.series, self.previous
        higher = self.classification
        loss = [self._item("train", TRAIN_COLOR, s, "train_loss"), self._item("val", VAL_COLOR, s, "val_loss")]
        if self.best_epoch and self.best_epoch <= len(s):
            # The val loss's best is the best epoch's (early stopping's rule, min_delta included).
            loss[1].best = f"best {fmt(float(s.val_loss[self.best_epoch - 1]))} @ {self.best_epoch}"
        metric = [self._item("train", TRAIN_COLOR, s, "train_metric", higher),
                  self._item("val", VAL_COLOR, s, "val_metric", higher)]
        if self._batch_y:
            loss.append(Item("train, epoch in progress", TRAIN_COLOR, "thin", BATCH_OPACITY, fmt(self._batch_y[-1]),
                             title="running mean of the training loss over the batches of the epoch in progress"))
        if self.best_epoch:
            for items in (loss, metric):
                items.append(Item(f"best epoch {self.best_epoch}", BEST_COLOR, "diamond",
                                  title="the epoch with the lowest val_loss so far"))
        if self.changes:
            steered = Item(f"changed {len(self.changes)}\u00d7", CHANGE_COLOR, "dashed",
                           title="dotted lines: where settings of the live run were changed (hover a triangle)")
            for items in (loss, metric):
                items.append(steered)
        used = s.last("lr")
        lr = [Item("schedule", LR_COLOR, "dashed", 0.7, title="the rates the schedule plans before training"),
              Item("used", LR_COLOR, "line", 1.0, fmt(used) if used is not None else "")]
        if prev is not None and len(prev):
            differs = self.previous_label
            label = "previous run" + (f" ({differs.short})" if differs.short else "")
            full = f"previous run: {differs.full or 'the same settings'}"
            loss.append(Item(label, TRAIN_COLOR, "dashed", GHOST_OPACITY, title=f"{full} (train blue, val orange)"))
            if prev.classification == self.classification:
                metric.append(Item(label, TRAIN_COLOR, "dashed", GHOST_OPACITY, title=f"{full} (train blue, val orange)"))
            lr.append(Item(label, LR_COLOR, "dashed", GHOST_OPACITY, title=full))
        for widget, items in ((self.loss_legend, loss), (self.metric_legend, metric), (self.lr_legend, lr)):
            html = legend_html(items)
            if widget.value != html:
                widget.value = html

    @staticmethod
    def _item(label: str, color: str, s: Series, column: str, higher: bool = False) -> Item:
        best = s.best(column, higher)
        word = "max" if higher else "min"
        return Item(label, color, "line", 1.0, fmt(s.last(column)) if len(s) else "",
                    f"{word} {fmt(best[0])} @ {best[1]}" if best and len(s) > 1 else "")
