"""Widgets for the learning-rate finder: loss against rate (log axis) with the suggestion marked,
and a button that hands the suggested rate to whoever asks (the panel puts it into ``learning_rate``).

``LRFinderView`` draws a search as it runs (``update(points)`` with ``LRFinder.points``) and its
result (``show(result)``); ``lr_finder_figure(result)`` is the figure alone. Nothing here starts
or stops a search: the panel owns the :class:`trainer.LRFinder` (its ``arun()`` and ``stop()``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import bqplot as bq
import ipywidgets as W
import numpy as np

from trainer.lr_finder import LRFindResult

LOSS_COLOR, RAW_COLOR, PICK_COLOR = "#1f77b4", "#c6dbef", "#d62728"


class LRFinderView(W.VBox):
    """The curve, the suggestion and a "Use suggested rate" button calling ``on_apply(rate)``."""

    def __init__(self, on_apply: Optional[Callable[[float], Any]] = None, **kwargs: Any):
        self._on_apply = on_apply
        self.result: Optional[LRFindResult] = None
        self.x = bq.LogScale()
        self.y = bq.LinearScale()
        scales = {"x": self.x, "y": self.y}
        self.raw = bq.Lines(x=[], y=[], scales=scales, colors=[RAW_COLOR], labels=["loss"], display_legend=True)
        self.smoothed = bq.Lines(x=[], y=[], scales=scales, colors=[LOSS_COLOR], stroke_width=2,
                                 labels=["smoothed loss"], display_legend=True)
        self.pick = bq.Scatter(x=[], y=[], scales=scales, colors=[PICK_COLOR], marker="circle", default_size=90,
                               labels=["suggestion"], display_legend=True)
        self.figure = bq.Figure(
            marks=[self.raw, self.smoothed, self.pick], title="Learning-rate finder", animation_duration=0,
            axes=[bq.Axis(scale=self.x, label="learning rate (log scale)", tick_format=".0e"),
                  bq.Axis(scale=self.y, label="loss", side="left")],
            legend_location="top-left", layout=W.Layout(width="560px", height="340px"))
        self.message = W.HTML("")
        self.apply_button = W.Button(description="Use suggested rate", icon="check", disabled=True,
                                     tooltip="put the suggested rate into learning_rate",
                                     layout=W.Layout(width="auto", min_width="190px"))
        self.apply_button.on_click(lambda _: self._apply())
        super().__init__([self.figure, W.HBox([self.apply_button, self.message])], **kwargs)

    def on_apply(self, callback: Callable[[float], Any]) -> None:
        """Call ``callback(rate)`` when the button is pressed."""
        self._on_apply = callback

    def update(self, points: Sequence[dict[str, Any]]) -> None:
        """Draw the curve so far (a search in progress): ``LRFinder.points`` or ``on_step`` rows."""
        lrs = np.array([p["learning_rate"] for p in points], dtype=float)
        raw = np.array([p["loss"] for p in points], dtype=float)
        smoothed = np.array([p["smoothed_loss"] for p in points], dtype=float)
        self._draw(lrs, raw, smoothed)
        self.message.value = f"searching: batch {len(points)}" + (f", rate {lrs[-1]:.2e}" if len(lrs) else "")

    def show(self, result: LRFindResult) -> None:
        """Draw a finished search with its suggestion, and enable the button when there is one."""
        self.result = result
        h = result.history
        self._draw(h["learning_rate"].to_numpy(float), h["loss"].to_numpy(float), h["smoothed_loss"].to_numpy(float))
        with self.pick.hold_sync():
            if result.suggestion is not None:
                self.pick.x, self.pick.y = [result.suggestion], [result.suggestion_loss]
            else:
                self.pick.x, self.pick.y = [], []
        self.apply_button.disabled = result.suggestion is None
        self.message.value = describe(result)

    def _draw(self, lrs: np.ndarray, raw: np.ndarray, smoothed: np.ndarray) -> None:
        finite = np.isfinite(smoothed) & np.isfinite(raw)
        lrs, raw, smoothed = lrs[finite], raw[finite], smoothed[finite]
        if len(smoothed):
            # Past the divergence the loss shoots up; keep the informative part of the curve in view.
            top = float(min(raw.max(), 4 * smoothed.min() if smoothed.min() > 0 else raw.max()))
            self.y.min, self.y.max = float(min(raw.min(), smoothed.min())), max(top, float(smoothed.max()))
        with self.raw.hold_sync():
            self.raw.x, self.raw.y = lrs, raw
        with self.smoothed.hold_sync():
            self.smoothed.x, self.smoothed.y = lrs, smoothed

    def _apply(self) -> None:
        if self.result is not None and self.result.suggestion is not None and self._on_apply is not None:
            self._on_apply(self.result.suggestion)


def describe(result: LRFindResult) -> str:
    """One line for the panel: the suggestion, the rule that chose it, and how the search ended."""
    if result.suggestion is None:
        return "no suggestion: " + ("; ".join(result.notes) or result.reason)
    other = [f"{rule} {lr:.2e}" for rule, lr in result.suggestions.items()
             if rule != result.rule and lr is not None and math.isfinite(lr)]
    return (f"suggested learning_rate <b>{result.suggestion:.2e}</b> ({result.rule} rule"
            + (f"; {', '.join(other)}" if other else "") + f"). {result.reason[:1].upper()}{result.reason[1:]}.")


def lr_finder_figure(result: LRFindResult) -> bq.Figure:
    """The curve of a finished search with its suggestion marked, as a figure alone."""
    view = LRFinderView()
    view.show(result)
    return view.figure
