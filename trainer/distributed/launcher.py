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
import multiprocessing.connection
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
_CAUSE_GRACE_SECONDS = 10.0   # how long to wait for the rank that broke a collective to report


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
    """What a GPU out-of-memory error means with several devices, and a batch size that keeps working."""
    per = config.batch_size // world_size
    smaller = max(world_size, (config.batch_size // 2) // world_size * world_size)
    return (f" With {world_size} devices each trains on batch_size / {world_size} = {per} samples per step; "
            f"a smaller batch_size must stay a multiple of {world_size} (e.g. batch_size={smaller}).")


class LaunchedTrainer(Trainer):
    """A Trainer whose ranks run in spawned processes (see the module docstring)."""

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = (), overwrite: bool = False):
        self._frame = data
        self._model_bytes: Optional[bytes] = None
        self._mp = multiprocessing.get_context("spawn")
        self._request = self._mp.RawValue("i", RUN)
        self._procs: list[Any] = []
        self._store: Any = None
        self._summary: dict[str, Any] = {}
        self._reader_done = threading.Event()
        self._deferred: list[tuple] = []     # messages set aside while collecting a failure's cause
        super().__init__(config, data, model=model, callbacks=callbacks, overwrite=overwrite)

    def _create_backend(self, model: Any) -> MirrorBackend:
        self.plan = plan_devices(self.config)
        self._model_bytes = check_spawnable(model, self.plan.world_size)
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
        self._inbox = inbox
        try:
            self._set_state(TrainingState.RUNNING, f"starting {self.plan.describe()}")
            await asyncio.to_thread(self._launch, inbox)
            while not await self._handle(self._deferred.pop(0) if self._deferred else await inbox.get()):
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
        job = SpawnJob(config=self.config.replace(seed=self.seed).to_dict(), data=self._frame,
                       model=self._model_bytes, plan=self.plan, store_port=self._store.port,
                       resume_from=self.config.output_path if self._resume_from is not None else None)
        pipes = []
        for rank in range(self.plan.world_size):
            receive, send = self._mp.Pipe(duplex=False)
            proc = self._mp.Process(target=spawn_main, args=(rank, job, self._request, send),
                                    name=f"epoch-widgets-rank-{rank}", daemon=True)
            proc.start()
            send.close()        # the rank holds the only writing end: its exit reads as end-of-file
            self._procs.append(proc)
            pipes.append(receive)
        threading.Thread(target=self._read, args=(pipes, inbox, self._loop),
                         name="epoch-widgets-ranks", daemon=True).start()

    def _read(self, pipes: list[Any], inbox: asyncio.Queue, loop: asyncio.AbstractEventLoop) -> None:
        """Relay the ranks' messages to the event loop, and report ranks that exit with an error
        (after their last message: a dead rank's pipe is read to its end first)."""
        open_pipes = dict(zip(pipes, range(len(pipes))))
        sentinels = {proc.sentinel: rank for rank, proc in enumerate(self._procs)}

        def post(msg: Any) -> bool:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, msg)
                return True
            except RuntimeError:    # the loop is gone
                return False

        def read(pipe: Any, until_end: bool) -> bool:
            while pipe in open_pipes and (until_end or pipe.poll()):
                try:
                    msg = pipe.recv()
                except (EOFError, OSError):
                    del open_pipes[pipe]
                    pipe.close()
                    break
                if not post(msg):
                    return False
            return True

        while sentinels and not self._reader_done.is_set():
            for ready in multiprocessing.connection.wait([*open_pipes, *sentinels], timeout=0.5):
                if ready in open_pipes:
                    if not read(ready, until_end=False):
                        return
                elif ready in sentinels:
                    rank = sentinels.pop(ready)
                    if not read(pipes[rank], until_end=True):
                        return
                    proc = self._procs[rank]
                    proc.join(5)      # the sentinel can turn ready a moment before the exit status exists
                    code = proc.exitcode
                    if code:
                        post(("exited", rank, code))
        if not self._reader_done.is_set():
            post(("exited", None, 0))

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
            reason = await self._root_cause(self._describe_rank_failure(msg))
            await self._end(TrainingState.FAILED, self._with_advice(reason))
            return True
        return False

    def _describe_rank_failure(self, msg: tuple) -> str:
        kind, rank, detail = msg
        if kind == "failed":
            return f"rank {rank} of {self.plan.world_size} failed: {detail}"
        if rank is None:
            return "the worker processes ended without reporting the end of training"
        return f"rank {rank} of {self.plan.world_size} exited unexpectedly ({_exit_text(detail)})"

    async def _root_cause(self, first: str) -> str:
        """``first``, or when it reads like a collective broken by a rank that went away, the
        failure of the rank that did: a rank that dies breaks its peers' next all-reduce, and
        their reports may arrive first. Waits briefly for the ranks to end while looking."""
        if not _broken_group(first):
            return first
        deadline = time.monotonic() + _CAUSE_GRACE_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(self._inbox.get(), left)
            except asyncio.TimeoutError:
                break
            if msg == ("exited", None, 0):
                break
            if msg[0] in ("failed", "exited"):
                text = self._describe_rank_failure(msg) if msg[1] is not None else None
            else:
                self._deferred.append(msg)
                text = msg[1].get("error") if msg[0] == "summary" else None
            if text and not _broken_group(text):
                return text
        return first

    def _with_advice(self, text: str) -> str:
        if "out of memory" in text.lower() and "per step" not in text:
            text = text.rstrip(".") + "." + oom_advice(self.config, self.plan.world_size)
        return text

    async def _replay(self, event: str, data: dict[str, Any], position: dict[str, Any]) -> bool:
        self.batch, self.num_batches = position["batch"], position["num_batches"]
        if event == "state_change":
            new = TrainingState(data["new"])
            if new in FINAL_STATES:
                self._take_summary(new)
                if new == TrainingState.FAILED:
                    own = f"rank 0 of {self.plan.world_size} failed: {self.reason}"
                    self.reason = self.error = self._with_advice(await self._root_cause(own))
            self._set_state(new, self.reason if new in FINAL_STATES else data["reason"])
            return False
        if event == "epoch_end":
            entry = dict(data["metrics"])
            self.history.append(entry)
            self.early_stopping.update(entry["epoch"], entry["val_loss"])
        self.current_epoch = position["current_epoch"]
        if event == "train_end":
            await asyncio.to_thread(self._reap, _END_GRACE_SECONDS)
            self._pause_requested = False
            self.events.emit("train_end", {**data, "state": self._state.value, "reason": self.reason})
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


_BROKEN_GROUP = ("connection closed by peer", "connection reset by peer", "remote worker", "broken pipe",
                 "nccl communicator was aborted", "socket timeout")


def _broken_group(text: str) -> bool:
    """Whether a failure reads like a collective that broke because another rank went away."""
    return any(words in text.lower() for words in _BROKEN_GROUP)


def _exit_text(code: int) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", e.g. by the system's out-of-memory killer" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"
