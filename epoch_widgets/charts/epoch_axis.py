"""Epoch axes: whole-epoch ticks on every chart whose x axis counts epochs (the panel's curves, its
Runs tab and ``compare_runs``), however short the run; left to itself, d3 puts about six ticks on
any axis, 1.5 and 2.5 included."""
from __future__ import annotations

import bqplot as bq
import numpy as np

from .series import epoch_ticks


def epoch_axis(scale: bq.Scale) -> bq.Axis:
    """An x axis labelled "epoch" that prints whole numbers (:func:`show_epochs` sets its ticks)."""
    return bq.Axis(scale=scale, label="epoch", grid_lines="none", tick_format="d", tick_values=np.array([1.0, 2.0]))


def show_epochs(axis: bq.Axis, low: int, high: int) -> None:
    """Span ``axis`` over epochs ``low``..``high``, padded so the first and last points are not cut
    in half, with whole-epoch ticks; sends nothing when it already does."""
    pad = (high - low) * 0.03
    scale = axis.scale
    if (scale.min, scale.max) != (low - pad, high + pad):
        with scale.hold_sync():
            scale.min, scale.max = low - pad, high + pad
    ticks = np.asarray(epoch_ticks(low, high), dtype=float)
    if not np.array_equal(np.asarray(axis.tick_values), ticks):
        axis.tick_values = ticks
