"""The epoch loop of a run trained in this process: an asyncio coroutine that computes batches off
the event loop in time slices.

Control (pause, resume, stop) is a pair of request flags checked between batches, so a request
takes effect within one batch; any thread may make one. Compute hops to the run's own compute
thread once per slice of batches (about ``SLICE_SECONDS``), not per batch, so the hop costs nothing
measurable. It is one thread, not the loop's default pool: a notebook's pool holds several idle
threads (a panel's background work starts them), and slices that wander between them run measurably
slower, since each thread keeps its own intra-op setting and team and its own warm caches.

The loop owns the run's :class:`~trainer.state.RunState` and changes what followers see only by
emitting events (``_emit`` applies an event to the state, then hands it to the observers); early
stopping and the schedule are the loop's own state machines inside it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar, Union

import numpy as np
import pandas as pd

from .backends import create_backend
from .checkpointing import RunCheckpoints
from .checkpoints import CheckpointError
from .config import TrainingConfig
from .events import EventBus, Observer
from .handle import RunHandle
from .loggers import loggers_for
from .metrics import history_entry
from .memory_fit import check_fits
from .resume import ResumePlan
from .state import FINAL_STATES, RunState, StateError, TrainingFailure, TrainingState
from .steering import as_built
from .steering_loop import LoopSteering, ReplaySource, recorded_changes

log = logging.getLogger("trainer")

SLICE_SECONDS = 0.05
T = TypeVar("T")


def epoch_order(seed: int, epoch_index: int, n: int) -> np.ndarray:
    """The shuffled order of training samples for one epoch: a pure function of seed and epoch."""
    return np.random.default_rng([seed, epoch_index]).permutation(n)


class LocalRun(RunHandle):
    """A run whose batches are computed in this process (see the module docstring).

    Build it with ``trainer.Trainer(config, df)``; ``resume`` (a :class:`~trainer.resume.ResumePlan`)
    continues a checkpointed run instead of starting a fresh one. When ``output_path`` holds another
    run's checkpoints it raises ``OutputPathInUse`` (a ConfigError) unless ``overwrite=True``.
    ``replay`` (a run, its output_path or history.json) applies that run's ``config_changes`` at the
    same positions (see ``trainer.steering_loop``).
    """

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = (), resume: Optional[ResumePlan] = None,
                 overwrite: bool = False, replay: Optional[ReplaySource] = None):
        config = self._accept_config(config, resume, overwrite)
        self._prepare_data(data, resume)
        check_fits(config, self.data, model)     # before the model exists: refuse what cannot fit
        # A steered run's model is built as it started (a dropout rate of 0 builds no dropout layers).
        built = as_built(config, resume)
        self.backend = self._create_backend(model, built)
        if built.dropout_rate != config.dropout_rate:
            self.backend.set_dropout(config.dropout_rate)
        self._best_snapshot: Any = None
        if resume is not None:
            self._load_backend_state(resume)
            self.run_state = resume.run_state(self.data.task)
        else:
            self.run_state = RunState.fresh(config, self.data.task, self.seed)
        self._resume = resume
        self.events = EventBus(self)
        # config.loggers first: when the others hear the end, the tracking is written.
        for cb in [*loggers_for(self), *callbacks]:
            self.events.add(cb)
        self._pause_requested = False
        self._stop_requested = False
        self._claimed = False
        self._searching = False                 # an lr_find holds the run (trainer/lr_finder.py)
        self._claim_lock = threading.Lock()     # a start and a search never both go ahead
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._compute_thread: Optional[ThreadPoolExecutor] = None   # while _run() runs
        self._done = threading.Event()
        self._checkpoints: Optional[RunCheckpoints] = None   # while running with checkpoints
        self._epoch_started = 0.0
        self._paused_seconds = 0.0
        self._steering = LoopSteering(self, recorded_changes(replay) if replay is not None else ())

    def _create_backend(self, model: Any, config: TrainingConfig) -> Any:
        """The framework backend; with ``devices`` other than 1, trainer.distributed picks it."""
        if config.devices != 1:
            from .distributed import create_backend as create_distributed_backend
            return create_distributed_backend(config, self.data, self.seed, model)
        return create_backend(config.backend, config, self.data, self.seed, model)

    def _load_backend_state(self, plan: ResumePlan) -> None:
        try:
            if plan.best_weights is not None:
                self._best_snapshot = self.backend.decode_weights(plan.best_weights)
        except Exception as exc:     # unreadable or of another shape: either way the file is the problem
            raise CheckpointError(f"the best weights of epoch {plan.checkpoint.best_epoch} cannot be loaded into this "
                                  f"model: {exc}") from None
        try:
            self.backend.load_checkpoint_state(plan.backend_state)
        except Exception as exc:     # whatever the framework raises, the file is the problem
            raise CheckpointError(f"{plan.checkpoint.path.name}: {exc}") from None
        log.info("resuming %s from %s", self.config.output_path, plan.describe())

    # ------------------------------------------------------------------ control
    def _request(self, action: str) -> None:
        if action in ("pause", "stop"):
            self.backend.interrupt()
        if action in ("resume", "stop"):
            self._wake_up()

    def _wake_up(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def _interrupted(self) -> bool:
        return self._pause_requested or self._stop_requested or self._steering.pending

    def _update(self, changes: dict[str, Any]) -> dict[str, Any]:
        return self._steering.update(changes)

    # ------------------------------------------------------------------ running
    def _claim(self) -> None:
        with self._claim_lock:
            if self._searching:
                raise StateError("cannot start while lr_find() is searching on this run; wait for it or stop it")
            super()._claim()

    @contextlib.contextmanager
    def searching(self) -> Iterator[None]:
        """Hold the run for a search that trains and then restores it (``lr_find``): refused while
        the run trains, and ``start()``/``fit()`` are refused until it ends."""
        with self._claim_lock:
            if self._searching:
                raise StateError("another lr_find is already searching on this run; wait for it or stop it")
            if self._claimed and self.state not in FINAL_STATES:
                raise StateError(f"cannot run lr_find while the run is {self.state.value}: it would change the "
                                 f"weights under the training; call it before start()/fit() or after the end")
            self._searching = True
        try:
            yield
        finally:
            self._searching = False

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        """Apply ``event`` to the run's state, then tell the observers."""
        self.run_state.apply(event, data)
        self.events.emit(event, data)

    def _set_state(self, new: TrainingState, reason: Optional[str] = None, error: Optional[str] = None) -> None:
        old = self.state
        if old == new:
            return
        self._emit("state_change", {"old": old.value, "new": new.value, "reason": reason, "error": error,
                                    "elapsed": self.run_state.elapsed()})

    async def _compute(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the run's compute thread (see the module docstring), awaited."""
        assert self._compute_thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._compute_thread, fn, *args)

    async def _run(self) -> None:
        self._compute_thread = ThreadPoolExecutor(1, thread_name_prefix="trainer-compute")
        try:
            await super()._run()
        finally:
            # An ended run's thread is idle (a cancel waited for its slice), so joining it is
            # immediate, and fit() returns with no thread of the run left behind. Cancelled again
            # while ending, a slice may still be running: it ends on its own.
            self._compute_thread.shutdown(wait=self._done.is_set())

    async def _drive(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._set_state(TrainingState.RUNNING)
        self._checkpoints = await asyncio.to_thread(
            RunCheckpoints.open, self, self._resume.checkpoint if self._resume else None, self._overwrite)
        self._emit("train_begin", {"total_epochs": self.total_epochs, "start_epoch": self.current_epoch,
                                   "task": self.data.task, "device": self.device_name})
        if self._resume is not None and self._resume.finishes:
            # Trained to its end, killed while saving: only the artifacts are left to write.
            final, reason = self._resume.ending(self.run_state)
        else:
            outcome = await self._run_epochs()
            final, reason = outcome or (TrainingState.COMPLETED, f"finished all {self.total_epochs} epochs")
        self._steering.close("the run has trained its last epoch and is finishing")
        await self._checkpoint_at_end(final, reason)
        await self._finish(final, reason)

    async def _stop_far_end(self, wait: bool) -> None:
        # The slice in progress ends at its next batch; _finish then waits for it on the compute thread.
        if not self._done.is_set():
            self._stop_requested = True
            self.backend.interrupt()

    async def _end_here(self, final: TrainingState, reason: str, wait: bool) -> None:
        await self._finish(final, reason, reason if final == TrainingState.FAILED else None)

    def _failure_reason(self, exc: BaseException) -> str:
        text = super()._failure_reason(exc)
        if "out of memory" in str(exc).lower():
            batch = self.config.batch_size
            text += (f". The device ran out of memory at batch_size={batch}: try "
                     f"batch_size={max(1, batch // 2)} or device='cpu'")
        return text

    async def _run_epochs(self) -> Optional[tuple[TrainingState, str]]:
        """Train the epochs left; return (final state, reason) when the run ends before them."""
        ended_one = False
        while True:
            if ended_one:       # between two epochs: a change may add epochs or set the next one's batch size
                self._steering.apply_due(self.current_epoch, self.num_batches)
            if self.current_epoch >= self.total_epochs:
                return None
            outcome = await self._run_epoch()
            if outcome is not None:
                return outcome
            ended_one = True

    async def _run_epoch(self) -> Optional[tuple[TrainingState, str]]:
        """Train one epoch; return (final state, reason) when the run must end after it."""
        st = self.run_state
        assert st.schedule is not None and st.early_stopping is not None
        index = st.current_epoch
        epoch = index + 1
        # The epoch's time includes gathering its shuffled batches, not just the batches.
        started = time.perf_counter()
        self._paused_seconds = 0.0
        # A run resumed mid-epoch continues at the rate and batch size that epoch had.
        lr = st.schedule.lr(index) if st.epoch_learning_rate is None else st.epoch_learning_rate
        st.epoch_learning_rate, st.epoch_batch_size = None, st.epoch_batch_size or self.config.batch_size
        if st.epoch_batch_size != self.backend.batch_size:
            self.backend.set_batch_size(st.epoch_batch_size)
        self.backend.set_learning_rate(lr)
        order = epoch_order(self.seed, index, len(self.data.train_index))
        num_batches = await self._compute(self.backend.begin_epoch, order)
        batch, done_seconds = self._continue_partial_epoch(num_batches)
        self._epoch_started = started - done_seconds
        self._emit("epoch_begin", {"epoch": epoch, "learning_rate": lr, "batch": batch, "num_batches": num_batches})
        while st.batch < st.num_batches:
            self._steering.apply_due(epoch, st.batch)
            if self._stop_requested:
                return TrainingState.STOPPED, f"stopped by the user during epoch {epoch}"
            if self._pause_requested:
                await self._checkpoint_on_pause()
                await self._hold_paused(epoch)
                continue
            batch, loss = await self._compute(self._train_slice)
            if not math.isfinite(loss):
                raise TrainingFailure(
                    f"the training loss became {loss} in epoch {epoch} (batch {batch}); "
                    f"lower learning_rate (now {st.learning_rate:g}) or check the data for extreme values")
            self._emit("batch_end", {"epoch": epoch, "batch": batch, "num_batches": num_batches, "loss": loss})
            await self._checkpoint_mid_epoch()
        metrics = self.backend.end_epoch()
        metrics.update(await self._compute(self.backend.evaluate))
        if not math.isfinite(metrics["val_loss"]):
            raise TrainingFailure(f"the validation loss became {metrics['val_loss']} in epoch {epoch}; "
                                  f"lower learning_rate (now {st.learning_rate:g}) or check the data")
        st.epoch_batch_size = None
        entry = history_entry(epoch, metrics, st.learning_rate, time.perf_counter() - self._epoch_started - self._paused_seconds)
        improved, stop = st.early_stopping.update(epoch, metrics["val_loss"])
        if improved and self.config.restore_best_weights:
            self._best_snapshot = self.backend.snapshot()
        st.schedule.observe(metrics["val_loss"])
        data = {"metrics": entry, "improved": improved, "best_epoch": st.early_stopping.best_epoch}
        # Observers hear of an epoch once its checkpoint is on disk: a process killed on hearing it
        # loses nothing.
        st.apply("epoch_end", data)
        await self._checkpoint_epoch_end(improved)
        self.events.emit("epoch_end", data)
        if stop:
            return TrainingState.EARLY_STOPPED, "early stopping: " + st.early_stopping.reason()
        if self._stop_requested:
            return TrainingState.STOPPED, f"stopped by the user after epoch {epoch}"
        return None

    def _continue_partial_epoch(self, num_batches: int) -> tuple[int, float]:
        """At the first epoch of a run resumed mid-epoch: put back the partial sums (after
        ``begin_epoch``) and return (batches done, active seconds so far); else (0, 0)."""
        st = self.run_state
        if st.epoch_totals is None or st.batch == 0:
            return 0, 0.0
        if num_batches != st.num_batches:
            raise CheckpointError(f"the checkpoint stopped at batch {st.batch} of {st.num_batches}, but the "
                                  f"epoch now has {num_batches} batches")
        self.backend.restore_epoch_totals(st.epoch_totals)
        batch, seconds = st.batch, st.epoch_elapsed
        st.epoch_totals, st.epoch_elapsed = None, 0.0
        return batch, seconds

    def _train_slice(self) -> tuple[int, float]:
        st = self.run_state
        deadline = time.perf_counter() + SLICE_SECONDS
        end = self._checkpoints.slice_end(st.batch, st.num_batches) if self._checkpoints else st.num_batches
        end = self._steering.slice_end(st.current_epoch + 1, st.batch, end)
        batch = self.backend.train_batches(st.batch, end, deadline, self._interrupted)
        return batch, self.backend.running_loss()

    async def _hold_paused(self, epoch: int) -> None:
        assert self._wake is not None
        self._set_state(TrainingState.PAUSED, f"paused in epoch {epoch} after batch {self.batch}")
        since = time.perf_counter()
        while self._pause_requested and not self._stop_requested:
            self._wake.clear()
            self._steering.apply_due(epoch, self.batch)      # changes made while paused, at once
            self._steering.parked = True
            try:
                await self._wake.wait()
            finally:
                self._steering.parked = False
        self._paused_seconds += time.perf_counter() - since
        if not self._stop_requested:
            self._set_state(TrainingState.RUNNING, "resumed")

    async def _finish(self, final: TrainingState, reason: str, error: Optional[str] = None) -> None:
        artifacts = None
        try:
            if self.config.restore_best_weights and self._best_snapshot is not None:
                # On the compute thread: after a cancel, once the slice that was training has ended.
                await self._compute(self.backend.restore, self._best_snapshot)
            if self.config.output_path:
                from .artifacts import save_run
                artifacts = await self._compute(save_run, self, final, reason)
        except Exception as exc:
            log.error("could not write artifacts", exc_info=True)
            msg = f"could not write the artifacts to {self.config.output_path!r}: {type(exc).__name__}: {exc}"
            final, reason = TrainingState.FAILED, (f"{reason}; {msg}" if final == TrainingState.FAILED else msg)
            error = reason
        self._pause_requested = False
        self._steering.close(f"the run has ended ({final.value})")
        end = {"state": final.value, "reason": reason, "error": error, "best_metrics": self.best_metrics,
               "artifacts_path": str(artifacts) if artifacts else None,
               "last_checkpoint": str(self._checkpoints.last_path) if self._checkpoints and self._checkpoints.last_path
               else None}
        await asyncio.to_thread(self.events.finish, end)
        self._set_state(final, reason, error)
        self._emit("train_end", end)
        self._done.set()

    # ------------------------------------------------------------------ checkpoints
    # When and what to write is RunCheckpoints' business; these are the loop's hooks. A checkpoint
    # that cannot be written fails the run (it says where and why): nobody should train for hours
    # believing they are protected. Only the end-of-run one is best effort.
    def _write_checkpoint(self, final_state: Optional[str] = None, reason: Optional[str] = None) -> None:
        assert self._checkpoints is not None
        st = self.run_state
        totals, elapsed = None, 0.0
        if st.mid_epoch:
            totals = self.backend.epoch_totals()
            elapsed = time.perf_counter() - self._epoch_started - self._paused_seconds
        path = self._checkpoints.write(final_state, reason, totals, elapsed)
        # Followers learn the newest checkpoint from train_end; the run knows it at once.
        st.last_checkpoint = str(path)

    async def _checkpoint_mid_epoch(self) -> None:
        ckpt = self._checkpoints
        if ckpt is not None and ckpt.due_mid_epoch(self.batch, self.num_batches):
            await self._compute(self._write_checkpoint)

    async def _checkpoint_on_pause(self) -> None:
        # A paused notebook may well be closed or restarted next.
        if self._checkpoints is not None:
            await self._compute(self._write_checkpoint)

    async def _checkpoint_epoch_end(self, improved: bool) -> None:
        ckpt = self._checkpoints
        if ckpt is None:
            return
        if improved:
            snapshot = self._best_snapshot if self.config.restore_best_weights else self.backend.snapshot()
            await self._compute(ckpt.write_best, snapshot)
        if ckpt.due_epoch_end(self.current_epoch):
            await self._compute(self._write_checkpoint)

    async def _checkpoint_at_end(self, final: TrainingState, reason: str) -> None:
        if self._checkpoints is None:
            return
        try:
            await self._compute(self._write_checkpoint, final.value, reason)
        except Exception:
            log.warning("could not write the final checkpoint to %s", self._checkpoints.writer.directory,
                        exc_info=True)
