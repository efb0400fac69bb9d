"""``Trainer(config, df)`` with several torch devices: the ranks run in fresh worker processes and
this class presents the ordinary Trainer interface in the kernel (or the API's worker).

The processes start with the ``spawn`` method: each is a fresh interpreter, so a CUDA context the
kernel already holds cannot break them (the fork-based ``ddp_notebook`` trap), and nothing here
ever initialises CUDA in the kernel. What spawn cannot carry (a model class defined in the
notebook) is refused up front with the fix (``plan.check_spawnable``).

Rank 0 forwards every event with its loop position; this process replays them to its own
observers on its event loop's thread, keeps ``history``, ``state``, ``best_metrics`` and
``progress()`` in step, and receives the final weights, so predictions work here afterwards.
``pause``/``resume``/``stop`` write one shared integer that every rank reads; the ranks agree on
the batch where it takes effect (``control.py``). A rank that fails or dies ends the run as failed
with its message, and the others are terminated, since they would wait in a collective forever.
"""
from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import queue as queue_module
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import pandas as pd
import torch

from ..backends.torch_backend import TorchBackend
from ..config import TrainingConfig
from ..events import Observer
from ..run import FINAL_STATES, Trainer, TrainingState
from .control import PAUSE, RUN, STOP
from .plan import DevicePlan, check_spawnable, plan_devices
from .rank import SpawnJob, spawn_main

log = logging.getLogger("trainer")

_END_GRACE_SECONDS = 30.0     # ranks that finished need a moment to leave the process group
_FAIL_GRACE_SECONDS = 1.0


class MirrorBackend(TorchBackend):
    """The kernel's CPU copy of the model: it checks the model against the data before any process
    starts and receives the trained weights at the end. It never trains."""

    def __init__(self, config: TrainingConfig, data: Any, seed: int, model: Any, plan: DevicePlan,
                 on_interrupt: Callable[[], None]):
        super().__init__(config, data, seed, model)
        self.plan = plan
        self._on_interrupt = on_interrupt

    @property
    def device_name(self) -> str:
        return self.plan.describe()

    def interrupt(self) -> None:
        self._on_interrupt()


