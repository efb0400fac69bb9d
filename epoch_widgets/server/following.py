"""Following a worker's run: its events become the task's progress, history and stream events.

The task keeps a copy of the run's state with :class:`trainer.RunFollower`, the same follower the
panel and the multi-process launcher use: it starts from the state in the worker's ``ready``
message and applies every ``event`` message after it. Kept apart from the task's lifecycle
(``tasks.py``, ``lifecycle.py``): this part hands what the run reports to the lifecycle through
``_run_state_changed`` and ``_run_ended``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from trainer import RunFollower, RunState

from .subscriptions import Subscription

if TYPE_CHECKING:
    from .feed import TaskFeed

# A client reading a stream stops at "complete"; "error" ends a run that did not finish normally.
ERROR_STATES = frozenset({"failed", "interrupted"})
# The task events the all-tasks stream (feed.py) reports, and the change each one is there; a final
# event follows its state event, which has reported the end already.
FEED_CHANGES = {"progress": "epoch", "state": "state"}


def state_from_record(record: Mapping[str, Any], total_epochs: int) -> RunState:
    """The run's state as a task record saved it (``run``), or as records before it had one did
    (``progress`` and ``history``)."""
    if record.get("run"):
        return RunState.from_snapshot(record["run"])
    progress, history = dict(record.get("progress") or {}), list(record.get("history") or [])
    return RunState.from_snapshot({
        "total_epochs": progress.get("total_epochs", total_epochs), "current_epoch": progress.get("current_epoch", 0),
        "batch": progress.get("current_batch", 0), "num_batches": progress.get("total_batches", 0),
        "history": history, "best_epoch": (progress.get("best_metrics") or {}).get("epoch")})


class FollowsRun:
    """The event-following half of a Task (mixed into it)."""

    task_id: str
    config: dict[str, Any]
    subscribers: set[Subscription]
    reason: Optional[str]
    error: Optional[str]
    seed: Optional[int]
    samples: dict[str, int]
    follower: RunFollower
    accepted: bool
    # The all-tasks stream; the registry sets it on the tasks it holds.
    feed: Optional["TaskFeed"] = None

    # Provided by the Task.
    state: str
    done: bool

    def save(self, now: bool = True) -> None: ...
    def _run_state_changed(self, new: str, reason: Optional[str], error: Optional[str]) -> None: ...
    def _run_ended(self, state: str, reason: Optional[str], error: Optional[str]) -> None: ...

    def follow_state(self, state: RunState) -> None:
        """Follow the run from ``state`` on (a new task, a record, or a worker's ``ready``)."""
        self.follower = RunFollower(state)
        self.follower.listen(self._on_event)

    @property
    def run_state(self) -> RunState:
        return self.follower.state

    @property
    def progress(self) -> dict[str, Any]:
        """The run's progress as its worker reported it (the lifecycle has the last word on the state)."""
        return dict(self.run_state.progress())

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.run_state.history  # type: ignore[return-value]

    # ------------------------------------------------------------------ worker messages
    def apply_ready(self, msg: dict[str, Any]) -> None:
        """The worker's ``ready``: its run's state (a resumed run's history is the checkpoint's,
        which may be older than the last epoch the record saw) is what it reports from now on."""
        self.seed, self.samples = msg.get("seed"), msg.get("samples", {})
        self.follow_state(RunState.from_snapshot(msg["snapshot"]))

    def follow(self, msg: dict[str, Any]) -> None:
        self.follower.receive(msg)

    def listen_run(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Also tell ``listener(event, data)`` each event of the run the task follows, whichever
        worker generation it comes from (a sweep's trial run follows its task this way)."""
        self.__dict__.setdefault("run_listeners", []).append(listener)

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        for listener in self.__dict__.get("run_listeners", ()):
            listener(event, data)
        if event == "epoch_end":
            self.publish({"type": "progress", "task_id": self.task_id, "progress": self.progress_snapshot(),
                          "improved": bool(data.get("improved"))})
            self.save(now=False)
        elif event == "config_change":
            # The task's config is the run's as it trains now: a resume from a checkpoint (which
            # holds the changed config) sends it back unchanged.
            self.config = {**self.config, **{k: v["new"] for k, v in data["changes"].items()}}
            self.publish({"type": "config_change", "task_id": self.task_id, "change": dict(data),
                          "progress": self.progress_snapshot()})
            self.save()
        elif event == "state_change":
            self._run_state_changed(data["new"], data.get("reason"), data.get("error"))
        elif event == "train_end":
            self._run_ended(data["state"], data.get("reason"), data.get("error"))

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
                "best_metrics": self.run_state.best_metrics, "reason": self.reason,
                "progress": self.progress_snapshot()}

    def publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.put(event)
        change = FEED_CHANGES.get(event["type"])
        # Only the tasks the registry accepted (those GET tasks lists) are reported.
        if change is not None and self.accepted and self.feed is not None:
            self.feed.changed(self, change)  # type: ignore[arg-type]

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
