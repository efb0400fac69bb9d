"""A run trained in a worker process of its own, seen from the sweep's process: one more
implementation of the run-handle interface (:class:`~trainer.handle.RunHandle`), for trials that
train side by side on several cores.

``ProcessRun(config, df)`` checks the config against the data here (the same errors as
``Trainer(config, df)``), then starts ``python -m trainer.sweep.worker`` (a fresh interpreter, so
nothing of this process, a notebook's ``__main__`` included, is re-imported) and waits for it to
build the run. ``fit()`` tells it to train and follows its events with a
:class:`~trainer.follower.RunFollower`; ``pause``/``resume``/``stop`` are ``command`` messages.
The trained weights come back into a CPU copy of the model, so predictions and evaluation work
here afterwards. ``resume=True`` continues the run checkpointed in ``config.output_path``.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Optional, Union

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
from .worker import TRAIN

log = logging.getLogger("trainer")

READY_TIMEOUT = 300.0      # building the run in the worker: imports, data preparation, the model
_EXITED = "worker_exited"


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
                 callbacks: Iterable[Observer] = (), resume: bool = False):
        config = as_config(config)
        plan = plan_resume(config.output_path, data, config=config) if resume else None
        config = self._accept_config(plan.config if plan else config, plan, True)
        self._prepare_data(data, plan)
        self.backend = create_backend(config.backend, config.replace(device="cpu", devices=1, cuda_graphs=False),
                                      self.data, self.seed, None)
        spec = protocol.start(config.name, {**config.to_dict(), "seed": self.seed}, resume=resume, overwrite=True)
        self._proc = self._spawn(spec, data)
        ready = self._receive_ready()
        if ready.get("kind") != protocol.READY:
            self._kill()
            raise _refusal_error(ready)
        self.run_state = RunState.from_snapshot(ready["snapshot"])
        self.events = EventBus(self)
        for cb in callbacks:        # config.loggers log in the worker
            self.events.add(cb)
        self._follower = RunFollower(self.run_state)
        self._follower.listen(self.events.emit)
        self._pause_requested = self._stop_requested = self._claimed = False
        self._seq, self._send_lock = 0, threading.Lock()
        self._task: Optional[asyncio.Task] = None
        self._done = threading.Event()

    # ------------------------------------------------------------------ the worker process
    @staticmethod
    def _spawn(spec: protocol.Message, data: pd.DataFrame) -> subprocess.Popen:
        # The job goes through a private file, not the pipe: a large DataFrame would fill the pipe
        # before the worker reads it.
        fd, job_file = tempfile.mkstemp(prefix="epoch-widgets-trial-", suffix=".pkl")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((spec, data), fh, protocol=pickle.HIGHEST_PROTOCOL)
        # The worker imports the trainer package this process runs (an editable or source checkout too).
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [root, os.environ.get("PYTHONPATH")] if p)}
        proc = subprocess.Popen([sys.executable, "-m", "trainer.sweep.worker", job_file], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env)
        proc.job_file = job_file  # type: ignore[attr-defined]
        return proc

    def _receive_ready(self) -> protocol.Message:
        found: list[protocol.Message] = []

        def read() -> None:
            for line in self._proc.stdout:  # type: ignore[union-attr]
                try:
                    message = protocol.decode(line)
                except ValueError:
                    continue
                if message["kind"] == protocol.READY or message["kind"] in protocol.REFUSALS:
                    found.append(message)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(READY_TIMEOUT)
        try:
            os.unlink(self._proc.job_file)  # type: ignore[attr-defined]
        except OSError:
            pass
        if found:
            return found[0]
        code = self._proc.poll()
        why = protocol.describe_exit(code) if code is not None else f"no answer within {READY_TIMEOUT:.0f} s"
        return protocol.refusal(protocol.START_ERROR, f"the worker process ended before the run was built ({why}); "
                                                      f"its log is on this process's stderr")

    def _send(self, message: protocol.Message) -> None:
        with self._send_lock:
            try:
                self._proc.stdin.write(protocol.encode(message))  # type: ignore[union-attr]
                self._proc.stdin.flush()  # type: ignore[union-attr]
            except (BrokenPipeError, OSError, ValueError):
                pass        # the worker has gone; its exit ends the run

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    @property
    def pid(self) -> int:
        """The worker process's id."""
        return self._proc.pid

    @property
    def device_name(self) -> str:
        return f"a worker process (pid {self._proc.pid})"

    # ------------------------------------------------------------------ control
    def _request(self, action: str) -> None:
        with self._send_lock:
            self._seq += 1
            seq = self._seq
        self._send(protocol.command(action, seq))

    # ------------------------------------------------------------------ running
    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()

        def post(message: protocol.Message) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, message)
            except RuntimeError:     # the loop is gone
                pass

        def follow() -> None:
            for line in self._proc.stdout:  # type: ignore[union-attr]
                try:
                    post(protocol.decode(line))
                except ValueError:
                    continue
            post({"kind": _EXITED, "code": self._proc.wait()})

        threading.Thread(target=follow, name="sweep-trial-follow", daemon=True).start()
        self._send({"kind": TRAIN})
        while not await self._handle(await inbox.get()):
            pass
        await asyncio.to_thread(self._reap)

    def _reap(self) -> None:
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._kill()

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
        elif kind == _EXITED and self.state not in FINAL_STATES:
            reason = f"the trial's worker process ended before the run did ({protocol.describe_exit(msg['code'])})"
            await self._end_run(TrainingState.FAILED, reason)
            return True
        return False

    async def _end_here(self, final: TrainingState, reason: str, wait: bool) -> None:
        await self._end_followed(self._follower, final, reason, wait)
