"""Following a worker's run: its events become the task's progress, history and stream events.

Kept apart from the task's lifecycle (``tasks.py``, ``lifecycle.py``): this part only reads what the
current worker generation reports and hands state changes to the lifecycle through two methods,
``_run_state_changed`` and ``_run_ended``.
"""
from __future__ import annotations

from typing import Any, Optional

from .subscriptions import Subscription

# A client reading a stream stops at "complete"; "error" ends a run that did not finish normally.
ERROR_STATES = frozenset({"failed", "interrupted"})


def initial_progress(total_epochs: int) -> dict[str, Any]:
    return {"current_epoch": 0, "total_epochs": total_epochs, "training_state": "pending",
            "latest_metrics": {}, "best_metrics": {}, "current_batch": 0, "total_batches": 0,
            "reason": None, "error": None}


class FollowsRun:
    """The event-following half of a Task (mixed into it)."""

    task_id: str
    progress: dict[str, Any]
    history: list[dict[str, Any]]
    subscribers: set[Subscription]
    reason: Optional[str]
    error: Optional[str]

    # Provided by the Task.
    state: str
    done: bool

    def save(self, now: bool = True) -> None: ...
    def _run_state_changed(self, new: str, reason: Optional[str]) -> None: ...
    def _run_ended(self, state: str, reason: Optional[str]) -> None: ...

    # ------------------------------------------------------------------ worker messages
    def apply_ready(self, msg: dict[str, Any], resuming: bool) -> None:
        self.seed, self.samples = msg.get("seed"), msg.get("samples", {})
        self.progress.update(msg.get("progress") or {})
        if resuming:
            # The checkpoint may be older than the last epoch the record saw: its history is the truth.
            self.history = list(msg.get("history", self.history))

    def follow(self, msg: dict[str, Any]) -> None:
        kind = msg.get("kind")
        if kind == "event":
            self._on_event(msg["event"], msg.get("data", {}), msg.get("progress"))
        elif kind == "batch":
            self.progress["current_batch"] = msg.get("batch", 0)
            self.progress["total_batches"] = msg.get("num_batches", 0)

    def _on_event(self, event: str, data: dict[str, Any], progress: Optional[dict[str, Any]]) -> None:
        if progress:
            self.progress.update(progress)
        if event == "epoch_end":
            self.history.append(data["metrics"])
            self.publish({"type": "progress", "task_id": self.task_id, "progress": self.progress_snapshot(),
                          "improved": bool(data.get("improved"))})
            self.save(now=False)
        elif event == "state_change":
            self._run_state_changed(data["new"], data.get("reason"))
        elif event == "train_end":
            self.progress["best_metrics"] = data.get("best_metrics", self.progress.get("best_metrics", {}))
            self._run_ended(data["state"], data.get("reason"))

    # ------------------------------------------------------------------ what clients see
    def progress_snapshot(self) -> dict[str, Any]:
        """The progress object: epochs, state, latest and best metrics, batch position, reason, error."""
        return {**self.progress, "training_state": self.state, "reason": self.reason, "error": self.error}

    def publish_state(self, old: Optional[str]) -> None:
        self.publish({"type": "state", "task_id": self.task_id, "old": old, "new": self.state,
                      "training_state": self.state, "reason": self.reason, "progress": self.progress_snapshot()})

    def final_event(self) -> dict[str, Any]:
        """``complete`` with the final state and best metrics, or ``error`` for a failed run."""
        if self.state in ERROR_STATES:
            return {"type": "error", "task_id": self.task_id, "training_state": self.state,
                    "message": self.error or self.reason, "progress": self.progress_snapshot()}
        return {"type": "complete", "task_id": self.task_id, "training_state": self.state,
                "best_metrics": self.progress.get("best_metrics", {}), "reason": self.reason,
                "progress": self.progress_snapshot()}

    def publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.put(event)

    def close_streams(self) -> None:
        """Send the final event and end every stream."""
        self.publish(self.final_event())
        for sub in list(self.subscribers):
            sub.close()

    def subscribe(self) -> Subscription:
        """A stream client's queue, already holding the current progress (and the final event when
        the task has ended, in which case it is not kept as a watcher)."""
        sub = Subscription(self.subscribers.discard)
        sub.put({"type": "progress", "task_id": self.task_id, "progress": self.progress_snapshot()})
        if self.done:
            sub.put(self.final_event())
            sub.close()
        else:
            self.subscribers.add(sub)
        return sub
