"""Turns one run into panel updates: its start (curves, controls, views), its events (traits,
curves, refresh requests) and its end (end note, final metrics, notices, evaluation, snapshot).

The panel follows its run with :class:`trainer.RunFollower`, the same follower the HTTP API's task
and the multi-process launcher use: the follower keeps a copy of the run's state (applying each
event first), and this module turns each event into what the panel shows. It is the only part of
the panel that knows the events' names and payloads. Events arrive on the loop's thread.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from trainer import ConfigError, RunFollower, RunState, Trainer, TrainingState

from ..charts.run_labels import difference_labels
from .metrics_table import final_html, table_html
from .progress import end_note

if TYPE_CHECKING:
    import asyncio

    from .training_panel import TrainingPanel


class RunAdapter:
    """Follows one run at a time for a panel."""

    def __init__(self, panel: "TrainingPanel") -> None:
        self._panel = panel
        self.run: Optional[Trainer] = None
        self.follower: Optional[RunFollower] = None

    @property
    def state(self) -> Optional[RunState]:
        """The followed run's state (the follower's copy), or None before the first run."""
        return self.follower.state if self.follower is not None else None

    def elapsed(self) -> Optional[float]:
        """The followed run's training time so far, pauses left out."""
        return self.follower.state.elapsed() if self.follower is not None else None

    def start(self, run: Trainer, resumed: bool) -> "asyncio.Task[None]":
        """Show ``run`` (new, or resumed with its history so far) and start it; returns its task."""
        panel = self._panel
        previous = panel.run
        if previous is not None and len(panel.curves.series):
            panel.curves.begin_run(run.is_classification, difference_labels([previous.config.to_dict(),
                                                                             run.config.to_dict()])[0])
        else:
            panel.curves.begin_run(run.is_classification)
        panel.curves.set_preview(run.config)
        panel.table.show_final("")
        panel.exports.show(None, b"", "")
        panel.set_trait("run", run)
        self.follow(run)
        if resumed:
            panel.controls.show_config(run.config, skip={"data_path"} if panel.data_given else set())
        task = run.start()
        panel.tabs.run_started(run)
        panel.sync_controls()
        panel.refresh(urgent=True)
        return task

    def follow(self, run: Trainer) -> None:
        """Show ``run`` from now on: its history so far (a resumed run has some), then its events."""
        self.unfollow()
        self.run = run
        self.follower = RunFollower.of(run)
        self.follower.listen(self._on_event)
        state, panel = self.follower.state, self._panel
        for entry in state.history:
            panel.curves.add_epoch(entry, entry["epoch"] == state.best_epoch)
        for change in state.config_changes:       # a resumed run's changes so far
            panel.curves.add_change(change)
        with panel.hold_trait_notifications():
            panel.state = state.state.value
            panel.current_epoch = state.current_epoch        # > 0 for a run resumed from a checkpoint
            panel.total_epochs = state.total_epochs
            panel.current_batch, panel.total_batches = state.batch, state.num_batches
            panel.history = list(state.history)
            panel.latest_metrics, panel.best_metrics = state.latest_metrics, state.best_metrics
            panel.reason = panel.error = ""
            panel.config_changes = list(state.config_changes)

    def unfollow(self) -> None:
        if self.follower is not None:
            self.follower.detach()

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        run, panel, state = self.run, self._panel, self.state
        if run is None or state is None:
            return
        if event == "batch_end":
            panel.curves.add_batch(data["epoch"], data["batch"], data["num_batches"], data["loss"])
            with panel.hold_trait_notifications():
                panel.total_batches, panel.current_batch = state.num_batches, state.batch
            panel.refresh()
        elif event == "epoch_begin":
            panel.curves.begin_epoch()
            with panel.hold_trait_notifications():
                panel.total_batches, panel.current_batch = state.num_batches, state.batch
            panel.refresh()
        elif event == "epoch_end":
            panel.curves.add_epoch(data["metrics"], data["improved"])
            with panel.hold_trait_notifications():
                panel.history = list(state.history)
                panel.latest_metrics = state.latest_metrics
                panel.best_metrics = state.best_metrics
                panel.current_epoch = state.current_epoch
            panel.refresh()
        elif event == "config_change":
            self._changed(data, state)
        elif event == "state_change":
            with panel.hold_trait_notifications():
                panel.state = state.state.value
                panel.reason = state.reason or ""
            panel.sync_controls()
            panel.refresh(urgent=True)
        elif event == "train_end":
            with panel.hold_trait_notifications():
                panel.best_metrics = state.best_metrics
                panel.reason = state.reason or ""
                panel.error = state.error or ""
                panel.state = state.state.value
            self._ended(run)

    def _changed(self, change: dict[str, Any], state: RunState) -> None:
        """A change applied to the run (from the panel, code or a replay): its marker, the traits,
        and the controls showing the run's settings as they are now."""
        panel = self._panel
        panel.curves.add_change(change, state.num_batches or None)
        for name, values in change["changes"].items():
            try:
                panel.controls.set_value(name, values["new"])
            except ConfigError:
                pass        # a value the control cannot show; the run has it all the same
        with panel.hold_trait_notifications():
            panel.config_changes = list(state.config_changes)
            panel.total_epochs = state.total_epochs
        panel.sync_controls()
        panel.refresh(urgent=True)

    def _ended(self, run: Trainer) -> None:
        """The run's last event: its end note, final metrics, observer errors, evaluation, snapshot."""
        panel = self._panel
        panel.curves.end_run(end_note(run.state.value, run.current_epoch, run.best_metrics.get("epoch")))
        errors = run.observer_errors
        if errors:
            # A logger that failed (TensorBoard, MLflow) did not stop the run; say so where it shows.
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            panel.notices.set("observers", f"{len(errors)} observer error(s) during the run, see "
                                           f"panel.run.observer_errors: " + "; ".join(errors[:3]) + more, kind="warning")
        restored = run.config.restore_best_weights and run.state == TrainingState.EARLY_STOPPED
        final = final_html(run.state.value, list(run.history), run.best_metrics, restored, self.elapsed())
        panel.table.show_final(final)
        panel.tabs.run_ended(run)
        panel.sync_controls()
        panel.refresh(urgent=True)
        if panel.binding.loop is not None:
            panel.snapshot.refresh_later(panel.binding.loop, panel.figure_data(), final,
                                         table_html(list(panel.history), panel.best_metrics.get("epoch")))
