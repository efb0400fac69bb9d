"""The panel's "Evaluation" tab: the finished run's model on its validation split, shown when the
run ends (a confusion-matrix heat map with the per-class table, or predicted-vs-actual and
residual plots).

The figures come from the ``evaluation.json`` the run wrote to its ``output_path``, or, for a run
without one, from ``run.evaluate()``; either is read or computed in a worker thread so the kernel's
loop stays free. Regression plots show at most ``MAX_POINTS`` evenly spaced samples, as the file
keeps them (a scatter of every sample of a large validation split would be megabytes of widget
messages).
"""
from __future__ import annotations

import asyncio
from html import escape
from typing import Any, Optional

import ipywidgets as W

from trainer.evaluation import FILE_NAME, Evaluation

from .. import theme
from ._tree import close_tree
from ..charts.evaluation_view import evaluation_view

MAX_POINTS = 2000       # what evaluation.json keeps for regression plots
_WAITING = "The evaluation on the validation split appears here when a run ends."


def evaluation_of(run: Any) -> Evaluation:
    """The ended run's evaluation: its ``evaluation.json`` when it wrote one, else computed now.
    Blocking (reads a file or runs the model): call it in a worker thread."""
    folder = run.artifacts_path
    if folder is not None and (folder / FILE_NAME).is_file():
        return Evaluation.load(folder)
    evaluation = run.evaluate()
    if evaluation.task == "regression" and len(evaluation.predictions) > MAX_POINTS:
        evaluation = Evaluation.from_dict(evaluation.to_dict())     # thinned as the file would be
    return evaluation


class EvaluationTab:
    """Shows the evaluation of the last run that ended; ``evaluation`` is it (None before)."""

    def __init__(self) -> None:
        self.heading = W.HTML(_note(_WAITING))
        self.body = W.VBox([], layout=W.Layout(width="100%"))
        self.view = W.VBox([self.heading, self.body], layout=W.Layout(width="100%"))
        self.evaluation: Optional[Evaluation] = None
        self.task: Optional["asyncio.Task[None]"] = None
        self._run: Any = None

    def run_started(self, run: Any) -> None:
        """A new run: the figures shown (if any) are the previous run's until this one ends."""
        self._run = run
        if self.evaluation is not None:
            self.heading.value = _note("The previous run's evaluation; this run's appears when it ends.")

    def run_ended(self, run: Any, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """``run`` reached its final state: read or compute its evaluation and show it."""
        self._run = run
        if run.current_epoch == 0:
            self.heading.value = _note("The run ended before its first epoch: there is no model to evaluate.")
            return
        self.heading.value = _note("Evaluating the model on the validation split…")
        if loop is None or loop.is_closed():
            self._finish(run, *_attempt(run))
            return
        self.task = loop.create_task(self._evaluate(run))

    async def _evaluate(self, run: Any) -> None:
        self._finish(run, *await asyncio.to_thread(_attempt, run))

    def _finish(self, run: Any, evaluation: Optional[Evaluation], error: str) -> None:
        if run is not self._run:
            return                  # another run started meanwhile; its own end shows its figures
        if evaluation is None:
            self.heading.value = (f"<div style='color:{theme.ERROR}'>Could not evaluate the run: "
                                  f"{escape(error)}</div>")
            return
        old = list(self.body.children)
        self.evaluation = evaluation
        self.body.children = [evaluation_view(evaluation)]
        for child in old:
            close_tree(child)
        name = run.config.name
        self.heading.value = _note(f"Run {name!r} ({run.state.value} after {run.current_epoch} epochs): "
                                   f"{evaluation.summary()}")

    def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def _attempt(run: Any) -> tuple[Optional[Evaluation], str]:
    try:
        return evaluation_of(run), ""
    except Exception as exc:        # shown in the tab; an evaluation never fails the panel
        return None, f"{type(exc).__name__}: {exc}"


def _note(text: str) -> str:
    return f"<div style='color:{theme.FG_MUTED}'>{escape(text)}</div>"
