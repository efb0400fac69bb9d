"""The curves as one PNG, drawn in the kernel with matplotlib (for the PNG export and the static
snapshot saved in the notebook). bqplot draws in the browser only, so a file written from the
kernel, or a picture kept for a notebook opened without its kernel, needs a renderer here.

One legend for the three plots sits below them, in as many columns as its labels' widths let fit
the figure's width; the figure grows by the legend's height, so the plots keep theirs whatever the
number and length of the entries.
"""
from __future__ import annotations

import functools
import importlib.util
import io
import math
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from .series import Series
from ..theme import BEST_COLOR, CHANGE_COLOR, GHOST_OPACITY, LR_COLOR, TRAIN_COLOR, VAL_COLOR

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

WIDTH_IN = 13.0           # the figure's width, inches
PLOTS_HEIGHT_IN = 3.4     # the plots' height with their titles and axis labels, the legend not counted
LEGEND_FONT_PT = 8
LABEL_CHARS = 90          # longer legend labels wrap onto more lines


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
    changes: tuple[float, ...] = ()      # where the live run's settings were changed (epoch axis)

    @property
    def classification(self) -> bool:
        return self.series.classification


def render_png(data: FigureData, dpi: int = 96) -> bytes:
    """Loss, accuracy (or MAE) and learning rate side by side, their legend below, as PNG bytes."""
    buf = io.BytesIO()
    draw(data, dpi).savefig(buf, format="png")
    return buf.getvalue()


def draw(data: FigureData, dpi: int = 96) -> "Figure":
    """The figure behind :func:`render_png` (its size already fitted to the legend)."""
    from matplotlib.figure import Figure      # no pyplot: no global state, safe off the main thread
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(WIDTH_IN, PLOTS_HEIGHT_IN), dpi=dpi, layout="constrained")
    ax_loss, ax_metric, ax_lr = fig.subplots(1, 3)
    s, prev = data.series, data.previous
    metric_name = "accuracy" if data.classification else "MAE"
    prev_label = "previous run" + (f" ({data.previous_label})" if data.previous_label else "")
    entries: dict[str, Any] = {}        # legend label -> handle, each label once for the three plots
    for ax, (train_col, val_col), title in ((ax_loss, ("train_loss", "val_loss"), "Loss"),
                                            (ax_metric, ("train_metric", "val_metric"), metric_name.capitalize()
                                             if data.classification else "Mean absolute error")):
        if len(s):
            entries.setdefault("train", ax.plot(s.column("epoch"), s.column(train_col), "o-", ms=3,
                                                color=TRAIN_COLOR)[0])
            entries.setdefault("val", ax.plot(s.column("epoch"), s.column(val_col), "o-", ms=3, color=VAL_COLOR)[0])
            best = data.best_epoch
            if best and best <= len(s):
                entries.setdefault(f"best epoch {best}", ax.plot([best], [s.column(val_col)[best - 1]], "D", ms=8,
                                                                 color=BEST_COLOR)[0])
        if prev is not None and len(prev) and (ax is ax_loss or prev.classification == data.classification):
            train, = ax.plot(prev.column("epoch"), prev.column(train_col), "--", color=TRAIN_COLOR, alpha=GHOST_OPACITY)
            val, = ax.plot(prev.column("epoch"), prev.column(val_col), "--", color=VAL_COLOR, alpha=GHOST_OPACITY)
            entries.setdefault(prev_label, (train, val))
        ax.set_title(title + (f": {data.title_note}" if ax is ax_loss and data.title_note else ""), fontsize=11)
        ax.set_ylabel("loss" if ax is ax_loss else metric_name)
    if len(data.preview_x):
        entries["learning rate: schedule"] = ax_lr.plot(data.preview_x, data.preview_y, "--", color=LR_COLOR,
                                                        alpha=0.7)[0]
    if len(s):
        entries["learning rate: used"] = ax_lr.plot(s.column("epoch"), s.column("lr"), "o-", ms=3, color=LR_COLOR)[0]
    if prev is not None and len(prev):
        entries["learning rate: previous run"] = ax_lr.plot(prev.column("epoch"), prev.column("lr"), ":",
                                                            color=LR_COLOR, alpha=GHOST_OPACITY)[0]
    ax_lr.set_title("Learning rate", fontsize=11)
    ax_lr.set_ylabel("learning rate")
    for ax in (ax_loss, ax_metric, ax_lr):
        for x in data.changes:
            entries.setdefault("settings changed", ax.axvline(x, color=CHANGE_COLOR, ls=":", lw=1.2))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(True, axis="y", alpha=0.3)
    if not any(math.isfinite(v) for v in s.column("val_loss")):
        ax_loss.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax_loss.transAxes, alpha=0.6)
    legend_below(fig, list(entries.values()), list(entries))
    return fig


def legend_below(fig: "Figure", handles: Sequence[Any], labels: Sequence[str]) -> Optional["Legend"]:
    """One legend for the whole figure under its plots (``fig`` uses the constrained layout): the
    most columns that fit the figure's width, labels wrapped at ``LABEL_CHARS``; the figure grows by
    the legend's height. A tuple of lines is one entry showing each of them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.legend_handler import HandlerTuple

    if not handles:
        return None
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    labels = [textwrap.fill(label, LABEL_CHARS) for label in labels]
    room = 0.98 * fig.bbox.width
    # A legend's width does not depend on where it goes: measure it with n, n-1, ... columns.
    for ncols in range(len(handles), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=LEGEND_FONT_PT,
                            frameon=False, columnspacing=1.6, handlelength=2.6,
                            handler_map={tuple: HandlerTuple(ndivide=None, pad=0.4)})
        if ncols == 1 or legend.get_window_extent(renderer).width <= room:
            break
        legend.remove()
    height = legend.get_window_extent(renderer).height / fig.dpi
    fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + height + 0.1)
    return legend
