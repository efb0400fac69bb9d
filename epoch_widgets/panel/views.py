"""The tabs below the panel's curves: Epochs (the table), Model summary, Evaluation, LR finder and
Runs, and what each needs to hear of a run's start and end.

The Runs tab compares every run this panel started or resumed (``RunsView.add_run``) with the runs
saved beside them: its folder follows the folder above ``output_path`` (``models`` for
``models/mlp1``) until the user types another; a bare name (``mlp1``) sets none, so the notebook's
own folder is never searched unasked.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Optional

import ipywidgets as W

from ..charts.compare import RunsView
from .evaluation_tab import EvaluationTab
from .model_view import ModelView
from .tab_pages import TabPages
from ._loop import LoopBinding

TITLES = ("Epochs", "Model summary", "Evaluation", "LR finder", "Runs")


class PanelViews:
    """The tab container (``tab``; ``pages`` puts only the selected view in it) and the views."""

    def __init__(self, table_view: W.Widget, lr_view: W.Widget, binding: LoopBinding,
                 on_problems: Callable[[dict[str, str]], None]) -> None:
        self.model = ModelView(binding, on_problems)
        self.evaluation = EvaluationTab()
        self.runs = RunsView()
        self.pages = TabPages([table_view, self.model.view, self.evaluation.view, lr_view, self.runs], TITLES)
        self.tab = self.pages.tab
        self._binding = binding
        self._auto_folder = ""

    def select(self, title: str) -> None:
        """Show the tab called ``title``."""
        self.pages.select(title)

    def run_started(self, run: Any) -> None:
        """A run was started or resumed: keep it in the Runs tab, and say the evaluation is coming."""
        folder = runs_folder(run.config.output_path)
        typed = self.runs.folder.value.strip()
        if folder and typed in ("", self._auto_folder):
            self._auto_folder = folder
            self.runs.folder.value = folder
        self.runs.add_run(run)
        self.evaluation.run_started(run)

    def run_ended(self, run: Any) -> None:
        self.evaluation.run_ended(run, self._binding.loop)

    async def after_run(self) -> None:
        """Wait for what the end of a run set going here (its evaluation)."""
        task = self.evaluation.task
        if task is not None and not task.done():
            await asyncio.shield(task)

    def close(self) -> None:
        self.model.close()
        self.evaluation.close()
        self.runs.close()


def runs_folder(output_path: Optional[str]) -> str:
    """The folder whose runs the Runs tab lists for runs saved in ``output_path`` ('' for none)."""
    if not output_path:
        return ""
    parent = Path(output_path).expanduser().parent
    return "" if str(parent) in ("", ".") else str(parent)
