"""A run's state in one object: lifecycle, position in the epoch, history, best epoch, and the
early-stopping and schedule state.

:class:`RunState` changes only by :meth:`RunState.apply`-ing the run's events (``trainer.events``):
the epoch loop applies each event to its own state before any observer hears it, and a follower
elsewhere (the panel, the HTTP API's task, the multi-process launcher; in this process or across a
pipe) applies the same events to its copy, so every copy agrees. Checkpoints save
:meth:`RunState.to_dict`; resuming restores it with :meth:`RunState.from_dict`. The backend's own
state (weights, optimiser, RNG streams) travels beside it in the checkpoint.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping, Optional, TypedDict

from .config import TrainingConfig
from .early_stopping import EarlyStopping
from .metrics import CLASSIFICATION, EpochMetrics, best_summary
from .schedules import LRSchedule


class TrainingState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    EARLY_STOPPED = "early_stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset({TrainingState.COMPLETED, TrainingState.STOPPED,
                          TrainingState.EARLY_STOPPED, TrainingState.FAILED})
FINAL_VALUES = frozenset(s.value for s in FINAL_STATES)     # the same, as events and messages spell them

# The lifecycle: pending -> running <-> paused -> one final state. A run may end before it runs
# (a launch that fails, a stop before the first batch); nothing leaves a final state.
TRANSITIONS: dict[TrainingState, frozenset[TrainingState]] = {
    TrainingState.PENDING: frozenset({TrainingState.RUNNING}) | FINAL_STATES,
    TrainingState.RUNNING: frozenset({TrainingState.PAUSED}) | FINAL_STATES,
    TrainingState.PAUSED: frozenset({TrainingState.RUNNING}) | FINAL_STATES,
    **{s: frozenset() for s in FINAL_STATES},
}


class StateError(RuntimeError):
    """A control action the run's current state does not allow (e.g. pausing a finished run)."""


class TrainingFailure(RuntimeError):
    """Training cannot go on (non-finite loss, ...); the message says why and what to try."""


class Progress(TypedDict):
    """The progress object of the HTTP API and ``run.progress()``."""

    current_epoch: int
    total_epochs: int
    training_state: str
    latest_metrics: dict[str, Any]
    best_metrics: dict[str, Any]
    current_batch: int
    total_batches: int
    reason: Optional[str]
    error: Optional[str]
    logger_errors: list[dict[str, str]]
    config_changes: list[dict[str, Any]]


