"""Live training curves in bqplot: loss, accuracy (or MAE) and learning rate.

The marks are created once; ``render()`` pushes only what changed since the last push, each mark
inside ``hold_sync()`` so one mark costs one message. Series longer than ``max_points`` are
downsampled (min and max of each bucket, so spikes survive), which makes a 10,000-epoch run cost
about what a 500-epoch run costs per refresh.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import bqplot as bq
import ipywidgets as W
import numpy as np

import trainer
from trainer.schedules import LRSchedule

MAX_POINTS = 500
TRAIN_COLOR, VAL_COLOR, BATCH_COLOR, BEST_COLOR, LR_COLOR = "#1f77b4", "#ff7f0e", "#9ecae1", "#2ca02c", "#9467bd"
GHOST_OPACITY = 0.3
_PREVIEW_EXACT_LIMIT = 20_000   # schedules up to this many epochs are previewed epoch by epoch


def downsample_indices(n: int, series: Sequence[np.ndarray], max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices (sorted, first and last included) keeping each series' min and max per bucket,
    at most ``max_points`` in all."""
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // (2 * max(1, len(series))))
    size = math.ceil(n / buckets)
    buckets = math.ceil(n / size)
    keep = [np.array([0, n - 1])]
    rows = np.arange(buckets) * size
    for values in series:
        # NaN (missing values and the padding of the last bucket) never wins a min or a max.
        padded = np.full(buckets * size, np.nan)
        padded[:n] = values
        grid = padded.reshape(buckets, size)
        missing = np.isnan(grid)
        keep.append(rows + np.argmin(np.where(missing, np.inf, grid), axis=1))
        keep.append(rows + np.argmax(np.where(missing, -np.inf, grid), axis=1))
    idx = np.unique(np.concatenate(keep))
    return idx[idx < n]


def lr_preview(config: trainer.TrainingConfig, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(epoch numbers, rates) of the schedule as known before training, downsampled."""
    epochs = config.epochs
    if epochs <= _PREVIEW_EXACT_LIMIT:
        rates = np.asarray(trainer.preview_schedule(config), dtype=float)
        idx = downsample_indices(epochs, [rates], max_points)
        return idx + 1.0, rates[idx]
    # Too long to walk epoch by epoch on every keystroke: sample the closed-form schedule.
    schedule = LRSchedule(config)
    idx = np.unique(np.linspace(0, epochs - 1, max_points).round().astype(int))
    return idx + 1.0, np.array([schedule.lr(int(e)) for e in idx])


def _figure(title: str, y_label: str, marks: list[bq.Mark], x: bq.Scale, y: bq.Scale,
            legend_location: str = "top-right") -> bq.Figure:
    axes = [bq.Axis(scale=x, label="epoch", grid_lines="none", num_ticks=6),
            bq.Axis(scale=y, label=y_label, side="left", grid_lines="dashed", tick_format=".3~g",
                    label_offset="48px")]
    return bq.Figure(marks=marks, axes=axes, title=title, animation_duration=0, legend_location=legend_location,
                     title_style={"font-size": "14px"},
                     fig_margin={"top": 40, "bottom": 40, "left": 66, "right": 15},
                     layout=W.Layout(flex="1 1 0%", height="280px", min_width="240px"))


def _lines(x: bq.Scale, y: bq.Scale, colors: list[str], labels: list[str], **kw: Any) -> bq.Lines:
    empty = np.empty((len(colors), 0)) if len(colors) > 1 else np.empty(0)
    return bq.Lines(x=np.empty(0), y=empty, scales={"x": x, "y": y}, colors=colors, labels=labels, **kw)


def _best_marker(x: bq.Scale, y: bq.Scale) -> bq.Scatter:
    return bq.Scatter(x=np.empty(0), y=np.empty(0), scales={"x": x, "y": y}, colors=[BEST_COLOR],
                      marker="diamond", default_size=90, labels=["best epoch"], display_legend=False)


class _Series:
    """One run's per-epoch values in growing numpy columns (no per-refresh list conversion)."""

    COLUMNS = ("epoch", "train_loss", "val_loss", "train_metric", "val_metric", "lr")

    def __init__(self, classification: bool = True) -> None:
        self.classification = classification
        self._data = np.empty((len(self.COLUMNS), 64))
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, *values: float) -> None:
        if self._n == self._data.shape[1]:
            self._data = np.concatenate([self._data, np.empty_like(self._data)], axis=1)
        self._data[:, self._n] = values
        self._n += 1

    def column(self, name: str) -> np.ndarray:
        return self._data[self.COLUMNS.index(name), :self._n]

    @property
    def val_loss(self) -> np.ndarray:
        return self.column("val_loss")

    @property
    def val_metric(self) -> np.ndarray:
        return self.column("val_metric")

    @property
    def train_metric(self) -> np.ndarray:
        return self.column("train_metric")

    def arrays(self, max_points: int) -> dict[str, np.ndarray]:
        """Downsampled copies sharing one set of epochs (so train and val travel in one mark)."""
        idx = downsample_indices(self._n, [self.column(c) for c in ("train_loss", "val_loss", "val_metric")],
                                 max_points)
        return {name: self.column(name)[idx] for name in self.COLUMNS}


