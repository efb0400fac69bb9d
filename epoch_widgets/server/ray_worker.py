"""A task's run on a Ray actor, with the interface of :class:`~.process.WorkerProcess`, so the task,
its worker generations and the registry drive it as they drive a local worker process.

``EpochTrainingApp.executor = "ray"`` makes every worker generation one of these. ``start``
returns at once; a thread of its own creates the actor (with the newest checkpoint files for a
resume), which reads ``data_path`` itself, inside the server's root as the local worker does,
streaming Parquet files with Ray Data on the cluster (``trainer.ray_executor.ray_data``): the
table never passes through the server. It builds the run there and then collects the actor's messages
(``trainer.ray_executor.link``): the files the run writes are written atomically into the task's
models folder as they come, and every other message goes to the event loop in order, as a worker
process's lines do. The actor's end or death is reported after its last message.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from trainer import protocol
from trainer.ray_executor.cluster import task_resources
from trainer.ray_executor.files import resume_files
from trainer.ray_executor.link import ActorLink

from .process import call_on_loop

log = logging.getLogger("epoch_widgets.server")

DIED = -1      # the exit code of an actor that died (see RayWorker.describe_exit)


class RayWorker:
    """One task's run on a Ray actor (see the module docstring); ``cpus`` are reserved per task."""

    def __init__(self, task_id: str, on_message: Callable[[dict[str, Any]], None],
                 on_exit: Callable[[int], None], python: str = "", env: Optional[dict[str, str]] = None,
                 cpus: int = 1):
        self.task_id = task_id
        self._on_message = on_message
        self._on_exit = on_exit
        self._cpus = cpus
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._link: Optional[ActorLink] = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._actor_pid: Optional[int] = None
        self.returncode: Optional[int] = None

    @classmethod
    def factory(cls, cpus: int = 1) -> Callable[..., "RayWorker"]:
        """What ``WorkerGeneration`` calls instead of ``WorkerProcess(...)``."""
        return functools.partial(cls, cpus=cpus)

    @property
    def pid(self) -> Optional[int]:
        """The actor's process id on its node once it has reported (0 while it is being placed);
        None before ``start``."""
        if self._loop is None:
            return None
        return self._actor_pid or 0

    @property
    def alive(self) -> bool:
        return self._loop is not None and self.returncode is None

    def start(self, start_message: dict[str, Any]) -> None:
        """Start placing the run; call on the event loop's thread (returns at once)."""
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, args=(start_message,), name=f"ray-{self.task_id}", daemon=True).start()

    def send(self, message: dict[str, Any]) -> bool:
        """Send a command to the actor; False if it can no longer receive one."""
        link = self._link
        return link is not None and self.returncode is None and link.command(message)

    def kill(self) -> None:
        """End the actor at once (or keep it from being created)."""
        with self._lock:
            self._cancelled = True
            link = self._link
        if link is not None:
            link.kill()

    def close_input(self) -> None:
        """The server is going away: the actor stops its run (its artifacts still come back) and ends."""
        with self._lock:
            link = self._link
        if link is None or link.actor is None:
            self.kill()
        else:
            link.abandon()

    def describe_exit(self, returncode: int) -> str:
        """Why the actor ended, in words a user can act on."""
        link = self._link
        if returncode == DIED and link is not None and link.death:
            return f"the Ray actor running the task {link.death}"
        return (f"the Ray actor ended (code {returncode}) before the run finished; see the server log"
                if returncode >= 0 else "the Ray actor running the task could not be reached")

    # ------------------------------------------------------------------ the thread
    def _run(self, message: dict[str, Any]) -> None:
        code = DIED
        try:
            code = self._place_and_follow(message)
        except Exception as exc:
            log.error("task %s: the run could not be placed on Ray", self.task_id, exc_info=True)
            self._dispatch(self._on_message, protocol.refusal(protocol.START_ERROR, f"{type(exc).__name__}: {exc}"))
            code = 1
        finally:
            self.returncode = code
            self._dispatch(self._on_exit, code)

    def _place_and_follow(self, message: dict[str, Any]) -> int:
        config = message["config"]
        output = config.get("output_path")
        files = resume_files(Path(output)) if message.get("resume") and output else None
        link = ActorLink(self.task_id, task_resources(config, self._cpus))
        with self._lock:
            if self._cancelled:
                return DIED
            self._link = link
        # No table here: the actor reads data_path itself, with Ray Data on the cluster.
        answer = link.open(message, None, files)
        if answer.get("kind") == protocol.READY:
            self._actor_pid = answer.get("pid")
            link.train()
        elif link.actor is None:      # refused before an actor was created (resources, output folder)
            self._dispatch(self._on_message, answer)
            return 2
        return link.follow(lambda msg: self._dispatch(self._on_message, msg))

    def _dispatch(self, fn: Callable[[Any], None], arg: Any) -> bool:
        return call_on_loop(self._loop, fn, arg)
