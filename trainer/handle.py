"""The run-handle interface: what every run offers, wherever its batches are computed.

:class:`~trainer.loop.LocalRun` trains in this process; :class:`~trainer.distributed.launcher.LaunchedRun`
runs ranks in worker processes and follows rank 0; :class:`~trainer.ray_executor.run.RayRun` follows a
run hosted on a Ray actor. Each holds a :class:`~trainer.state.RunState`
(changed only by applying the run's events) and an :class:`~trainer.events.EventBus`, so everything
below, and the way a run is started, fitted and awaited, are the same for all. ``trainer.Trainer(config, df)`` returns one of them.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pandas as pd

from .checkpoints import refuse_foreign_checkpoints
from .config import TrainingConfig, as_config, draw_seed
from .data.inputs import prepare_input
from .events import EventBus, Observer
from .metrics import CLASSIFICATION
from .state import FINAL_STATES, FINAL_VALUES, Progress, RunState, StateError, TrainingFailure, TrainingState
from .steering import change_event, check_changes

if TYPE_CHECKING:
    from .backends.base import Backend
    from .data import PreparedData
    from .follower import RunFollower
    from .resume import ResumePlan
    from .evaluation import Evaluation
    from .lr_finder import LRFindResult
    from .summary import ModelSummary

log = logging.getLogger("trainer")


class RunHandle(ABC):
    """One training run: its config, prepared data and model, its state, observers and control."""

    config: TrainingConfig
    data: "PreparedData"
    seed: int
    backend: "Backend"          # the model in this process (a multi-process run's trained copy)
    run_state: RunState
    events: EventBus

    # ------------------------------------------------------------------ building (the same for every run)
    def _accept_config(self, config: "TrainingConfig | dict[str, Any]", resume: Optional["ResumePlan"],
                       overwrite: bool) -> TrainingConfig:
        """Take ``config``. Another run's checkpoints in its output_path are deleted only when asked
        to (``overwrite``); a resumed run continues its own."""
        self.config = config = as_config(config)
        self._overwrite = overwrite or resume is not None
        refuse_foreign_checkpoints(config.output_path, self._overwrite)
        return config

    def _prepare_data(self, data: pd.DataFrame, resume: Optional["ResumePlan"]) -> None:
        """Draw the seed and prepare ``data``; a resumed run checks it is the data it trained on."""
        self.seed = draw_seed(self.config)
        self.data = prepare_input(self.config, data, self.seed)
        if resume is not None:
            resume.check_data(self.data)

    # ------------------------------------------------------------------ control (one way for every run)
    # A subclass sets _pause_requested = _stop_requested = False and carries a request to its
    # batches in _request(); the checks and flags are the same for every run.
    _pause_requested: bool
    _stop_requested: bool

    @abstractmethod
    def _request(self, action: str) -> None:
        """Carry ``"pause"``, ``"resume"`` or ``"stop"`` (already flagged) to where the batches run."""

    def _check_active(self, action: str) -> None:
        if self.state in FINAL_STATES:
            raise StateError(f"cannot {action}: the run has already ended ({self.state.value})")

    @property
    def pause_requested(self) -> bool:
        """Whether a pause was asked for (by anyone) and not yet resumed: the run is pausing or paused."""
        return self._pause_requested

    def pause(self) -> None:
        """Pause after the batch in progress. Safe from any thread."""
        self._check_active("pause")
        if self.state == TrainingState.PAUSED or self._pause_requested:
            raise StateError("cannot pause: the run is already paused")
        self._pause_requested = True
        self._request("pause")

    def resume(self) -> None:
        """Continue a paused run. Safe from any thread."""
        self._check_active("resume")
        if not self._pause_requested:
            raise StateError(f"cannot resume: the run is not paused ({self.state.value})")
        self._pause_requested = False
        self._request("resume")

    def stop(self) -> None:
        """Stop after the batch in progress; completed epochs and artifacts are kept. Safe from any thread."""
        self._check_active("stop")
        self._stop_requested = True
        self._request("stop")

    def update(self, **changes: Any) -> dict[str, Any]:
        """Change settings of the live run (``trainer.steering.CHANGEABLE``: learning_rate, the
        schedule, epochs, batch_size, dropout_rate, early stopping, checkpoint cadence) between two
        batches; returns the ``config_change`` event's data once applied (``changes``: each field's
        old and new value; ``epoch``, ``batch``, ``step``, ``time``), with empty ``changes`` when
        every value equals the run's. Safe from any thread. ConfigError names a field that cannot
        change or a bad value (and nothing changes); StateError for a run that has ended or not started."""
        self._check_active("update")
        if not self._claimed:
            raise StateError("cannot update: the run has not started; build it with the settings you want, "
                             "or start() it first")
        in_epoch = self.state in (TrainingState.RUNNING, TrainingState.PAUSED)
        checked = check_changes(self.config, changes, epochs_done=self.current_epoch + (1 if in_epoch else 0))
        if not checked:
            return change_event(self.config, {}, self.current_epoch + 1, self.batch, self.run_state.step)
        return self._update(checked)

    def _update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Carry checked ``changes`` to where the batches run; the applied event's data."""
        raise StateError(f"a {type(self).__name__} cannot be steered while it trains")

    def _on_own_loop(self) -> bool:
        """Whether the caller runs on the event loop that drives this run (waiting there would stall it)."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            return False
        task = self._task
        return (task is not None and task.get_loop() is current) or current is getattr(self, "_driving_loop", None)

    @property
    def config_changes(self) -> list[dict[str, Any]]:
        """Every change :meth:`update` (or a replay) applied to this run, in order (``config_change`` data)."""
        return self.run_state.progress()["config_changes"]

    # ------------------------------------------------------------------ driving (one way for every run)
    # A subclass sets _task = None, _done = threading.Event() and _claimed = False, and implements
    # _drive() (the run up to its end), _end_here() (end it from this side) and _stop_far_end()
    # (stop whatever computes the batches: the compute thread's slice, ranks, an actor).
    _task: Optional[asyncio.Task[None]]
    _done: threading.Event
    _final_change: Optional[dict[str, Any]] = None   # a followed run's final state, until its train_end
    _claimed: bool

    async def _run(self) -> None:
        """The whole run, and the one way out of it: whatever escapes the drive ends the run as
        failed with that reason, a cancel ends it as stopped; either way the far end is stopped
        first and ``_done`` is set."""
        self._driving_loop = asyncio.get_running_loop()
        try:
            await self._drive()
        except asyncio.CancelledError:
            await self._end_run(TrainingState.STOPPED, "cancelled", wait=False)
            raise
        except Exception as exc:
            reason = self._failure_reason(exc)
            log.error("training failed: %s", reason, exc_info=not isinstance(exc, TrainingFailure))
            await self._end_run(TrainingState.FAILED, reason)

    @abstractmethod
    async def _drive(self) -> None:
        """The run from preparation to its final state; sets ``_done`` when it ends by itself."""

    @abstractmethod
    async def _end_here(self, final: TrainingState, reason: str, wait: bool) -> None:
        """End the run from this side in ``final`` (the observers hear it), and set ``_done``.
        ``wait=False`` (a cancelled task): finish without yielding to the loop where it can."""

    async def _stop_far_end(self, wait: bool) -> None:
        """Stop whatever computes the batches (the compute thread's slice, ranks, an actor) before
        the run ends from this side."""

    def _failure_reason(self, exc: BaseException) -> str:
        """What ``exc`` escaping the drive tells the user."""
        return str(exc) if isinstance(exc, TrainingFailure) else f"{type(exc).__name__}: {exc}"

    async def _end_run(self, final: TrainingState, reason: str, wait: bool = True) -> None:
        """End the run from this side: its far end stops, then (unless it has already ended) the
        run ends in ``final`` for ``reason``."""
        await self._stop_far_end(wait)
        if not self._done.is_set():
            await self._end_here(final, reason, wait)

    def _claim(self) -> None:
        """Mark the run started; a second start is refused."""
        if self._claimed or self.state != TrainingState.PENDING:
            raise StateError(f"this run has already been started ({self.state.value}); create a new Trainer")
        self._claimed = True

    def start(self) -> asyncio.Task[None]:
        """Schedule the run on the running event loop and return its task at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise StateError("start() needs a running asyncio event loop (a notebook or async code); "
                             "in a plain script call fit()") from None
        self._claim()
        self._task = loop.create_task(self._run(), name=f"trainer-{id(self):x}")
        return self._task

    def fit(self) -> "RunHandle":
        """Train to the end, blocking; works in a script and inside a notebook cell. Ctrl-C stops."""
        self._claim()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                asyncio.run(self._run())
            except KeyboardInterrupt:
                pass
            return self
        # A notebook cell already runs inside an event loop: drive the run on a private loop in
        # a worker thread and block this one until it ends.
        worker = threading.Thread(target=lambda: asyncio.run(self._run()), name="trainer-fit", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.1)
        except KeyboardInterrupt:
            if self.state not in FINAL_STATES:
                self._stop_requested = True
                self._request("stop")
            worker.join()
        return self

    async def wait(self) -> "RunHandle":
        """Wait for the end of a run started with ``start()``."""
        if self._task is None:
            raise StateError("wait() needs a run started with start()")
        await asyncio.shield(self._task)
        return self

    def wait_until_done(self, timeout: Optional[float] = None) -> bool:
        """Block the calling thread until the run ends; True if it did within ``timeout``."""
        return self._done.wait(timeout)

    async def _end_followed(self, follower: "RunFollower", final: TrainingState, reason: str,
                            wait: bool = True) -> None:
        """End a run this process follows from here (its far end died or could not start, or the
        task was cancelled): the loggers finish, then the followers hear the final state and train_end.
        ``wait=False`` (a cancelled task) finishes without yielding to the loop."""
        error = reason if final == TrainingState.FAILED else None
        if error:
            log.error("training failed: %s", reason)
        self._pause_requested = False
        end = {"state": final.value, "reason": reason, "error": error, "best_metrics": self.best_metrics,
               "artifacts_path": None, "last_checkpoint": None}
        if wait:
            await asyncio.to_thread(self.events.finish, end)
        else:
            self.events.finish(end)
        self._follow_state_change(follower, final, reason, error)
        follower.apply("train_end", end)
        self._done.set()

    async def _apply_followed(self, follower: "RunFollower", event: str, data: dict[str, Any]) -> bool:
        """Apply one event of a run followed from another process; True once it was its train_end.
        The final state change waits for train_end, so followers hear it after the observers'
        finish, as with a local run."""
        if event == "state_change" and data.get("new") in FINAL_VALUES:
            self._final_change = data
            return False
        if event == "train_end":
            self._pause_requested = False
            await asyncio.to_thread(self.events.finish, data)
            if self._final_change is not None:
                follower.apply("state_change", self._final_change)
            follower.apply(event, data)
            self._done.set()
            return True
        follower.apply(event, data)
        return False

    def _follow_state_change(self, follower: "RunFollower", new: TrainingState, reason: Optional[str],
                             error: Optional[str] = None) -> None:
        """A state change decided on this side of a followed run, told to its followers."""
        if new != self.state:
            follower.apply("state_change", {"old": self.state.value, "new": new.value, "reason": reason,
                                            "error": error, "elapsed": self.run_state.elapsed()})

    # ------------------------------------------------------------------ state (read-only views)
    @property
    def state(self) -> TrainingState:
        return self.run_state.state

    @property
    def total_epochs(self) -> int:
        return self.run_state.total_epochs

    @property
    def current_epoch(self) -> int:
        """Epochs completed."""
        return self.run_state.current_epoch

    @property
    def batch(self) -> int:
        """Batches done in the epoch in progress."""
        return self.run_state.batch

    @property
    def num_batches(self) -> int:
        return self.run_state.num_batches

    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per finished epoch (``epoch``, ``train_loss``, ..., ``time_per_epoch``)."""
        return self.run_state.history  # type: ignore[return-value]

    @property
    def latest_metrics(self) -> dict[str, Any]:
        return self.run_state.latest_metrics

    @property
    def best_metrics(self) -> dict[str, Any]:
        """``{"loss", "accuracy" (or "mae"), "epoch"}`` of the best epoch by val_loss; {} before one."""
        return self.run_state.best_metrics

    @property
    def reason(self) -> Optional[str]:
        """Why the run ended (or is paused)."""
        return self.run_state.reason

    @property
    def error(self) -> Optional[str]:
        return self.run_state.error

    @property
    def started_at(self) -> Optional[float]:
        return self.run_state.started_at

    @property
    def finished_at(self) -> Optional[float]:
        return self.run_state.finished_at

    @property
    def artifacts_path(self) -> Optional[Path]:
        path = self.run_state.artifacts_path
        return Path(path) if path else None

    @property
    def last_checkpoint(self) -> Optional[Path]:
        """The checkpoint file this run wrote last (None before the first)."""
        path = self.run_state.last_checkpoint
        return Path(path) if path else None

    @property
    def is_classification(self) -> bool:
        return self.run_state.task == CLASSIFICATION

    @property
    def device_name(self) -> str:
        """Where the batches are computed, in words."""
        return self.backend.device_name

    @property
    def observer_errors(self) -> list[str]:
        return self.events.errors

    def progress(self) -> Progress:
        """The progress object (as the HTTP API's progress endpoint answers it)."""
        return self.run_state.progress()

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def summary(self) -> "ModelSummary":
        """Layers, output shapes, parameter counts and the training-memory estimate of this run's model."""
        from .summary import run_summary

        return run_summary(self)

    def evaluate(self, df: Optional[pd.DataFrame] = None) -> "Evaluation":
        """Figures of the model on the validation split (``df=None``) or on a raw DataFrame with the
        target column (see :mod:`trainer.evaluation`). Not while the run is running or paused."""
        if self.state in (TrainingState.RUNNING, TrainingState.PAUSED):
            raise StateError(f"cannot evaluate while the run is {self.state.value}: its weights are still "
                             f"changing; wait for the end (or stop it) and evaluate then")
        from .evaluation import evaluate_validation

        if df is None:
            return evaluate_validation(self)
        from .artifacts import TrainedModel

        return TrainedModel.from_run(self).evaluate(df)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
                **options: Any) -> "LRFindResult":
        """Search for a learning rate (see :mod:`trainer.lr_finder`); weights, optimiser and RNG are
        left exactly as they were. Before start()/fit() or after the end. ``options``: ``rule``
        ("valley" or "steepest"), ``should_stop``, ``on_step``."""
        from .lr_finder import LRFinder

        return LRFinder(self, start_lr, end_lr, num_iter, **options).run()

    def add_callback(self, observer: Observer) -> Callable[[], None]:
        """Subscribe an observer (a Callback or ``fn(event, data)``); returns an unsubscribe function."""
        return self.events.add(observer)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.config.model_type} {self.state.value} "
                f"epoch {self.current_epoch}/{self.total_epochs}>")