@dataclass
class RunState:
    """Everything about one run except the framework's tensors (see the module docstring)."""

    total_epochs: int
    task: str = CLASSIFICATION
    state: TrainingState = TrainingState.PENDING
    reason: Optional[str] = None           # why the run is paused, or why it ended
    error: Optional[str] = None            # what went wrong, for a failed run
    current_epoch: int = 0                 # epochs completed
    batch: int = 0                         # batches done in the epoch in progress
    num_batches: int = 0
    learning_rate: Optional[float] = None  # the rate of the epoch in progress
    running_loss: Optional[float] = None   # mean training loss of the epoch in progress so far
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: Optional[int] = None
    active_seconds: float = 0.0            # training time, pauses excluded, up to the last change
    started_at: Optional[float] = None     # wall-clock times
    finished_at: Optional[float] = None
    artifacts_path: Optional[str] = None
    last_checkpoint: Optional[str] = None
    # Each tracking logger that failed ({"logger", "message"}): the run went on without it.
    logger_errors: list[dict[str, str]] = field(default_factory=list)
    # Each change steering applied (``config_change`` event data, trainer.steering), in order.
    config_changes: list[dict[str, Any]] = field(default_factory=list)
    steps_done: int = 0                    # batches of the epochs completed (all epochs, resumes included)
    # The loop's own state, absent (None) in a follower: what early stopping, the schedule and a
    # partly trained epoch need to continue exactly.
    seed: Optional[int] = None
    early_stopping: Optional[EarlyStopping] = None
    schedule: Optional[LRSchedule] = None
    # A run restored from a checkpoint written mid-epoch: that epoch's metric sums and active
    # seconds so far, until the loop has put them back.
    epoch_totals: Optional[dict[str, Any]] = None
    epoch_elapsed: float = 0.0
    # ... and the batch size and rate that epoch trained with (a steered run may have changed them since).
    epoch_batch_size: Optional[int] = None
    epoch_learning_rate: Optional[float] = None
    _running_since: Optional[float] = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def fresh(cls, config: TrainingConfig, task: str, seed: int) -> "RunState":
        """The state of a run that has not trained yet."""
        return cls(total_epochs=config.epochs, task=task, seed=seed,
                   early_stopping=EarlyStopping(config.early_stopping_patience, config.min_delta,
                                                config.early_stopping),
                   schedule=LRSchedule(config))

    # ------------------------------------------------------------------ derived views
    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def latest_metrics(self) -> dict[str, Any]:
        return dict(self.history[-1]) if self.history else {}

    @property
    def best_metrics(self) -> dict[str, Any]:
        """``{"loss", "accuracy" (or "mae"), "epoch"}`` of the best epoch by val_loss; {} before one."""
        return best_summary(self.history, self.best_epoch, self.task)

    def elapsed(self) -> float:
        """Active training seconds so far: paused time does not count."""
        since = self._running_since
        return self.active_seconds + (time.monotonic() - since if since is not None else 0.0)

    def progress(self) -> Progress:
        return {"current_epoch": self.current_epoch, "total_epochs": self.total_epochs,
                "training_state": self.state.value, "latest_metrics": self.latest_metrics,
                "best_metrics": self.best_metrics, "current_batch": self.batch,
                "total_batches": self.num_batches, "reason": self.reason, "error": self.error,
                "logger_errors": [dict(e) for e in self.logger_errors],
                "config_changes": _copies(self.config_changes)}

    @property
    def step(self) -> int:
        """Global batch step: batches done in all epochs so far."""
        return self.steps_done + self.batch

    # ------------------------------------------------------------------ the one way it changes
    def check_transition(self, new: TrainingState) -> None:
        if new != self.state and new not in TRANSITIONS[self.state]:
            raise StateError(f"a run cannot go from {self.state.value} to {new.value}")

    def apply(self, event: str, data: Mapping[str, Any]) -> None:
        """Apply one event (see ``trainer.events`` for each one's data); unknown events are ignored."""
        handler = _APPLY.get(event)
        if handler is not None:
            handler(self, data)

    def _on_state_change(self, d: Mapping[str, Any]) -> None:
        new = TrainingState(d["new"])
        self.check_transition(new)
        running = new == TrainingState.RUNNING
        self.active_seconds = float(d.get("elapsed", self.elapsed()))
        self._running_since = time.monotonic() if running else None
        if running and self.started_at is None:
            self.started_at = time.time()
        if new in FINAL_STATES:
            self.finished_at = self.finished_at or time.time()
        self.state, self.reason = new, d.get("reason")
        if new == TrainingState.FAILED:
            self.error = d.get("error") or self.reason

    def _on_train_begin(self, d: Mapping[str, Any]) -> None:
        self.total_epochs = int(d["total_epochs"])
        self.current_epoch = int(d["start_epoch"])
        self.task = d.get("task", self.task)

    def _on_epoch_begin(self, d: Mapping[str, Any]) -> None:
        self.learning_rate = d["learning_rate"]
        self.batch, self.num_batches = int(d.get("batch", 0)), int(d["num_batches"])
        self.running_loss = None

    def _on_batch_end(self, d: Mapping[str, Any]) -> None:
        self.batch, self.num_batches = int(d["batch"]), int(d["num_batches"])
        self.running_loss = d["loss"]

    def _on_epoch_end(self, d: Mapping[str, Any]) -> None:
        entry = dict(d["metrics"])
        self.history.append(entry)  # type: ignore[arg-type]
        self.current_epoch = int(entry["epoch"])
        self.best_epoch = d.get("best_epoch", self.best_epoch)
        self.steps_done += self.num_batches

    def _on_config_change(self, d: Mapping[str, Any]) -> None:
        """A steered change (``trainer.steering``); the loop updates its own schedule and early stopping."""
        self.config_changes.append(_copies([d])[0])
        changes = d["changes"]
        if "epochs" in changes:
            self.total_epochs = int(changes["epochs"]["new"])
        if "learning_rate" in changes:
            self.learning_rate = changes["learning_rate"]["new"]

    def _on_logger_error(self, d: Mapping[str, Any]) -> None:
        self.logger_errors.append({"logger": str(d.get("logger")), "message": str(d.get("message"))})

    def _on_train_end(self, d: Mapping[str, Any]) -> None:
        self.reason = d.get("reason", self.reason)
        self.error = d.get("error", self.error)
        self.artifacts_path = d.get("artifacts_path")
        self.last_checkpoint = d.get("last_checkpoint")

    # ------------------------------------------------------------------ a follower's copy
    def snapshot(self) -> dict[str, Any]:
        """What a follower needs to start from this state (JSON-safe; no loop state)."""
        return {"total_epochs": self.total_epochs, "task": self.task, "state": self.state.value,
                "reason": self.reason, "error": self.error, "current_epoch": self.current_epoch,
                "batch": self.batch, "num_batches": self.num_batches, "learning_rate": self.learning_rate,
                "history": [dict(e) for e in self.history], "best_epoch": self.best_epoch,
                "elapsed": self.elapsed(), "started_at": self.started_at, "finished_at": self.finished_at,
                "artifacts_path": self.artifacts_path, "last_checkpoint": self.last_checkpoint,
                "logger_errors": [dict(e) for e in self.logger_errors],
                "config_changes": _copies(self.config_changes), "steps_done": self.steps_done}

    @classmethod
    def from_snapshot(cls, snap: Mapping[str, Any]) -> "RunState":
        state = TrainingState(snap.get("state", "pending"))
        out = cls(total_epochs=int(snap["total_epochs"]), task=snap.get("task", CLASSIFICATION), state=state,
                  reason=snap.get("reason"), error=snap.get("error"),
                  current_epoch=int(snap.get("current_epoch", 0)), batch=int(snap.get("batch", 0)),
                  num_batches=int(snap.get("num_batches", 0)), learning_rate=snap.get("learning_rate"),
                  history=[dict(e) for e in snap.get("history", [])],  # type: ignore[misc]
                  best_epoch=snap.get("best_epoch"), active_seconds=float(snap.get("elapsed", 0.0)),
                  started_at=snap.get("started_at"), finished_at=snap.get("finished_at"),
                  artifacts_path=snap.get("artifacts_path"), last_checkpoint=snap.get("last_checkpoint"),
                  logger_errors=[dict(e) for e in snap.get("logger_errors") or []],
                  config_changes=_copies(snap.get("config_changes") or []),
                  steps_done=int(snap.get("steps_done") or 0))
        if state == TrainingState.RUNNING:
            out._running_since = time.monotonic()
        return out

    # ------------------------------------------------------------------ checkpoints
    @property
    def mid_epoch(self) -> bool:
        """Whether some but not all batches of the epoch in progress are done."""
        return 0 < self.batch < self.num_batches

    def to_dict(self, epoch_totals: Optional[dict[str, Any]] = None, epoch_elapsed: float = 0.0) -> dict[str, Any]:
        """The loop's state for a checkpoint: the position (mid-epoch when batches of the next
        epoch are done, with that epoch's partial ``epoch_totals`` and active seconds), history,
        seed, early-stopping and schedule state."""
        assert self.early_stopping is not None and self.schedule is not None, "a follower has no loop state"
        mid = self.mid_epoch
        return {"epoch": self.current_epoch, "batch": self.batch if mid else 0,
                "num_batches": self.num_batches if mid else 0,
                "epoch_totals": epoch_totals if mid else None,
                "elapsed": epoch_elapsed if mid else 0.0, "seed": self.seed,
                "epoch_batch_size": self.epoch_batch_size if mid else None,
                "epoch_learning_rate": self.learning_rate if mid else None,
                "config_changes": _copies(self.config_changes), "steps_done": self.steps_done,
                "history": [dict(e) for e in self.history], "early_stopping": self.early_stopping.state_dict(),
                "schedule": self.schedule.state_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], config: TrainingConfig, task: str) -> "RunState":
        """The state :meth:`to_dict` saved, for a run of ``config`` (the checkpoint's, changed only
        in what cannot change results)."""
        state = cls.fresh(config, task, int(d["seed"]))
        assert state.early_stopping is not None and state.schedule is not None
        state.early_stopping.load_state_dict(d["early_stopping"])
        state.schedule.load_state_dict(d["schedule"])
        state.history = [dict(e) for e in d["history"]]  # type: ignore[misc]
        state.current_epoch = int(d["epoch"])
        state.batch, state.num_batches = int(d["batch"]), int(d["num_batches"])
        state.best_epoch = state.early_stopping.best_epoch
        state.epoch_totals = d.get("epoch_totals")
        state.epoch_elapsed = float(d.get("elapsed") or 0.0)
        state.epoch_batch_size = d.get("epoch_batch_size")
        state.epoch_learning_rate = d.get("epoch_learning_rate")
        state.config_changes = _copies(d.get("config_changes") or [])
        state.steps_done = int(d.get("steps_done") or 0)
        state.active_seconds = sum(float(e.get("time_per_epoch", 0.0)) for e in state.history) + state.epoch_elapsed
        if not math.isfinite(state.active_seconds):
            state.active_seconds = 0.0
        return state


_APPLY: dict[str, Callable[[RunState, Mapping[str, Any]], None]] = {
    "state_change": RunState._on_state_change, "train_begin": RunState._on_train_begin,
    "epoch_begin": RunState._on_epoch_begin, "batch_end": RunState._on_batch_end,
    "epoch_end": RunState._on_epoch_end, "train_end": RunState._on_train_end,
    "logger_error": RunState._on_logger_error, "config_change": RunState._on_config_change,
}


def _copies(changes: list[Any]) -> list[dict[str, Any]]:
    """Copies of ``config_change`` data, nested dicts included (no copy shares a dict with the run's)."""
    return [{**c, "changes": {k: dict(v) for k, v in c["changes"].items()}} for c in changes]
