"""One worker generation of a task: its process, its ready and exit futures, its command replies
and its stop timeout.

A task gets a new generation each time it launches a worker (start, resume from checkpoint). A
timer or a late message of an old generation acts on that generation only, never on the next one:
the stop timeout is cancelled when its worker exits, and the task ignores what a generation that is
no longer its current one reports.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

from trainer import protocol

from .errors import BadRequest, Conflict, WorkerProblem
from .process import WorkerProcess

# The worker's answers to its start message that end the wait for ``ready``.
START_ANSWERS = frozenset({protocol.READY}) | protocol.REFUSALS


class WorkerGone(Exception):
    """The worker exited (or could not be written to) before answering."""


class WorkerGeneration:
    """A worker process and everything tied to its lifetime. Lives on the event loop's thread."""

    def __init__(self, number: int, task_id: str, on_ready: Callable[["WorkerGeneration", dict[str, Any]], None],
                 on_message: Callable[["WorkerGeneration", dict[str, Any]], None],
                 on_exit: Callable[["WorkerGeneration", int], None], python: str,
                 spawn: Optional[Callable[..., Any]] = None):
        loop = asyncio.get_running_loop()
        self.number = number
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.kill_reason: Optional[str] = None
        self._on_ready, self._on_message, self._on_exit = on_ready, on_message, on_exit
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._seq = 0
        self._kill_timer: Optional[asyncio.TimerHandle] = None
        # The worker: a local process, or anything with its interface (``ray_worker.RayWorker``).
        self.process = (spawn or WorkerProcess)(task_id, self._message, self._exit, python=python)

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.alive

    @property
    def is_ready(self) -> bool:
        """Whether its ``ready`` was accepted: only then do its events concern the task."""
        return self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None

    def start(self, message: dict[str, Any]) -> None:
        self.process.start(message)

    # ------------------------------------------------------------------ waiting
    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        """The worker's ``ready`` message; its refusal as an ApiProblem; 504 after ``timeout``."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except asyncio.TimeoutError:
            if self.ready.done():        # answered as the time ran out
                return self.ready.result()
            self.ready.cancel()          # a late answer is no longer anyone's business
            raise WorkerProblem(f"the worker process did not load the data and build the model within "
                                f"{timeout:g} s; try a smaller data file or model", status=504) from None

    async def wait_exit(self, timeout: float) -> bool:
        """Wait until the worker has exited and its exit was handled; False on timeout."""
        if self.exited.done() or self.pid is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    # ------------------------------------------------------------------ commands
    def request(self, action: str, **fields: Any) -> "asyncio.Future[dict[str, Any]]":
        """Send pause/resume/stop/update (``fields``: the command's own, e.g. update's ``changes``)
        now (without awaiting: the caller may hold the task's lock) and return the future of the
        worker's reply, which fails with WorkerGone when the worker ends first. Raises WorkerGone
        when the worker can no longer be written to."""
        self._seq += 1
        seq = self._seq
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[seq] = reply
        reply.add_done_callback(lambda _: self._replies.pop(seq, None))
        if not self.process.send({**protocol.command(action, seq), **fields}):
            reply.cancel()
            raise WorkerGone()
        return reply

    def arm_kill_timer(self, delay: float, reason: str) -> None:
        """Kill this worker ``delay`` seconds from now unless it exits first (the first call counts)."""
        if self._kill_timer is None and not self.exited.done():
            self._kill_timer = asyncio.get_running_loop().call_later(delay, self.kill, reason)

    def kill(self, reason: str) -> None:
        """End the worker at once. ``reason`` says why (it becomes the task's error if the task was
        still running): without it a SIGKILL reads as the out-of-memory killer's."""
        if self.exited.done():
            return
        self.kill_reason = self.kill_reason or reason
        self.process.kill()

    def close_input(self) -> None:
        self.process.close_input()

    # ------------------------------------------------------------------ from the worker
    def _message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("kind")
        if kind == protocol.REPLY:
            fut = self._replies.pop(msg.get("seq"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif kind in START_ANSWERS:
            if self.ready.done():
                return
            if kind == protocol.READY:
                self._on_ready(self, msg)     # applied before any later message is handled
                self.ready.set_result(msg)
            else:
                self.ready.set_exception(_refusal(kind, msg))
        elif self.is_ready:
            self._on_message(self, msg)

    def _exit(self, returncode: int) -> None:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
            self._kill_timer = None
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(WorkerGone())
        self._replies.clear()
        if not self.ready.done():
            self.ready.set_exception(WorkerProblem("the worker process ended before training started: "
                                                   + self.describe_exit(returncode)))
        if not self.exited.done():
            self.exited.set_result(returncode)
        self._on_exit(self, returncode)

    def describe_exit(self, returncode: int) -> str:
        return self.kill_reason or self.process.describe_exit(returncode)


def _refusal(kind: str, msg: dict[str, Any]) -> Exception:
    message = msg.get("message", "")
    if kind == protocol.CONFIG_ERROR:
        return BadRequest(message or "invalid config", msg.get("errors"))
    if kind == protocol.OUTPUT_IN_USE:
        return Conflict(message, msg.get("errors"))
    if kind == protocol.RESUME_ERROR:
        return Conflict(f"cannot resume from the checkpoint: {message}")
    return WorkerProblem(f"the training could not start: {message}")
