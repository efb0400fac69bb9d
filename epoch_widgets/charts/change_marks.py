"""Markers for the changes made to a live run (``config_change`` events): a dotted vertical line
and a triangle at the top of an epoch chart, where the change took effect, whose tooltip says what
changed. Shared by the panel's curves and ``compare_runs``.

The markers have a y scale of their own, fixed to 0..1, so they span the figure whatever the
curves' values are, and never stretch the curves' axis.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import bqplot as bq
import numpy as np

from trainer.run_records import describe_change

from ..theme import CHANGE_COLOR

TOP = 0.96        # where the triangle sits, as a fraction of the plot's height


def change_position(change: dict[str, Any], num_batches: Optional[int] = None) -> float:
    """Where on an epoch axis (epoch k ends at x = k) a change applied: in epoch ``epoch`` (1-based)
    after ``batch`` of its ``num_batches`` batches. Without ``num_batches`` a change within an epoch
    is drawn at its middle (the tooltip has the exact batch)."""
    epoch, batch = int(change.get("epoch") or 1), int(change.get("batch") or 0)
    if not batch:
        return float(epoch - 1)
    if num_batches:
        return epoch - 1 + min(batch, num_batches) / num_batches
    return epoch - 0.5


def positions(changes: Iterable[dict[str, Any]], num_batches: Optional[dict[int, int]] = None) -> np.ndarray:
    """Each change's place on the epoch axis; ``num_batches`` gives an epoch's batch count where known."""
    sizes = num_batches or {}
    return np.array([change_position(c, sizes.get(int(c.get("epoch") or 1))) for c in changes], dtype=float)


class ChangeMarks:
    """The markers of one run's changes on one figure (x: the figure's epoch scale)."""

    def __init__(self, x: bq.Scale, color: str = CHANGE_COLOR, label: str = "config change"):
        self.scale = bq.LinearScale(min=0.0, max=1.0)
        scales = {"x": x, "y": self.scale}
        self.lines = bq.Lines(x=np.empty(0), y=np.empty(0), scales=scales, colors=[color], line_style="dotted",
                              stroke_width=1.5, labels=[label], preserve_domain={"y": True})
        tip = bq.Tooltip(fields=["name"], labels=[label])
        self.points = bq.Scatter(x=np.empty(0), y=np.empty(0), scales=scales, colors=[color], marker="triangle-down",
                                 default_size=80, names=None, display_names=False,
                                 names_unique=False, tooltip=tip, labels=[label])
        self.texts: list[str] = []

    @property
    def marks(self) -> list[bq.Mark]:
        return [self.lines, self.points]

    def show(self, changes: Iterable[dict[str, Any]], num_batches: Optional[dict[int, int]] = None) -> None:
        """Draw ``changes`` (``config_change`` data, in order); ``num_batches`` gives an epoch's
        batch count where known (exact positions within that epoch)."""
        changes = list(changes)
        xs = positions(changes, num_batches)
        texts = [describe_change(c) for c in changes]
        if texts == self.texts and np.array_equal(xs, np.asarray(self.points.x)):
            return
        self.texts = texts
        with self.points.hold_sync():
            self.points.x, self.points.y = xs, np.full(len(xs), TOP)
            self.points.names = np.array(texts) if texts else None
        with self.lines.hold_sync():
            if len(xs):
                self.lines.x = np.repeat(xs[:, None], 2, axis=1)
                self.lines.y = np.tile([0.0, 1.0], (len(xs), 1))
                self.lines.colors = [self.lines.colors[0]] * len(xs)
            else:
                self.lines.x, self.lines.y = np.empty(0), np.empty(0)
