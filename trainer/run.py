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
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

import numpy as np
import pandas as pd

from .backends import create_backend
from .checkpoints import Checkpoint
from .config import ConfigError, TrainingConfig
from .data import prepare_data
from .early_stopping import EarlyStopping
from .events import EventBus, Observer
from .resume import RunCheckpoints, continue_epoch, resume_run
from .schedules import LRSchedule

if TYPE_CHECKING:
    from .evaluation import Evaluation
    from .lr_finder import LRFindResult

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

    def __new__(cls, config: Any = None, *args: Any, **kwargs: Any) -> "Trainer":
        # With several torch devices the ranks train in worker processes; the launcher subclass
        # presents this same interface from here (trainer/distributed/launcher.py).
        if cls is Trainer and config is not None:
            from .distributed import launcher_class
            cls = launcher_class(config) or cls
        return super().__new__(cls)

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = ()):
        if isinstance(config, dict):
            config = TrainingConfig.from_dict(config)
        if not isinstance(config, TrainingConfig):
            raise ConfigError.single("config", type(config).__name__, "expected a TrainingConfig or a dict")
        self.config = config
        self.seed = config.seed if config.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
        self.data = prepare_data(config, data, seed=self.seed)
        self.backend = self._create_backend(model)
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
        self._epoch_started = 0.0
        self._resume_from: Optional[Checkpoint] = None       # set by Trainer.resume
        self._checkpoints: Optional[RunCheckpoints] = None   # while running with checkpoints

    def _create_backend(self, model: Any) -> Any:
        """The framework backend; with ``devices`` other than 1, trainer.distributed picks it."""
        if self.config.devices != 1:
            from .distributed import create_backend as create_distributed_backend
            return create_distributed_backend(self.config, self.data, self.seed, model)
        return create_backend(self.config.backend, self.config, self.data, self.seed, model)

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

    def evaluate(self, df: Optional[pd.DataFrame] = None) -> "Evaluation":
        """Figures of the model on the validation split (``df=None``) or on a raw DataFrame with the
        target column: a :class:`trainer.evaluation.Evaluation`. Not while running or paused."""
        from .evaluation import evaluate_run
        return evaluate_run(self, df)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100, **options: Any) -> "LRFindResult":
        """Search for a learning rate (see :mod:`trainer.lr_finder`); weights, optimiser and RNG are left
        exactly as they were. Before start()/fit() or after the end. ``options``: ``rule``
        ("valley" or "steepest"), ``should_stop``, ``on_step``. Returns an ``LRFindResult``."""
        from .lr_finder import LRFinder
        return LRFinder(self, start_lr, end_lr, num_iter, **options).run()

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
        self.backend.interrupt()

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
        self.backend.interrupt()
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
        if getattr(self, "_tuning", None) is not None:     # set while lr_find searches (trainer/lr_finder.py)
            self.started_at = None
            raise StateError("cannot start while lr_find() is searching on this run; wait for it or stop it")

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
            self._checkpoints = await asyncio.to_thread(RunCheckpoints.open, self)
            self.events.emit("train_begin", {"total_epochs": self.total_epochs, "start_epoch": self.current_epoch})
            while self.current_epoch < self.total_epochs:
                outcome = await self._run_epoch()
                if outcome is not None:
                    final, reason = outcome
                    break
            await self._checkpoint_at_end(final, reason)
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
        # The epoch's time includes gathering its shuffled batches, not just the batches.
        started = time.perf_counter()
        self._paused_seconds = 0.0
        lr = self.schedule.lr(index)
        self.backend.set_learning_rate(lr)
        order = epoch_order(self.seed, index, len(self.data.train_index))
        self.num_batches = await asyncio.to_thread(self.backend.begin_epoch, order)
        self.batch = 0
        started -= continue_epoch(self)     # a run resumed mid-epoch goes on at its batch
        self._epoch_started = started
        self.events.emit("epoch_begin", {"epoch": epoch, "learning_rate": lr})
        while self.batch < self.num_batches:
            if self._stop_requested:
                return TrainingState.STOPPED, f"stopped by the user during epoch {epoch}"
            if self._pause_requested:
                await self._checkpoint_on_pause()
                await self._hold_paused(epoch)
                continue
            self.batch, loss = await asyncio.to_thread(self._train_slice)
            if not math.isfinite(loss):
                raise TrainingFailure(
                    f"the training loss became {loss} in epoch {epoch} (batch {self.batch}); "
                    f"lower learning_rate (now {lr:g}) or check the data for extreme values")
            self.events.emit("batch_end", {"epoch": epoch, "batch": self.batch,
                                           "num_batches": self.num_batches, "loss": loss})
            await self._checkpoint_mid_epoch()
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
        await self._checkpoint_epoch_end(improved)
        self.events.emit("epoch_end", {"metrics": dict(entry), "improved": improved})
        if stop:
            return TrainingState.EARLY_STOPPED, "early stopping: " + self.early_stopping.reason()
        if self._stop_requested:
            return TrainingState.STOPPED, f"stopped by the user after epoch {epoch}"
        return None

    def _train_slice(self) -> tuple[int, float]:
        deadline = time.perf_counter() + SLICE_SECONDS
        end = self._checkpoints.slice_end(self.batch, self.num_batches) if self._checkpoints else self.num_batches
        batch = self.backend.train_batches(self.batch, end, deadline, self._interrupted)
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

    # ------------------------------------------------------------------ checkpoints and resuming
    # When and what to write is trainer.resume.RunCheckpoints' business; these are the loop's hooks.
    # A checkpoint that cannot be written fails the run (it says where and why): nobody should
    # train for hours believing they are protected. Only the end-of-run one is best effort.
    @classmethod
    def from_checkpoint(cls, output_path: Union[str, Path], data: pd.DataFrame, *,
                        config: Union[TrainingConfig, dict[str, Any], None] = None, model: Any = None,
                        callbacks: Iterable[Observer] = (), **changes: Any) -> "Trainer":
        """A run continuing from the newest usable checkpoint in ``output_path`` (also reachable as
        ``Trainer.resume(output_path, df)``); start it with ``fit()`` or ``start()``.

        ``data`` must be the DataFrame the run trained on. ``config`` (optional) is checked against
        the checkpoint's; ``changes`` may set only fields that cannot change the results (``epochs``,
        ``name``, ``device``, ``data_path`` and the checkpoint settings; see
        ``trainer.resume.CHANGEABLE``). A custom model needs a fresh instance as ``model``. Raises
        ``CheckpointError`` when there is nothing usable to resume (a corrupt newest checkpoint is
        skipped with a RuntimeWarning) and ``ResumeMismatch`` listing what differs.
        """
        return resume_run(cls, output_path, data, config=config, model=model, callbacks=callbacks, **changes)

    @property
    def last_checkpoint(self) -> Optional[Path]:
        """The checkpoint file this run wrote last (None before the first)."""
        return self._checkpoints.last_path if self._checkpoints else None

    async def _checkpoint_mid_epoch(self) -> None:
        ckpt = self._checkpoints
        if ckpt is not None and ckpt.due_mid_epoch(self.batch, self.num_batches):
            await asyncio.to_thread(ckpt.write)

    async def _checkpoint_on_pause(self) -> None:
        # A paused notebook may well be closed or restarted next.
        if self._checkpoints is not None:
            await asyncio.to_thread(self._checkpoints.write)

    async def _checkpoint_epoch_end(self, improved: bool) -> None:
        ckpt = self._checkpoints
        if ckpt is None:
            return
        if improved:
            snapshot = self._best_snapshot if self.config.restore_best_weights else self.backend.snapshot()
            await asyncio.to_thread(ckpt.write_best, snapshot)
        if ckpt.due_epoch_end(self.current_epoch):
            await asyncio.to_thread(ckpt.write)

    async def _checkpoint_at_end(self, final: TrainingState, reason: str) -> None:
        if self._checkpoints is None:
            return
        try:
            await asyncio.to_thread(self._checkpoints.write, final.value, reason)
        except Exception:
            log.warning("could not write the final checkpoint to %s", self._checkpoints.writer.directory,
                        exc_info=True)


class _ClassOrInstance:
    """A method that is ``on_class`` when looked up on the class and ``on_instance`` on an instance:
    ``Trainer.resume(output_path, df)`` continues a checkpointed run, ``run.resume()`` a paused one."""

    def __init__(self, on_class: Any, on_instance: Any):
        self._on_class, self._on_instance = on_class, on_instance
        self.__doc__ = (f"On the class: {on_class.__doc__}\n\nOn a run: {on_instance.__doc__}")

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self._on_class.__get__(owner, owner)
        return self._on_instance.__get__(obj, owner)


Trainer.resume = _ClassOrInstance(Trainer.__dict__["from_checkpoint"].__func__, Trainer.__dict__["resume"])  # type: ignore[method-assign]


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
