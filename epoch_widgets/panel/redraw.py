"""What a panel redraws and when: its progress line and bars, charts and epoch table, from the
panel's traits, at most once per ``interval`` while training.

New epochs reach the charts at most once per ``Curves.epoch_push_interval`` (see ``Curves.render``);
the epoch counter and the table hold back the same epochs, so the panel never says "3 done" beside a
chart with two. An urgent request (a state change, the end of a run) redraws everything at once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._loop import Throttle
from .progress import Snapshot, estimate_remaining

if TYPE_CHECKING:
    from .training_panel import TrainingPanel


class Redraw:
    """The throttled redraw of one panel (widgets change on the loop thread only)."""

    def __init__(self, panel: "TrainingPanel", interval: float) -> None:
        self._panel = panel
        self.throttle = Throttle(self.draw, interval, panel.binding)
        self._whole = True      # the next draw pushes held-back epochs too

    def request(self, urgent: bool = False) -> None:
        """Redraw within ``interval`` (urgent: at the next loop turn, held-back epochs included)."""
        if urgent:
            self._whole = True
        self.throttle.request(urgent)

    def now(self) -> None:
        """Redraw everything at once, on this thread."""
        self._whole = True
        self.throttle.flush_now()

    def cancel(self) -> None:
        self.throttle.cancel()

    def draw(self) -> None:
        panel = self._panel
        whole, self._whole = self._whole, False
        curves = panel.curves
        curves.render(paced=not whole)
        if curves.epochs_pending:
            self.throttle.request()         # again, even if no event asks for it
        held = curves.epochs_held_back
        if not held:
            panel.table.update(panel.history, panel.best_metrics.get("epoch"))
        run = panel.run
        reason = panel.reason
        if run is None and not panel.preparing:
            reason = (f"press Start to train {panel.total_epochs} epochs" if panel.valid
                      else "fix the settings marked \u26a0 to start")
        snap = Snapshot(state=panel.state, current_epoch=panel.current_epoch - held, total_epochs=panel.total_epochs,
                        batch=panel.current_batch, num_batches=panel.total_batches, reason=reason,
                        error=panel.error, preparing=panel.preparing)
        if run is not None and run.started_at is not None and not panel.preparing:
            snap.elapsed = panel.adapter.elapsed()
            snap.remaining = estimate_remaining([h["time_per_epoch"] for h in run.history[-10:]],
                                                panel.current_epoch, panel.total_epochs,
                                                panel.current_batch, panel.total_batches)
        panel.progress.update(snap)
        panel.exports.sync(bool(panel.history))
