"""The epoch loop: an asyncio coroutine that runs batches off the event loop in time slices.

Control (pause, resume, stop) is a pair of flags checked between batches, so a request takes effect
within one batch; any thread may call it. Heavy compute hops to a worker thread once per slice of
batches (about ``SLICE_SECONDS``), not per batch, so the hop costs nothing measurable.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import pandas as pd

from .backends import create_backend
from .config import ConfigError, TrainingConfig
from .data import prepare_data
from .early_stopping import EarlyStopping
from .events import EventBus, Observer
from .schedules import LRSchedule

log = logging.getLogger("trainer")

SLICE_SECONDS = 0.05


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


class StateError(RuntimeError):
    """A control action the run's current state does not allow (e.g. pausing a finished run)."""


class TrainingFailure(RuntimeError):
    """Training cannot go on (non-finite loss, ...); the message says why and what to try."""


def epoch_order(seed: int, epoch_index: int, n: int) -> np.ndarray:
    """The shuffled order of training samples for one epoch: a pure function of seed and epoch."""
    return np.random.default_rng([seed, epoch_index]).permutation(n)


class Trainer:
    """One training run of ``config`` on ``data``.

    ``Trainer(config, df)`` validates the config against the DataFrame and builds the model;
    ``fit()`` trains to the end (blocking), ``start()`` schedules training on the running event loop.
    """

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = ()):
        if isinstance(config, dict):
            config = TrainingConfig.from_dict(config)
        if not isinstance(config, TrainingConfig):
            raise ConfigError.single("config", type(config).__name__, "expected a TrainingConfig or a dict")
        self.config = config
        self.seed = config.seed if config.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
        self.data = prepare_data(config, data, seed=self.seed)
        self.backend = create_backend(config.backend, config, self.data, self.seed, model)
        self.schedule = LRSchedule(config)
        self.early_stopping = EarlyStopping(config.early_stopping_patience, config.min_delta, config.early_stopping)
        self.events = EventBus(self)
        for cb in callbacks:
            self.events.add(cb)

        self.history: list[dict[str, Any]] = []
        self.current_epoch = 0          # epochs completed
        self.batch = 0                  # batches done in the epoch in progress
        self.num_batches = 0
        self.reason: Optional[str] = None   # why the run ended (or paused)
        self.error: Optional[str] = None
        self.artifacts_path: Optional[Path] = None
        self.started_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        self._state = TrainingState.PENDING
        self._pause_requested = False
        self._stop_requested = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._done = threading.Event()
        self._best_snapshot: Any = None
        self._paused_seconds = 0.0

    # ------------------------------------------------------------------ public state
    @property
    def state(self) -> TrainingState:
        return self._state

    @property
    def total_epochs(self) -> int:
        return self.config.epochs

    @property
    def is_classification(self) -> bool:
        return self.data.task == "classification"

    @property
    def latest_metrics(self) -> dict[str, Any]:
        return dict(self.history[-1]) if self.history else {}

    @property
    def best_metrics(self) -> dict[str, Any]:
        """``{"loss", "accuracy" (or "mae"), "epoch"}`` of the best epoch by val_loss; {} before one."""
        best = self.early_stopping.best_epoch
        if best is None:
            return {}
        entry = self.history[best - 1]
        out = {"loss": entry["val_loss"]}
        if self.is_classification:
            out["accuracy"] = entry["val_accuracy"]
        else:
            out["mae"] = entry["val_mae"]
        out["epoch"] = best
        return out

    @property
    def observer_errors(self) -> list[str]:
        return self.events.errors

    def progress(self) -> dict[str, Any]:
        """SPEC.md's ``progress`` object (plus batch position and the end reason)."""
        return {"current_epoch": self.current_epoch, "total_epochs": self.total_epochs,
                "training_state": self.state.value, "latest_metrics": self.latest_metrics,
                "best_metrics": self.best_metrics, "current_batch": self.batch,
                "total_batches": self.num_batches, "reason": self.reason, "error": self.error}

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def add_callback(self, observer: Observer) -> Any:
        """Subscribe an observer (a Callback or ``fn(event, data)``); returns an unsubscribe function."""
        return self.events.add(observer)

    def __repr__(self) -> str:
        return (f"<Trainer {self.config.model_type} {self.state.value} "
                f"epoch {self.current_epoch}/{self.total_epochs}>")

    # ------------------------------------------------------------------ control
    def pause(self) -> None:
        """Pause after the batch in progress. Safe from any thread."""
        if self._state in FINAL_STATES:
            raise StateError(f"cannot pause: the run has already ended ({self._state.value})")
        if self._state == TrainingState.PAUSED or self._pause_requested:
            raise StateError("cannot pause: the run is already paused")
        self._pause_requested = True

    def resume(self) -> None:
        """Continue a paused run. Safe from any thread."""
        if self._state in FINAL_STATES:
            raise StateError(f"cannot resume: the run has already ended ({self._state.value})")
        if not self._pause_requested:
            raise StateError(f"cannot resume: the run is not paused ({self._state.value})")
        self._pause_requested = False
        self._wake_up()

    def stop(self) -> None:
        """Stop after the batch in progress; completed epochs and artifacts are kept. Safe from any thread."""
        if self._state in FINAL_STATES:
            raise StateError(f"cannot stop: the run has already ended ({self._state.value})")
        self._stop_requested = True
        self._wake_up()

    def _wake_up(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def _interrupted(self) -> bool:
        return self._pause_requested or self._stop_requested

    # ------------------------------------------------------------------ running
    def start(self) -> "asyncio.Task[None]":
        """Schedule the run on the running event loop and return its task at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise StateError("start() needs a running asyncio event loop (a notebook or async code); "
                             "in a plain script call fit()") from None
        self._claim()
        self._task = loop.create_task(self._run(), name=f"trainer-{id(self):x}")
        return self._task

    def fit(self) -> "Trainer":
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
            if self._state not in FINAL_STATES:
                self._stop_requested = True
                self._wake_up()
            worker.join()
        return self

    async def wait(self) -> "Trainer":
        """Wait for the end of a run started with ``start()``."""
        if self._task is None:
            raise StateError("wait() needs a run started with start()")
        await asyncio.shield(self._task)
        return self

    def wait_until_done(self, timeout: Optional[float] = None) -> bool:
        """Block the calling thread until the run ends; True if it did within ``timeout``."""
        return self._done.wait(timeout)

    def _claim(self) -> None:
        if self._state != TrainingState.PENDING or self._task is not None or self.started_at is not None:
            raise StateError(f"this run has already been started ({self._state.value}); create a new Trainer")
        self.started_at = time.time()

    def _set_state(self, new: TrainingState, reason: Optional[str] = None) -> None:
        old = self._state
        if old == new:
            return
        self._state = new
        self.events.emit("state_change", {"old": old.value, "new": new.value, "reason": reason})

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        final, reason = TrainingState.COMPLETED, f"finished all {self.total_epochs} epochs"
        try:
            self._set_state(TrainingState.RUNNING)
            self.events.emit("train_begin", {"total_epochs": self.total_epochs, "start_epoch": self.current_epoch})
            while self.current_epoch < self.total_epochs:
                outcome = await self._run_epoch()
                if outcome is not None:
                    final, reason = outcome
                    break
        except asyncio.CancelledError:
            final, reason = TrainingState.STOPPED, "cancelled"
            await self._finish(final, reason)
            raise
        except Exception as exc:  # the run fails; the kernel and the history survive
            final, reason = TrainingState.FAILED, _describe_failure(exc, self.config)
            self.error = reason
            log.error("training failed: %s", reason, exc_info=not isinstance(exc, TrainingFailure))
        await self._finish(final, reason)

    async def _run_epoch(self) -> Optional[tuple[TrainingState, str]]:
        """Train one epoch; return (final state, reason) when the run must end after it."""
        index = self.current_epoch
        epoch = index + 1
        lr = self.schedule.lr(index)
        self.backend.set_learning_rate(lr)
        order = epoch_order(self.seed, index, len(self.data.train_index))
        self.num_batches = await asyncio.to_thread(self.backend.begin_epoch, order)
        self.batch = 0
        self.events.emit("epoch_begin", {"epoch": epoch, "learning_rate": lr})
        started = time.perf_counter()
        self._paused_seconds = 0.0
        while self.batch < self.num_batches:
            if self._stop_requested:
                return TrainingState.STOPPED, f"stopped by the user during epoch {epoch}"
            if self._pause_requested:
                await self._hold_paused(epoch)
                continue
            self.batch, loss = await asyncio.to_thread(self._train_slice)
            if not math.isfinite(loss):
                raise TrainingFailure(
                    f"the training loss became {loss} in epoch {epoch} (batch {self.batch}); "
                    f"lower learning_rate (now {lr:g}) or check the data for extreme values")
            self.events.emit("batch_end", {"epoch": epoch, "batch": self.batch,
                                           "num_batches": self.num_batches, "loss": loss})
        metrics = self.backend.end_epoch()
        metrics.update(await asyncio.to_thread(self.backend.evaluate))
        if not math.isfinite(metrics["val_loss"]):
            raise TrainingFailure(f"the validation loss became {metrics['val_loss']} in epoch {epoch}; "
                                  f"lower learning_rate (now {lr:g}) or check the data")
        entry = {"epoch": epoch, **_ordered(metrics), "learning_rate": lr,
                 "time_per_epoch": time.perf_counter() - started - self._paused_seconds}
        improved, stop = self.early_stopping.update(epoch, metrics["val_loss"])
        if improved and self.config.restore_best_weights:
            self._best_snapshot = self.backend.snapshot()
        self.schedule.observe(metrics["val_loss"])
        self.history.append(entry)
        self.current_epoch = epoch
        self.events.emit("epoch_end", {"metrics": dict(entry), "improved": improved})
        if stop:
            return TrainingState.EARLY_STOPPED, "early stopping: " + self.early_stopping.reason()
        if self._stop_requested:
            return TrainingState.STOPPED, f"stopped by the user after epoch {epoch}"
        return None

    def _train_slice(self) -> tuple[int, float]:
        deadline = time.perf_counter() + SLICE_SECONDS
        batch = self.backend.train_batches(self.batch, self.num_batches, deadline, self._interrupted)
        return batch, self.backend.running_loss()

    async def _hold_paused(self, epoch: int) -> None:
        assert self._wake is not None
        self._set_state(TrainingState.PAUSED, f"paused in epoch {epoch} after batch {self.batch}")
        since = time.perf_counter()
        while self._pause_requested and not self._stop_requested:
            self._wake.clear()
            await self._wake.wait()
        self._paused_seconds += time.perf_counter() - since
        if not self._stop_requested:
            self._set_state(TrainingState.RUNNING, "resumed")

    async def _finish(self, final: TrainingState, reason: str) -> None:
        try:
            if self.config.restore_best_weights and self._best_snapshot is not None:
                self.backend.restore(self._best_snapshot)
            if self.config.output_path:
                from .artifacts import save_run
                self.artifacts_path = await asyncio.to_thread(save_run, self, final, reason)
        except Exception as exc:
            log.error("could not write artifacts", exc_info=True)
            msg = f"could not write the artifacts to {self.config.output_path!r}: {type(exc).__name__}: {exc}"
            final, reason = TrainingState.FAILED, (f"{reason}; {msg}" if final == TrainingState.FAILED else msg)
            self.error = reason
        self.reason = reason
        self.finished_at = time.time()
        self._pause_requested = False
        self._set_state(final, reason)
        self.events.emit("train_end", {"state": final.value, "best_metrics": self.best_metrics, "reason": reason})
        self._done.set()


def _ordered(metrics: dict[str, float]) -> dict[str, float]:
    keys = ("train_loss", "train_accuracy", "train_mae", "val_loss", "val_accuracy", "val_mae")
    return {k: metrics[k] for k in keys if k in metrics}


def _describe_failure(exc: BaseException, config: TrainingConfig) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrainingFailure) else str(exc)
    lowered = str(exc).lower()
    if "out of memory" in lowered:
        text += (f". The device ran out of memory at batch_size={config.batch_size}: try "
                 f"batch_size={max(1, config.batch_size // 2)} or device='cpu'")
    return text
