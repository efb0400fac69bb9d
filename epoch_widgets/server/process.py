"""The server's handle on one worker process: start it, read its messages, send it commands.

Messages are read on a thread (a blocking pipe read never touches the event loop) and handed
to the loop with ``call_soon_threadsafe``; the worker's exit is reported the same way, after its
last message, so the task sees everything the worker said before it learns that it is gone.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Optional

from trainer import protocol

log = logging.getLogger("epoch_widgets.server")

WORKER_MODULE = "epoch_widgets.server.worker"


class WorkerProcess:
    """One ``python -m epoch_widgets.server.worker`` child with JSON-line pipes."""

    def __init__(self, task_id: str, on_message: Callable[[dict[str, Any]], None],
                 on_exit: Callable[[int], None], python: str = sys.executable,
                 env: Optional[dict[str, str]] = None):
        self.task_id = task_id
        self._on_message = on_message
        self._on_exit = on_exit
        self._python = python
        self._env = env
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._write_lock = threading.Lock()
        self.returncode: Optional[int] = None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self.returncode is None and self._proc.poll() is None

    def start(self, start_message: dict[str, Any]) -> None:
        """Spawn the worker and send it the task; call on the event loop's thread."""
        self._loop = asyncio.get_running_loop()
        # A new session: Ctrl-C in the terminal running Jupyter must not interrupt the workers
        # (the server asks before shutting down, and shuts them down itself).
        self._proc = subprocess.Popen([self._python, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=self._env, start_new_session=True)
        self.send(start_message)
        threading.Thread(target=self._read, name=f"worker-{self.task_id}", daemon=True).start()

    def send(self, message: dict[str, Any]) -> bool:
        """Write one message; False if the worker can no longer receive it."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        line = protocol.encode(message)
        with self._write_lock:
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def kill(self) -> None:
        """End the worker at once (SIGKILL to its process group)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self._proc.kill()

    def close_input(self) -> None:
        """Close the worker's stdin: it stops its run and exits (as when the server dies)."""
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            with self._write_lock:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

    def describe_exit(self, returncode: int) -> str:
        return describe_exit(returncode)

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            try:
                message = protocol.decode(line)
            except ValueError:
                log.warning("task %s: unreadable worker message %r", self.task_id, line[:200])
                continue
            if not self._dispatch(self._on_message, message):
                break
        returncode = proc.wait()
        self.returncode = returncode
        if proc.stdin is not None:
            with self._write_lock:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        proc.stdout.close()
        self._dispatch(self._on_exit, returncode)

    def _dispatch(self, fn: Callable[[Any], None], arg: Any) -> bool:
        return call_on_loop(self._loop, fn, arg)


def call_on_loop(loop: Optional[asyncio.AbstractEventLoop], fn: Callable[[Any], None], arg: Any) -> bool:
    """Hand ``fn(arg)`` from a reader thread to the server's loop; False once the loop is gone."""
    if loop is None or loop.is_closed():
        return False
    try:
        loop.call_soon_threadsafe(fn, arg)
        return True
    except RuntimeError:  # the loop closed meanwhile (server shutting down)
        return False


def describe_exit(returncode: int) -> str:
    """Why a worker ended, in words a user can act on."""
    if returncode < 0:
        return f"the worker process was {protocol.describe_exit(returncode)}"
    return f"the worker process exited with code {returncode} before the run finished; see the server log"