def oom_advice(config: TrainingConfig, world_size: int) -> str:
    per = config.batch_size // world_size
    smaller = max(world_size, (config.batch_size // 2) // world_size * world_size)
    return (f" With {world_size} devices each trains on batch_size / {world_size} = {per} samples per step; "
            f"try batch_size={smaller} (a multiple of {world_size}), fewer hidden_units, or mixed_precision=True")


class LaunchedTrainer(Trainer):
    """A Trainer whose ranks run in spawned processes (see the module docstring)."""

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = ()):
        self._frame = data
        self._model_bytes: Optional[bytes] = None
        self._mp = multiprocessing.get_context("spawn")
        self._request = self._mp.RawValue("i", RUN)
        self._procs: list[Any] = []
        self._store: Any = None
        self._summary: dict[str, Any] = {}
        self._reader_done = threading.Event()
        super().__init__(config, data, model=model, callbacks=callbacks)

    def _create_backend(self, model: Any) -> MirrorBackend:
        self.plan = plan_devices(self.config)
        check_spawnable(model, self.plan.world_size)
        if model is not None:
            buf = io.BytesIO()
            torch.save(model, buf)
            self._model_bytes = buf.getvalue()
        config = self.config.replace(device="cpu", devices=1)
        return MirrorBackend(config, self.data, self.seed, model, self.plan, self._sync_request)

    # ------------------------------------------------------------------ control
    def _sync_request(self) -> None:
        self._request.value = STOP if self._stop_requested else PAUSE if self._pause_requested else RUN

    def _wake_up(self) -> None:
        self._sync_request()
        super()._wake_up()

    # ------------------------------------------------------------------ running
    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        inbox: asyncio.Queue = asyncio.Queue()
        try:
            self._set_state(TrainingState.RUNNING, f"starting {self.plan.describe()}")
            await asyncio.to_thread(self._launch, inbox)
            while not await self._handle(await inbox.get()):
                pass
        except asyncio.CancelledError:
            self._stop_requested = True
            self._sync_request()
            await self._end(TrainingState.STOPPED, "cancelled", wait=False)
            raise
        except Exception as exc:
            log.error("could not run the worker processes", exc_info=True)
            await self._end(TrainingState.FAILED, f"could not start the {self.plan.world_size} worker processes: "
                                                  f"{type(exc).__name__}: {exc}")
        finally:
            self._reader_done.set()
            self._store = None

    def _launch(self, inbox: asyncio.Queue) -> None:
        import torch.distributed as dist

        # The kernel hosts the rendezvous store on a free port: no port to choose, none to clash.
        self._store = dist.TCPStore("127.0.0.1", 0, None, True, wait_for_workers=False)
        messages = self._mp.Queue()
        job = SpawnJob(config=self.config.replace(seed=self.seed).to_dict(), data=self._frame,
                       model=self._model_bytes, plan=self.plan, store_port=self._store.port,
                       resume_from=self.config.output_path if self._resume_from is not None else None)
        for rank in range(self.plan.world_size):
            proc = self._mp.Process(target=spawn_main, args=(rank, job, self._request, messages),
                                    name=f"epoch-widgets-rank-{rank}", daemon=True)
            proc.start()
            self._procs.append(proc)
        threading.Thread(target=self._read, args=(messages, inbox, self._loop),
                         name="epoch-widgets-ranks", daemon=True).start()

    def _read(self, messages: Any, inbox: asyncio.Queue, loop: asyncio.AbstractEventLoop) -> None:
        """Relay the ranks' messages to the event loop; report ranks that die without a word."""
        reported: set[int] = set()

        def post(msg: Any) -> bool:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, msg)
                return True
            except RuntimeError:    # the loop is gone
                return False

        def drain() -> bool:
            # A message sent just before an exit may still be in the pipe: deliver it first.
            while True:
                try:
                    if not post(messages.get_nowait()):
                        return False
                except queue_module.Empty:
                    return True

        while not self._reader_done.is_set():
            try:
                msg = messages.get(timeout=0.1)
            except queue_module.Empty:
                dead = [(r, p.exitcode) for r, p in enumerate(self._procs)
                        if p.exitcode not in (None, 0) and r not in reported]
                all_exited = all(p.exitcode is not None for p in self._procs)
                if (dead or all_exited) and not drain():
                    return
                for rank, code in dead:
                    reported.add(rank)
                    post(("exited", rank, code))
                if all_exited:
                    post(("exited", None, 0))
                    return
                continue
            if not post(msg):
                return

    async def _handle(self, msg: tuple) -> bool:
        """Apply one message from the ranks; True once the run has ended."""
        kind = msg[0]
        if kind == "event":
            return await self._replay(*msg[1:])
        if kind == "summary":
            self._summary = msg[1]
        elif kind == "weights":
            self.backend.model.load_state_dict(torch.load(io.BytesIO(msg[1]), weights_only=True))
        elif kind == "exited" and msg[1] is None and self._state in FINAL_STATES:
            # Rank 0 reported its end but exited before its train_end event got through.
            return await self._replay("train_end", {"state": self._state.value, "best_metrics": self.best_metrics,
                                                    "reason": self.reason}, self._position())
        elif kind in ("failed", "exited") and self._state not in FINAL_STATES:
            rank, detail = msg[1], msg[2]
            if kind == "failed":
                reason = f"rank {rank} of {self.plan.world_size} failed: {detail}"
                if "out of memory" in str(detail).lower():
                    reason += "." + oom_advice(self.config, self.plan.world_size)
            elif rank is None:
                reason = "the worker processes ended without reporting the end of training"
            else:
                reason = f"rank {rank} of {self.plan.world_size} exited unexpectedly ({_exit_text(detail)})"
            await self._end(TrainingState.FAILED, reason)
            return True
        return False

    async def _replay(self, event: str, data: dict[str, Any], position: dict[str, Any]) -> bool:
        self.batch, self.num_batches = position["batch"], position["num_batches"]
        if event == "state_change":
            new = TrainingState(data["new"])
            if new in FINAL_STATES:
                self._take_summary(new)
            self._set_state(new, data["reason"])
            return False
        if event == "epoch_end":
            entry = dict(data["metrics"])
            self.history.append(entry)
            self.early_stopping.update(entry["epoch"], entry["val_loss"])
        self.current_epoch = position["current_epoch"]
        if event == "train_end":
            await asyncio.to_thread(self._reap, _END_GRACE_SECONDS)
            self._pause_requested = False
            self.events.emit("train_end", dict(data))
            self._done.set()
            return True
        self.events.emit(event, data)
        return False

    def _position(self) -> dict[str, Any]:
        return {"batch": self.batch, "num_batches": self.num_batches, "current_epoch": self.current_epoch}

    def _take_summary(self, final: TrainingState) -> None:
        s = self._summary
        self.reason = s.get("reason")
        self.error = s.get("error")
        if final == TrainingState.FAILED and self.error and "out of memory" in self.error.lower():
            self.error = self.reason = self.error + oom_advice(self.config, self.plan.world_size)
        self.artifacts_path = Path(s["artifacts_path"]) if s.get("artifacts_path") else None
        self._last_checkpoint = Path(s["last_checkpoint"]) if s.get("last_checkpoint") else None
        self.finished_at = s.get("finished_at") or time.time()
        self._pause_requested = False

    @property
    def last_checkpoint(self) -> Optional[Path]:
        """The checkpoint file rank 0 wrote last, known once the run has ended."""
        return getattr(self, "_last_checkpoint", None)

    async def _end(self, final: TrainingState, reason: str, wait: bool = True) -> None:
        """End the run from this side (a rank failed, the start failed, or the task was cancelled)."""
        self.reason = reason
        if final == TrainingState.FAILED:
            self.error = reason
            log.error("training failed: %s", reason)
        self.finished_at = time.time()
        self._pause_requested = False
        if wait:
            await asyncio.to_thread(self._reap, _FAIL_GRACE_SECONDS)
        else:
            self._reap(_FAIL_GRACE_SECONDS)
        self._set_state(final, reason)
        self.events.emit("train_end", {"state": final.value, "best_metrics": self.best_metrics, "reason": reason})
        self._done.set()

    def _reap(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the ranks to exit, then terminate the rest."""
        deadline = time.monotonic() + grace
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._reader_done.set()


def _exit_text(code: int) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", e.g. by the system's out-of-memory killer" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"
