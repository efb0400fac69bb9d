"""The sweep's worker processes, seen from the sweep's process: each trains one trial after another
(``python -m trainer.sweep.worker``), so a parallel sweep starts an interpreter once per worker,
not once per trial.

A :class:`WorkerProcess` is owned by one trial's run at a time; its messages wait in a queue in
the order the worker sent them, so the next owner reads only its own job's, after the ``idle``
that closes the last one. A :class:`WorkerPool` hands out at most ``size`` workers, reusing idle
ones, and closes them when the sweep ends (their stdin closes and they exit).
"""
from __future__ import annotations

import itertools
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from .. import protocol
from ..devices import usable_cores
from .worker import JOB

EXITED = "worker_exited"     # put in the queue when the worker's stdout closes: {"code": its exit status}
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_numbers = itertools.count(1)


def worker_threads(workers: int) -> Optional[int]:
    """The intra-op thread count each of ``workers`` processes gets so that together they fill the
    cores without oversubscribing them; None when the user set a count (the workers inherit it)."""
    if any(os.environ.get(name, "").strip() for name in THREAD_ENV):
        return None
    return max(1, usable_cores() // max(1, workers))


class WorkerProcess:
    """One worker process and the queue of its messages (see the module docstring)."""

    def __init__(self, threads: Optional[int] = None):
        # The worker imports the trainer package this process runs (an editable or source checkout too).
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [root, os.environ.get("PYTHONPATH")] if p)}
        if threads is not None:
            env.update({name: str(threads) for name in THREAD_ENV})
        self.messages: "queue.Queue[protocol.Message]" = queue.Queue()
        self._data: Any = None          # the DataFrame the worker holds (sent once, reused by later jobs)
        self._send_lock = threading.Lock()
        self._env = env
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "submit a job first"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def submit(self, spec: protocol.Message, data: pd.DataFrame) -> int:
        """Give the worker its next job (starting the process with the first); the job's number,
        which the run's commands carry."""
        number = next(_numbers)
        # The job goes through a private file, not the pipe: a large DataFrame would fill the pipe
        # before the worker reads it. The worker deletes the file once read.
        fd, job_file = tempfile.mkstemp(prefix="epoch-widgets-trial-", suffix=".pkl")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((spec, None if data is self._data else data), fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._data = data
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-m", "trainer.sweep.worker", job_file, str(number)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env)
            threading.Thread(target=self._read, name=f"sweep-worker-{self.proc.pid}", daemon=True).start()
        else:
            self.send({"kind": JOB, "file": job_file, "job": number})
        return number

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.messages.put(protocol.decode(line))
            except ValueError:
                continue
        self.messages.put({"kind": EXITED, "code": self.proc.wait()})

    def send(self, message: protocol.Message) -> None:
        """Write one message to the worker; a worker that has gone is ignored (its exit ends the run)."""
        with self._send_lock:
            try:
                self.proc.stdin.write(protocol.encode(message))  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
            except (AttributeError, BrokenPipeError, OSError, ValueError):
                pass

    def kill(self) -> None:
        """End the worker at once."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def close(self, timeout: float = 30.0) -> None:
        """Close its stdin (a run still training is stopped and saved), then wait for it to exit."""
        if self.proc is None:
            return
        with self._send_lock:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
            except (BrokenPipeError, OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerPool:
    """At most ``size`` worker processes, each lent to one trial at a time."""

    def __init__(self, size: int, threads: Optional[int] = None):
        self.size, self.threads = size, threads
        self._idle: list[WorkerProcess] = []
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self) -> WorkerProcess:
        """An idle worker, a new one while fewer than ``size`` exist, else the next one released."""
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the sweep's worker processes have been closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        return worker
                    self._count -= 1
                if self._count < self.size:
                    self._count += 1
                    return WorkerProcess(self.threads)
                self._cond.wait()

    def release(self, worker: WorkerProcess) -> None:
        """Take ``worker`` back once it is done with its job (a worker that has gone is dropped)."""
        with self._cond:
            keep = worker.alive and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cond.notify()
        if not keep:
            worker.close()

    def close(self) -> None:
        """Close the idle workers; those still lent are closed when released."""
        with self._cond:
            self._closed, idle, self._idle = True, self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.close()
