"""A run trained in a sweep's worker process, seen from the sweep's process: one more
implementation of the run-handle interface (:class:`~trainer.handle.RunHandle`), for trials that
train side by side on several cores.

``ProcessRun(config, df, worker=...)`` checks the config against the data here (the same errors as
``Trainer(config, df)``), then gives the worker (:class:`~trainer.sweep.worker_pool.WorkerProcess`,
from the sweep's pool; a worker of its own when none is given) the job and waits for it to build
the run. ``fit()`` tells it to train and follows its events with a
:class:`~trainer.follower.RunFollower`; ``pause``/``resume``/``stop`` are ``command`` messages.
The trained weights come back into a CPU copy of the model, so predictions and evaluation work
here afterwards. Once the worker says it is done with the job (``idle``), ``release`` gets it
back. ``resume=True`` continues the run checkpointed in ``config.output_path``.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import queue
import threading
from typing import Any, Callable, Iterable, Optional, Union

import pandas as pd

from .. import protocol
from ..backends import create_backend
from ..checkpoints import CheckpointError
from ..config import ConfigError, TrainingConfig, as_config
from ..events import EventBus, Observer
from ..follower import RunFollower
from ..handle import RunHandle
from ..resume import plan_resume
from ..state import FINAL_STATES, RunState, TrainingState
from .worker import DROP, IDLE, TRAIN
from .worker_pool import EXITED, WorkerProcess

log = logging.getLogger("trainer")

READY_TIMEOUT = 300.0      # building the run in the worker: imports, data preparation, the model
IDLE_TIMEOUT = 60.0        # from the run's train_end (or refusal) to the worker's idle


def _refusal_error(message: protocol.Message) -> Exception:
    kind, text = message.get("kind"), message.get("message", "")
    if kind in (protocol.CONFIG_ERROR, protocol.OUTPUT_IN_USE) and message.get("errors"):
        return ConfigError(message["errors"])
    if kind == protocol.RESUME_ERROR:
        return CheckpointError(text)
    return RuntimeError(f"the trial's worker process could not start the run: {text}")


class ProcessRun(RunHandle):
    """A run whose batches a worker process computes (see the module docstring)."""

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 callbacks: Iterable[Observer] = (), resume: bool = False, worker: Optional[WorkerProcess] = None,
                 release: Optional[Callable[[WorkerProcess], None]] = None):
        self._worker = worker if worker is not None else WorkerProcess()
        self._release = release if release is not None else (lambda w: w.close())
        self._released = False
        try:
            config = as_config(config)
            plan = plan_resume(config.output_path, data, config=config) if resume else None
            config = self._accept_config(plan.config if plan else config, plan, True)
            self._prepare_data(data, plan)
            self.backend = create_backend(config.backend, config.replace(device="cpu", devices=1, cuda_graphs=False),
                                          self.data, self.seed, None)
        except BaseException:
            self._give_back()
            raise
        spec = protocol.start(config.name, {**config.to_dict(), "seed": self.seed}, resume=resume, overwrite=True)
        self._job = self._worker.submit(spec, data)
        ready = self._receive_ready()
        if ready.get("kind") != protocol.READY:
            if ready.get("kind") in protocol.REFUSALS and self._wait_idle():
                self._give_back()
            else:
                self._kill()
            raise _refusal_error(ready)
        self.run_state = RunState.from_snapshot(ready["snapshot"])
        self.events = EventBus(self)
        for cb in callbacks:        # config.loggers log in the worker
            self.events.add(cb)
        self._follower = RunFollower(self.run_state)
        self._follower.listen(self.events.emit)
        self._pause_requested = self._stop_requested = self._claimed = False
        self._seq, self._seq_lock = 0, threading.Lock()
        self._task: Optional[asyncio.Task] = None
        self._done = threading.Event()

    # ------------------------------------------------------------------ the worker process
    def _receive_ready(self) -> protocol.Message:
        try:
            while True:
                message = self._worker.messages.get(timeout=READY_TIMEOUT)
                if message["kind"] == protocol.READY or message["kind"] in protocol.REFUSALS:
                    return message
                if message["kind"] == EXITED:
                    why = protocol.describe_exit(message["code"])
                    break
        except queue.Empty:
            why = f"no answer within {READY_TIMEOUT:.0f} s"
        return protocol.refusal(protocol.START_ERROR, f"the worker process ended before the run was built ({why}); "
                                                      f"its log is on this process's stderr")

    def _wait_idle(self, timeout: float = IDLE_TIMEOUT) -> bool:
        """Read the worker's messages up to its ``idle`` (True) or its end (False)."""
        try:
            while True:
                kind = self._worker.messages.get(timeout=timeout)["kind"]
                if kind == IDLE:
                    return True
                if kind == EXITED:
                    return False
        except queue.Empty:
            return False

    def _give_back(self) -> None:
        """The job is over: the worker goes back to whoever lent it (once)."""
        if not self._released:
            self._released = True
            self._release(self._worker)

    def _kill(self) -> None:
        self._worker.kill()
        self._give_back()

    def release(self) -> None:
        """Give the worker back if the run was never trained (a built run is dropped); a run that
        trained gives it back at its end by itself."""
        if not self._released and not self._claimed:
            self._worker.send({"kind": DROP})
            if self._wait_idle():
                self._give_back()
            else:
                self._kill()

    @property
    def pid(self) -> int:
        """The worker process's id."""
        return self._worker.pid

    @property
    def device_name(self) -> str:
        return f"a worker process (pid {self._worker.pid})"

    # ------------------------------------------------------------------ control
    def _request(self, action: str) -> None:
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        # The job's number keeps a command that reaches the worker late from steering its next job.
        self._worker.send({**protocol.command(action, seq), "job": self._job})

    # ------------------------------------------------------------------ running
    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()

        def post(message: protocol.Message) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, message)
            except RuntimeError:     # the loop is gone
                pass

        def relay() -> None:
            # This job's messages end with the worker's idle (or its exit); the next job's are not ours.
            while True:
                message = self._worker.messages.get()
                post(message)
                if message["kind"] in (IDLE, EXITED):
                    return

        threading.Thread(target=relay, name="sweep-trial-follow", daemon=True).start()
        self._worker.send({"kind": TRAIN})
        while not await self._handle(await inbox.get()):
            pass
        # The run has ended; the worker is done with the job once it says idle.
        while not self._released:
            try:
                kind = (await asyncio.wait_for(inbox.get(), IDLE_TIMEOUT)).get("kind")
            except asyncio.TimeoutError:
                log.warning("the trial's worker (pid %s) did not finish its job; it is ended", self._worker.pid)
                self._kill()
                return
            if kind in (IDLE, EXITED):
                self._give_back()

    async def _stop_far_end(self, wait: bool) -> None:
        self._kill()

    async def _handle(self, msg: protocol.Message) -> bool:
        """Apply one message from the worker; True once the run has ended."""
        kind = msg.get("kind")
        if kind == protocol.EVENT:
            return await self._apply_followed(self._follower, msg["event"], msg.get("data") or {})
        if kind == protocol.WEIGHTS and msg.get("data"):
            raw = base64.b64decode(msg["data"])
            await asyncio.to_thread(lambda: self.backend.restore(self.backend.decode_weights(raw)))
        elif kind == protocol.REPLY and not msg.get("ok"):
            log.info("the trial's worker did not apply a command: %s", msg.get("message"))
        elif kind == EXITED and self.state not in FINAL_STATES:
            reason = f"the trial's worker process ended before the run did ({protocol.describe_exit(msg['code'])})"
            await self._end_run(TrainingState.FAILED, reason)
            return True
        return False

    async def _end_here(self, final: TrainingState, reason: str, wait: bool) -> None:
        await self._end_followed(self._follower, final, reason, wait)
