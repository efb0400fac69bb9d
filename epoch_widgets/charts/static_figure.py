"""The curves as one PNG, drawn in the kernel with matplotlib (for the PNG export and the static
snapshot saved in the notebook). bqplot draws in the browser only, so a file written from the
kernel, or a picture kept for a notebook opened without its kernel, needs a renderer here.
"""
from __future__ import annotations

import functools
import importlib.util
import io
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .series import Series
from ..theme import BEST_COLOR, GHOST_OPACITY, LR_COLOR, TRAIN_COLOR, VAL_COLOR


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether matplotlib is installed (it is optional: ``pip install matplotlib``); looked up once
    per process, since every refresh asks and the lookup walks sys.path."""
    return importlib.util.find_spec("matplotlib") is not None


@dataclass
class FigureData:
    """A copy of what the live figures show, safe to draw on another thread."""

    series: Series
    previous: Optional[Series]
    previous_label: str
    best_epoch: Optional[int]
    preview_x: np.ndarray
    preview_y: np.ndarray
    title_note: str = ""

    @property
    def classification(self) -> bool:
        return self.series.classification


def render_png(data: FigureData, dpi: int = 96) -> bytes:
    """Loss, accuracy (or MAE) and learning rate side by side, as PNG bytes."""
    from matplotlib.figure import Figure      # no pyplot: no global state, safe off the main thread
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(13, 3.6), dpi=dpi, layout="constrained")
    ax_loss, ax_metric, ax_lr = fig.subplots(1, 3)
    s, prev = data.series, data.previous
    metric_name = "accuracy" if data.classification else "MAE"
    prev_label = "previous run" + (f" ({data.previous_label})" if data.previous_label else "")
    for ax, (train_col, val_col), title in ((ax_loss, ("train_loss", "val_loss"), "Loss"),
                                            (ax_metric, ("train_metric", "val_metric"), metric_name.capitalize()
                                             if data.classification else "Mean absolute error")):
        if prev is not None and len(prev) and (ax is ax_loss or prev.classification == data.classification):
            ax.plot(prev.column("epoch"), prev.column(train_col), "--", color=TRAIN_COLOR, alpha=GHOST_OPACITY,
                    label=prev_label)
            ax.plot(prev.column("epoch"), prev.column(val_col), "--", color=VAL_COLOR, alpha=GHOST_OPACITY)
        if len(s):
            ax.plot(s.column("epoch"), s.column(train_col), "o-", ms=3, color=TRAIN_COLOR, label="train")
            ax.plot(s.column("epoch"), s.column(val_col), "o-", ms=3, color=VAL_COLOR, label="val")
            best = data.best_epoch
            if best and best <= len(s):
                ax.plot([best], [s.column(val_col)[best - 1]], "D", ms=8, color=BEST_COLOR,
                        label=f"best epoch {best}")
        ax.set_title(title + (f": {data.title_note}" if ax is ax_loss and data.title_note else ""), fontsize=11)
        ax.set_ylabel("loss" if ax is ax_loss else metric_name)
    if len(data.preview_x):
        ax_lr.plot(data.preview_x, data.preview_y, "--", color=LR_COLOR, alpha=0.7, label="schedule")
    if prev is not None and len(prev):
        ax_lr.plot(prev.column("epoch"), prev.column("lr"), ":", color=LR_COLOR, alpha=GHOST_OPACITY, label=prev_label)
    if len(s):
        ax_lr.plot(s.column("epoch"), s.column("lr"), "o-", ms=3, color=LR_COLOR, label="used")
    ax_lr.set_title("Learning rate", fontsize=11)
    ax_lr.set_ylabel("learning rate")
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(True, axis="y", alpha=0.3)
        if ax.lines:
            # Legends below the axes, so they never cover a curve.
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    if not any(math.isfinite(v) for v in s.column("val_loss")):
        ax_loss.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax_loss.transAxes, alpha=0.6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
