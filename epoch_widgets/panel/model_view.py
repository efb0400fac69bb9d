"""The panel's model summary: what the controls' config would build (layers, output shapes,
parameters, training memory) and whether this machine can train it, kept up to date as the
controls change.

Summarising imports the framework the first time (seconds) and prepares the data (a fraction of a
second for most frames), so it runs in a worker thread, one at a time, once the controls have been
still for ``DEBOUNCE_S``; a result for a config the controls no longer hold is dropped. What
``Trainer`` would refuse (a model too big for the memory available, data it cannot use) is handed
to the panel, which shows it beside the controls and keeps Start disabled. Widgets change on the
loop thread only.
"""
from __future__ import annotations

import asyncio
import json
from html import escape
from typing import Callable, Optional

import ipywidgets as W
import pandas as pd

from trainer import ConfigError, TrainingConfig
from trainer.model_size import gib
from trainer.summary import ModelSummary, model_summary

from .. import theme
from ._loop import LoopBinding

DEBOUNCE_S = 0.5        # controls still this long before a summary is computed
_WAITING = "The model summary appears here once the settings are valid."


class ModelView:
    """The "Model summary" tab (``view``) and a one-line headline for the settings' Model tab.

    ``request(config, data)`` on every change of the controls; ``summary`` is the latest result
    (None before one, or when the config cannot be summarised: ``error`` says why).
    ``on_problems({field: message})`` receives what Trainer would refuse.
    """

    def __init__(self, binding: LoopBinding, on_problems: Callable[[dict[str, str]], None],
                 debounce: float = DEBOUNCE_S) -> None:
        self.view = W.HTML(_note(_WAITING), layout=W.Layout(width="100%"))
        self.headline = W.HTML("", layout=W.Layout(width="100%", margin="4px 0 0 4px"))
        self.summary: Optional[ModelSummary] = None
        self.error = ""
        self.computed = 0                   # summaries computed so far (a repeated config is not redone)
        self.debounce = debounce
        self._binding = binding
        self._on_problems = on_problems
        self._wanted: Optional[tuple[str, TrainingConfig, pd.DataFrame]] = None
        self._shown_key: Optional[str] = None
        self._problems: dict[str, str] = {}
        self._timer: Optional[asyncio.TimerHandle] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._again = False
        self._body = ""                     # the summary's HTML, kept under "updating…"

    # ------------------------------------------------------------------ requests (loop thread)
    def request(self, config: Optional[TrainingConfig], data: Optional[pd.DataFrame]) -> None:
        """The controls hold ``config`` now (None: invalid); summarise it once they settle."""
        self._cancel_timer()
        if config is None or data is None:
            self._wanted = None
            self._shown_key = None
            self.summary, self.error, self._problems = None, "", {}
            self._set(_note(_WAITING), "")
            return
        key = json.dumps(config.to_dict(), sort_keys=True, default=str) + f"|{id(data)}|{data.shape}"
        if key == self._shown_key:
            self._wanted = None
            if self._problems:      # revalidating dropped them; they still hold for this config
                self._on_problems(dict(self._problems))
            return
        self._wanted = (key, config, data)
        loop = self._binding.loop
        if loop is None or loop.is_closed():
            self._set(_note("The model summary is computed while the notebook's event loop runs "
                            "(display the panel in a notebook)."), "")
            return
        if self.summary is not None or self.error:
            self._set(_note("updating for the new settings…") + self._body, self.headline.value)
        self._timer = loop.call_later(self.debounce, self._launch)

    @property
    def busy(self) -> bool:
        """Whether a summary is waiting for the controls to settle or being computed."""
        return self._timer is not None or (self._task is not None and not self._task.done())

    async def settled(self) -> Optional[ModelSummary]:
        """Wait until the summary is that of the controls' current config; returns it."""
        while self.busy:
            if self._task is not None and not self._task.done():
                await asyncio.shield(self._task)
            else:
                await asyncio.sleep(0.05)
        return self.summary

    def close(self) -> None:
        self._cancel_timer()
        self._wanted = None

    # ------------------------------------------------------------------ computing
    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _launch(self) -> None:
        self._timer = None
        if self._task is not None and not self._task.done():
            self._again = True          # the one in progress is for older settings: go again after it
            return
        loop = self._binding.loop
        if loop is not None and not loop.is_closed() and self._wanted is not None:
            self._task = loop.create_task(self._compute())

    async def _compute(self) -> None:
        while self._wanted is not None:
            key, config, data = self._wanted
            self._again = False
            summary, error, problems = None, "", {}
            try:
                # The framework's import and the data preparation stay off the kernel's loop.
                summary = await asyncio.to_thread(model_summary, config, data)
                self.computed += 1
                problems = {e["field"]: e["message"] for e in summary.errors}
            except ConfigError as exc:
                problems = {e["field"]: e["message"] for e in exc.errors}
                error = "Trainer would refuse these settings: " + "; ".join(problems.values())
            except Exception as exc:        # e.g. the backend's framework is not installed
                error = f"no summary: {type(exc).__name__}: {exc}"
            if self._wanted is None:
                return                      # the settings became invalid meanwhile
            if self._wanted[0] != key:
                if self._again or self._timer is None:
                    continue                # newer settings, already due: summarise those
                return                      # newer settings, not settled yet: their timer relaunches
            self._wanted = None
            self._shown_key = key
            self.summary, self.error, self._problems = summary, error, problems
            self._show()
            if problems:
                self._on_problems(dict(problems))

    # ------------------------------------------------------------------ showing
    def _show(self) -> None:
        summary = self.summary
        if summary is None:
            self._body = ""
            self._set(f"<div class='ew-model-error' style='color:{theme.ERROR}'>{escape(self.error)}</div>",
                      f"<span style='color:{theme.ERROR}'>Model: {escape(self.error)}</span>")
            return
        head = headline(summary)
        color = theme.ERROR if summary.errors else theme.FG_MUTED
        top = f"<div class='ew-model-headline' style='color:{color};margin-bottom:4px'>{escape(head)}</div>"
        self._body = summary._repr_html_()
        self._set(top + self._body,
                  f"<span style='color:{color}' title='{escape(head, quote=True)}'>{escape(head)}"
                  f"{'' if summary.errors else ' (details in the Model summary tab below the charts)'}</span>")

    def _set(self, body: str, line: str) -> None:
        if self.view.value != body:
            self.view.value = body
        if self.headline.value != line:
            self.headline.value = line


def headline(summary: ModelSummary) -> str:
    """One line: the model, its parameters, and whether training it fits this machine."""
    text = f"{summary.model_class}: {summary.total_parameters:,} parameters"
    if summary.errors:
        return f"{text}. Too big for this machine: " + "; ".join(e["message"] for e in summary.errors)
    memory, available = summary.memory, summary.available
    if memory is not None:
        text += f"; training takes about {gib(memory.total)}"
        if available is not None:
            text += f" of the {gib(available.bytes)} available"
    return text


def _note(text: str) -> str:
    return f"<div style='color:{theme.FG_MUTED}'>{escape(text)}</div>"