class Curves:
    """The three live figures of a panel and the data behind them."""

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max_points
        self.series = _Series()
        self.classification = True       # what the metric figure shows: accuracy, else MAE
        self._ghost_classification = True
        self.best_epoch: Optional[int] = None
        self.ended_note = ""
        self._batch_x: list[float] = []
        self._batch_y: list[float] = []
        self._epoch_version = self._batch_version = self._title_version = 0
        self._pushed: dict[str, int] = {}

        # The epoch axis starts at 0 (where the in-epoch line starts): with num_ticks, a bqplot axis
        # whose domain collapses to one value (one point, at an epoch boundary) stays unlabelled and
        # draws every later point at one x for the rest of the run.
        sx, sy = bq.LinearScale(min=0.0), bq.LinearScale()
        self.loss_ghost = _lines(sx, sy, [TRAIN_COLOR, VAL_COLOR], ["previous train", "previous val"],
                                 opacities=[GHOST_OPACITY, GHOST_OPACITY])
        self.loss_lines = _lines(sx, sy, [TRAIN_COLOR, VAL_COLOR], ["train", "val"], display_legend=True,
                                 marker="circle", marker_size=12)
        self.batch_line = _lines(sx, sy, [BATCH_COLOR], ["train (this epoch)"], stroke_width=1.5)
        self.loss_best = _best_marker(sx, sy)
        self.loss_figure = _figure("Loss", "loss", [self.loss_ghost, self.loss_lines, self.batch_line,
                                                    self.loss_best], sx, sy)

        # min=0 for the same reason as the loss figure's x scale: a single x value must not collapse it.
        mx, my = bq.LinearScale(min=0.0), bq.LinearScale()
        self.metric_ghost = _lines(mx, my, [TRAIN_COLOR, VAL_COLOR], ["previous train", "previous val"],
                                   opacities=[GHOST_OPACITY, GHOST_OPACITY])
        self.metric_lines = _lines(mx, my, [TRAIN_COLOR, VAL_COLOR], ["train", "val"], display_legend=True,
                                   marker="circle", marker_size=12)
        self.metric_best = _best_marker(mx, my)
        self.metric_figure = _figure("Accuracy", "accuracy", [self.metric_ghost, self.metric_lines,
                                                              self.metric_best], mx, my,
                                     legend_location="bottom-right")   # accuracy rises: keep its corner free

        lx, ly = bq.LinearScale(), bq.LinearScale()
        self.lr_ghost = _lines(lx, ly, [LR_COLOR], ["previous"], opacities=[GHOST_OPACITY])
        self.lr_preview = _lines(lx, ly, [LR_COLOR], ["schedule"], line_style="dashed", display_legend=True,
                                 opacities=[0.6])
        self.lr_line = _lines(lx, ly, [LR_COLOR], ["used"], display_legend=True, marker="circle", marker_size=12)
        self.lr_figure = _figure("Learning rate", "learning rate", [self.lr_ghost, self.lr_preview, self.lr_line],
                                 lx, ly)
        self.view = W.HBox([self.loss_figure, self.metric_figure, self.lr_figure],
                           layout=W.Layout(width="100%"))

    @property
    def marks(self) -> list[bq.Mark]:
        return [m for f in (self.loss_figure, self.metric_figure, self.lr_figure) for m in f.marks]

    # ------------------------------------------------------------------ data in (messages only for
    # the faded copy and the LR preview; the rest waits for render())
    def begin_run(self, classification: bool) -> None:
        """Start a new run's curves; the previous run's stay behind, faded."""
        if len(self.series):
            self._push_epochs((self.loss_ghost, self.metric_ghost, self.lr_ghost))
            self._ghost_classification = self.series.classification
        if self._ghost_classification != classification and len(self.metric_ghost.x):
            # Accuracy and MAE share no scale: drop a faded curve of the other kind.
            with self.metric_ghost.hold_sync():
                self.metric_ghost.x, self.metric_ghost.y = np.empty(0), np.empty((2, 0))
        self.series = _Series(classification)
        self.set_task(classification)
        self.best_epoch = None
        self.ended_note = ""
        self._batch_x, self._batch_y = [], []
        self._epoch_version += 1
        self._batch_version += 1
        self._title_version += 1

    def set_task(self, classification: bool) -> None:
        if classification != self.classification:
            self.classification = classification
            self._title_version += 1

    def add_epoch(self, entry: dict[str, Any], improved: bool) -> None:
        s = self.series
        key = "accuracy" if s.classification else "mae"
        s.append(entry["epoch"], entry["train_loss"], entry["val_loss"], entry.get(f"train_{key}", math.nan),
                 entry.get(f"val_{key}", math.nan), entry["learning_rate"])
        if improved:
            self.best_epoch = entry["epoch"]
        self._epoch_version += 1

    def begin_epoch(self) -> None:
        self._batch_x, self._batch_y = [], []
        self._batch_version += 1

    def add_batch(self, epoch: int, batch: int, num_batches: int, loss: float) -> None:
        """The running training loss of epoch ``epoch`` (1-based) after ``batch`` of ``num_batches``."""
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
        """Draw the learning-rate schedule ``config`` will follow (before and during a run)."""
        x, y = lr_preview(config, self.max_points)
        if np.array_equal(x, self.lr_preview.x) and np.array_equal(y, self.lr_preview.y):
            return
        with self.lr_preview.hold_sync():
            self.lr_preview.x, self.lr_preview.y = x, y

    # ------------------------------------------------------------------ data out (messages)
    def render(self) -> None:
        """Push what changed since the last render to the frontend."""
        if self._pushed.get("epoch") != self._epoch_version:
            self._pushed["epoch"] = self._epoch_version
            self._render_epochs()
        if self._pushed.get("batch") != self._batch_version:
            self._pushed["batch"] = self._batch_version
            x, y = np.asarray(self._batch_x, dtype=float), np.asarray(self._batch_y, dtype=float)
            idx = downsample_indices(len(x), [y], self.max_points)
            with self.batch_line.hold_sync():
                self.batch_line.x, self.batch_line.y = x[idx], y[idx]
        if self._pushed.get("title") != self._title_version:
            self._pushed["title"] = self._title_version
            self._render_titles()

    def _push_epochs(self, marks: tuple[bq.Lines, bq.Lines, bq.Lines]) -> None:
        """Send the (downsampled) per-epoch series to a loss, a metric and a learning-rate mark."""
        a = self.series.arrays(self.max_points)
        loss, metric, lr = marks
        for mark, y in ((loss, np.vstack([a["train_loss"], a["val_loss"]])),
                        (metric, np.vstack([a["train_metric"], a["val_metric"]])), (lr, a["lr"])):
            with mark.hold_sync():
                mark.x, mark.y = a["epoch"], y

    def _render_epochs(self) -> None:
        self._push_epochs((self.loss_lines, self.metric_lines, self.lr_line))
        best = self.best_epoch
        bx = np.array([best], dtype=float) if best else np.empty(0)
        for marker, values in ((self.loss_best, self.series.val_loss), (self.metric_best, self.series.val_metric)):
            by = np.array([values[best - 1]], dtype=float) if best else np.empty(0)
            if not (np.array_equal(marker.x, bx) and np.array_equal(marker.y, by)):
                with marker.hold_sync():
                    marker.x, marker.y = bx, by
                    marker.display_legend = bool(best)    # no legend entry for a marker not drawn

    def _render_titles(self) -> None:
        loss_title = "Loss" + (f": {self.ended_note}" if self.ended_note else "")
        metric_title, metric_label = ("Accuracy", "accuracy") if self.classification else ("Mean absolute error", "MAE")
        if self.loss_figure.title != loss_title:
            self.loss_figure.title = loss_title
        if self.metric_figure.title != metric_title:
            self.metric_figure.title = metric_title
            self.metric_figure.axes[1].label = metric_label
