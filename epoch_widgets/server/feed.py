"""The summaries of all of a server's tasks as one event stream (``GET stream-tasks``).

A client gets a ``snapshot`` of every task, newest first, then one ``task`` event per change of
one task (created, a state change, an epoch's end) carrying that task's whole summary, and a
``deleted`` event when one is forgotten: so 50 tasks cost one connection, and a client that
reconnects starts again from a snapshot. Only tasks the registry accepted (those ``GET tasks``
lists) are reported.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

from .subscriptions import Subscription

if TYPE_CHECKING:
    from .tasks import Task

# The sparkline's points: the validation loss of the last this-many epochs.
SPARK_POINTS = 200
# The estimated time left follows the pace of the last this-many epochs.
PACE_EPOCHS = 5
# What each change of a task is called in its event.
CHANGES = ("created", "state", "epoch")


def _finite(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def live_summary(task: "Task") -> dict[str, Any]:
    """The task's summary (as ``GET tasks`` gives it) with what a live list shows besides: its
    model, latest metrics, validation loss per epoch, training time and estimated time left."""
    run = task.run_state
    history = task.history
    running = task.state == "running"
    # A record from an earlier server life may hold a run that was running: only a running task's
    # clock ticks.
    elapsed = run.elapsed() if running else run.active_seconds
    left = run.total_epochs - run.current_epoch
    recent = [t for t in (_finite(e.get("time_per_epoch")) for e in history[-PACE_EPOCHS:]) if t is not None]
    eta = left * sum(recent) / len(recent) if recent and left > 0 and not task.done else None
    return {**task.summary(), "model_type": task.config.get("model_type"),
            "latest_metrics": run.latest_metrics,
            "val_loss": [_finite(e.get("val_loss")) for e in history[-SPARK_POINTS:]],
            "elapsed_s": _finite(elapsed), "eta_s": _finite(eta)}


class TaskFeed:
    """Fan-out of task changes to the clients of the all-tasks stream. Lives on the event loop's
    thread, like the tasks whose changes it reports."""

    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()

    def subscribe(self, tasks: Iterable["Task"]) -> Subscription:
        """A client's queue, holding the snapshot of ``tasks`` (newest first) to begin with."""
        sub = Subscription(self.subscribers.discard)
        ordered = sorted(tasks, key=lambda t: (t.created_at, t.task_id), reverse=True)
        sub.put({"type": "snapshot", "tasks": [live_summary(t) for t in ordered]})
        self.subscribers.add(sub)
        return sub

    def changed(self, task: "Task", change: str) -> None:
        """``task`` was created, changed state or ended an epoch."""
        if self.subscribers:
            self._publish({"type": "task", "change": change, "task": live_summary(task)})

    def deleted(self, task_id: str) -> None:
        self._publish({"type": "deleted", "task_id": task_id})

    def close(self) -> None:
        """End every client's stream (the server shuts down)."""
        for sub in list(self.subscribers):
            sub.close()

    def _publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.put(event)
