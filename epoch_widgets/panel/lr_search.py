"""The panel's Find LR button: a learning-rate search on the controls' config, drawn live in the
"LR finder" tab, stoppable like a run, whose suggestion "Use suggested rate" puts into the
learning_rate control.

Threads, as for Start: the ``Trainer`` is built in a worker thread (importing the framework and
preparing the data take seconds), the search runs in another (``LRFinder.arun``), and the finder's
``on_step`` (called from that thread per batch) only asks the loop for a redraw, which is throttled.
The search trains on a throwaway run of the same config without ``output_path`` or loggers (it
writes nothing) on one device (``batch_size`` is the global batch, so the rate carries over), and
leaves nothing behind: the run that Start builds later starts from its own fresh weights.
"""
from __future__ import annotations

import asyncio
from html import escape
from typing import TYPE_CHECKING, Any, Optional

from trainer import ConfigError, StateError, Trainer, TrainingConfig
from trainer.lr_finder import LRFinder, LRFindResult

from .. import theme
from ._loop import Throttle
from .actions import import_framework
from ..charts.lr_finder_view import LRFinderView

if TYPE_CHECKING:
    from .training_panel import TrainingPanel


class LRSearch:
    """Find LR for one panel: ``start_now(**options)``, ``stop()``, ``result``, ``view``."""

    def __init__(self, panel: "TrainingPanel", update_interval: float) -> None:
        self.panel = panel
        self.view = LRFinderView(on_apply=self._apply_clicked)
        self.task: Optional["asyncio.Task[Optional[LRFindResult]]"] = None
        self.finder: Optional[LRFinder] = None
        self.result: Optional[LRFindResult] = None
        self._stop_requested = False
        self._throttle = Throttle(self._draw, update_interval, panel.binding)

    @property
    def active(self) -> bool:
        """Whether a search is being prepared or runs."""
        return self.task is not None and not self.task.done()

    def start_now(self, **options: Any) -> "asyncio.Task[Optional[LRFindResult]]":
        """Build a run from the controls and search on it (loop thread); the task returns the result
        (None when stopped before the search began). ``options``: start_lr, end_lr, num_iter, rule."""
        panel, actions = self.panel, self.panel.actions
        actions.need_loop("find_lr()")
        actions.refuse_while_active("finding a learning rate")
        # Writes nothing and uses one device (the global batch_size carries the rate over).
        config = actions.valid_config().replace(output_path=None, loggers=[], devices=1)
        data = panel.run_data
        assert data is not None
        panel.notices.clear()
        panel.overwrite.withdraw()
        self._stop_requested = False
        self.view.result = None
        self.view.apply_button.disabled = True
        self.view.update([])
        panel.tabs.select("LR finder")
        loop = panel.binding.loop
        assert loop is not None
        self.task = loop.create_task(self._search(config, data, options))
        self.task.add_done_callback(self._done)
        panel.sync_controls()
        return self.task

    def stop(self) -> None:
        """End the search after the batch in progress (or before it begins); safe from any thread."""
        self._stop_requested = True
        finder = self.finder
        if finder is not None:
            finder.stop()

    async def _search(self, config: TrainingConfig, data: Any, options: dict[str, Any]) -> Optional[LRFindResult]:
        say = self.view.message
        say.value = "preparing the data and building the model…"
        framework = await import_framework(config, lambda text: setattr(say, "value", text))
        if framework:
            say.value = "preparing the data and building the model…"
        run = await asyncio.to_thread(Trainer, config, data)
        if self._stop_requested:
            say.value = "stopped before the search began"
            return None
        self.finder = LRFinder(run, on_step=self._on_step, **options)
        say.value = "searching…"
        try:
            result = await self.finder.arun()
        finally:
            self._throttle.cancel()
            self.finder = None
        self.result = result
        self.view.show(result)
        return result

    def _on_step(self, _point: dict[str, Any]) -> None:
        # The search's thread: only ask the loop for a (throttled) redraw.
        loop = self.panel.binding.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._throttle.request)
            except RuntimeError:
                pass            # the loop closed under us: nothing shows the view any more

    def _draw(self) -> None:
        finder = self.finder
        if finder is not None:
            self.view.update(list(finder.points))

    def _done(self, task: "asyncio.Task[Optional[LRFindResult]]") -> None:
        panel = self.panel
        if task.cancelled():
            self.view.message.value = "the search was cancelled"
        elif task.exception() is not None:      # retrieved here: no "never retrieved" warning
            exc = task.exception()
            text = str(exc) if isinstance(exc, (ConfigError, StateError)) else f"{type(exc).__name__}: {exc}"
            self.view.message.value = f"<span style='color:{theme.ERROR}'>the search failed: {escape(text)}</span>"
            panel.notices.set("lr", f"Find LR failed: {text}")
        panel.sync_controls()

    # ------------------------------------------------------------------ the suggestion
    def _apply_clicked(self, rate: float) -> None:
        # The button's callback may run on a subshell thread: the control changes on the loop's.
        self.panel.actions.from_ui(lambda: self.apply(rate))

    def apply(self, rate: Optional[float] = None) -> None:
        """Put ``rate`` (default: the last result's suggestion), rounded to 3 significant digits, into
        the learning_rate control."""
        panel = self.panel
        if rate is None:
            if self.result is None or self.result.suggestion is None:
                raise panel.actions.fail(StateError("there is no suggested rate yet: press Find LR first"))
            rate = self.result.suggestion
        if panel.actions.active():
            raise panel.actions.fail(StateError("a run is in progress; use the suggested rate once it ends"),
                                     while_active=True)
        # Three significant digits: the search cannot tell 0.00705 from 0.007054802310718645.
        rate = float(f"{float(rate):.3g}")
        panel.controls.set_value("learning_rate", rate)
        self.view.message.value = self.view.message.value.split(" — learning_rate")[0] + \
            f" — learning_rate is now {rate:g}"

    def close(self) -> None:
        self.stop()
        self._throttle.cancel()
