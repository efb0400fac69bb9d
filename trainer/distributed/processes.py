"""The rank processes of one multi-process run: starting them, reading their pipes, ending them.

Ranks start with the ``spawn`` method (fresh interpreters: a CUDA context in the kernel cannot
break them). What each rank needs (config, DataFrame, model) goes through a private temporary file,
not through the spawn pipe: CPython's launcher writes the spawn payload while still holding the
pipe's reading end, so a child that dies early (e.g. it cannot re-import the script) would block
that write forever once the payload outgrows the pipe buffer.

A reader thread relays every message of every rank (``trainer.protocol`` dicts) to the caller and
adds one ``exited`` message per rank that ends with an error, after that rank's last message, and
a final ``exited`` with ``rank`` None when every rank is gone.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import tempfile
import threading
import time
from typing import Any, Callable, Optional

EXITED = "exited"     # a message of the reader thread, not of a rank


class RankProcesses:
    """Spawned rank processes and the thread reading their pipes."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self._mp = multiprocessing.get_context("spawn")
        self.request = self._mp.RawValue("i", 0)      # the control request every rank reads
        self.steer = self._mp.RawValue("i", 0)        # changes posted to the store (trainer.steering)
        self.procs: list[Any] = []
        self._job_file: Optional[str] = None
        self._done = threading.Event()

    def launch(self, target: Callable[..., None], job: Any, post: Callable[[dict[str, Any]], bool]) -> None:
        """Start ``target(rank, job_file, request, steer, pipe)`` in each rank and relay their messages to
        ``post`` (which returns False once nobody listens any more)."""
        fd, self._job_file = tempfile.mkstemp(prefix="epoch-widgets-job-", suffix=".pkl")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(job, fh, protocol=pickle.HIGHEST_PROTOCOL)
        pipes = []
        for rank in range(self.world_size):
            receive, send = self._mp.Pipe(duplex=False)
            proc = self._mp.Process(target=target, args=(rank, self._job_file, self.request, self.steer, send),
                                    name=f"epoch-widgets-rank-{rank}", daemon=True)
            proc.start()
            send.close()        # the rank holds the only writing end: its exit reads as end-of-file
            self.procs.append(proc)
            pipes.append(receive)
        threading.Thread(target=self._read, args=(pipes, post), name="epoch-widgets-ranks", daemon=True).start()

    def _read(self, pipes: list[Any], post: Callable[[dict[str, Any]], bool]) -> None:
        open_pipes = dict(zip(pipes, range(len(pipes))))
        sentinels = {proc.sentinel: rank for rank, proc in enumerate(self.procs)}

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

        while sentinels and not self._done.is_set():
            for ready in multiprocessing.connection.wait([*open_pipes, *sentinels], timeout=0.5):
                if ready in open_pipes:
                    if not read(ready, until_end=False):
                        return
                elif ready in sentinels:
                    rank = sentinels.pop(ready)
                    if not read(pipes[rank], until_end=True):   # a dead rank's pipe is read to its end first
                        return
                    proc = self.procs[rank]
                    proc.join(5)      # the sentinel can turn ready a moment before the exit status exists
                    if proc.exitcode:
                        post({"kind": EXITED, "rank": rank, "code": proc.exitcode})
        if not self._done.is_set():
            post({"kind": EXITED, "rank": None, "code": 0})

    def reap(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the ranks to exit, then end the rest; stop reading."""
        deadline = time.monotonic() + grace
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._done.set()
        self.forget_job()

    def forget_job(self) -> None:
        """Delete the job file (every rank has read it once it reported ready)."""
        if self._job_file is not None:
            try:
                os.unlink(self._job_file)
            except OSError:
                pass
            self._job_file = None
