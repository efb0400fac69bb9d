"""Turns one run's events into panel updates: traits, curves, the stopwatch, refresh requests.

The only place that knows the run's event names and payloads (train_begin, epoch_begin,
batch_end, epoch_end, state_change, train_end), so following runs some other way changes this
module alone. Events arrive on the loop's thread.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from trainer import Trainer

if TYPE_CHECKING:
    from .panel import TrainingPanel


class RunAdapter:
    """Follows one run at a time for a panel."""

    def __init__(self, panel: "TrainingPanel") -> None:
        self._panel = panel
        self.run: Optional[Trainer] = None
        self._unsubscribe: Optional[Callable[[], None]] = None

    def follow(self, run: Trainer) -> None:
        """Show ``run`` from now on: its history so far (a resumed run has some), then its events."""
        self.unfollow()
        self.run = run
        self._unsubscribe = run.add_callback(self._on_event)
        panel = self._panel
        best = run.best_metrics.get("epoch")
        for entry in run.history:
            panel.curves.add_epoch(entry, entry["epoch"] == best)
        with panel.hold_trait_notifications():
            panel.state = run.state.value
            panel.current_epoch = run.current_epoch        # > 0 for a run resumed from a checkpoint
            panel.total_epochs = run.total_epochs
            panel.current_batch, panel.total_batches = run.batch, run.num_batches
            panel.history = list(run.history)
            panel.latest_metrics, panel.best_metrics = run.latest_metrics, run.best_metrics
            panel.reason = panel.error = ""

    def unfollow(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        run, panel = self.run, self._panel
        if run is None:
            return
        if event == "batch_end":
            panel.curves.add_batch(data["epoch"], data["batch"], data["num_batches"], data["loss"])
            with panel.hold_trait_notifications():
                panel.total_batches = data["num_batches"]
                panel.current_batch = data["batch"]
            panel.refresh()
        elif event == "epoch_begin":
            panel.curves.begin_epoch()
            with panel.hold_trait_notifications():
                panel.total_batches = run.num_batches
                panel.current_batch = 0
            panel.refresh()
        elif event == "epoch_end":
            panel.curves.add_epoch(data["metrics"], data["improved"])
            with panel.hold_trait_notifications():
                panel.history = list(run.history)
                panel.latest_metrics = dict(data["metrics"])
                panel.best_metrics = run.best_metrics
                panel.current_epoch = run.current_epoch
            panel.refresh()
        elif event == "state_change":
            panel.stopwatch.follow(data["new"])
            with panel.hold_trait_notifications():
                panel.state = data["new"]
                panel.reason = data.get("reason") or ""
            panel.sync_controls()
            panel.refresh(urgent=True)
        elif event == "train_end":
            panel.stopwatch.follow(data["state"])
            with panel.hold_trait_notifications():
                panel.best_metrics = run.best_metrics
                panel.reason = data.get("reason") or ""
                panel.error = run.error or ""
                panel.state = data["state"]
            panel.run_ended(run)
