"""A worker process of a sweep: ``python -m trainer.sweep.worker <job file> <job number>``. It
trains one trial after another for the sweep's process, so a parallel sweep pays the interpreter's
start (importing pandas, PyTorch and the trainer) and the framework's warm-up once per worker, not
once per trial.

A job file (written by :class:`trainer.sweep.worker_pool.WorkerProcess` in a private temporary
file, read once and deleted) holds the ``start`` message and the DataFrame, or None to train on
the DataFrame of the job before; the job's number comes with it, and the run's commands carry it.
Each job's run is hosted with :class:`trainer.remote.RunHost`: ``ready`` (or why not) and every
event go to the parent as JSON lines on stdout (``trainer.protocol``); the trained weights go just
before ``train_end``, base64 in a ``weights`` message; ``idle`` follows once the worker is done
with the job. On stdin the parent sends ``train`` (the built run may start) or ``drop`` (it will
not), ``command`` messages for the job's run (a command of an earlier job is dropped), and ``job``
with the next job file. When stdin closes (the sweep's process went away or closed its workers)
the run is stopped, so its checkpoint is written and a resumed sweep continues it, and the worker
exits.
"""
from __future__ import annotations

import base64
import logging
import os
import pickle
import queue
import sys
import threading
from typing import IO, Any, Optional

from .. import protocol
from ..remote import RunHost

TRAIN = "train"       # parent -> worker: the built run may start training (the parent follows it now)
JOB = "job"           # parent -> worker: {"file": the next job file, "job": its number}
DROP = "drop"         # parent -> worker: the built run will not train (the job ends untrained)
IDLE = "idle"         # worker -> parent: done with the job (after its train_end, or its refusal)


class _Channel:
    """Messages to the parent, one JSON line each, thread-safe; the final weights go just before
    ``train_end``; silent once the parent has gone."""

    def __init__(self, stream: IO[bytes]):
        self._stream, self._lock, self.closed = stream, threading.Lock(), False
        self.host: Any = None

    def send(self, message: protocol.Message) -> None:
        lines = [protocol.encode(message)]
        host = self.host
        if message.get("kind") == protocol.EVENT and message.get("event") == "train_end" and host:
            backend = host.run.backend
            data = base64.b64encode(backend.encode_weights(backend.snapshot())).decode("ascii")
            lines.insert(0, protocol.encode({"kind": protocol.WEIGHTS, "data": data}))
        with self._lock:
            if self.closed:
                return
            try:
                for line in lines:
                    self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed = True


class _Hosting:
    """The job whose run the parent's commands steer: begun when its job arrives, hosted once its
    run is built, ended before the worker says idle."""

    def __init__(self, job: int) -> None:
        self._cond = threading.Condition()
        self.job: Optional[int] = job
        self.host: Optional[RunHost] = None

    def begin(self, job: int) -> None:
        with self._cond:
            self.job, self.host = job, None
            self._cond.notify_all()

    def hosted(self, host: RunHost) -> None:
        with self._cond:
            self.host = host
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self.job = self.host = None
            self._cond.notify_all()

    def host_for(self, job: Any) -> Optional[RunHost]:
        """The run host of ``job`` once built; None for a job that is not (or no longer) this one's."""
        with self._cond:
            self._cond.wait_for(lambda: self.job != job or self.host is not None)
            return self.host if self.job == job else None


def _read_parent(stdin: IO[bytes], hosting: _Hosting, inbox: "queue.Queue[Optional[protocol.Message]]",
                 commands: "queue.Queue[Optional[protocol.Message]]") -> None:
    """``train``, ``drop`` and ``job`` go to the main loop in order, commands to the command thread;
    None tells both that stdin closed."""
    for line in stdin:
        try:
            message = protocol.decode(line)
        except ValueError:
            continue
        if message["kind"] == JOB:
            hosting.begin(message["job"])     # before any command for it can arrive
        if message["kind"] in (TRAIN, JOB, DROP):
            inbox.put(message)
        else:
            commands.put(message)
    host = hosting.host
    if host is not None:
        host.abandon()
    commands.put(None)
    inbox.put(None)


def _apply_commands(hosting: _Hosting, commands: "queue.Queue[Optional[protocol.Message]]") -> None:
    """Apply the parent's commands in order, each to its job's run (a command for a job that has
    ended is dropped). On a thread of their own: a command waits for the state it asked for (a
    pause sent before ``train`` waits for training to start), and stdin must be read meanwhile."""
    while (message := commands.get()) is not None:
        host = hosting.host_for(message.get("job"))
        if host is not None:
            host.command(message)


def _read_job(path: str) -> tuple[protocol.Message, Any]:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)    # our own job file: the parent wrote it a moment ago
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def serve(first_job: str, first_number: int, channel: _Channel, stdin: IO[bytes]) -> None:
    """Train the jobs the parent sends, one at a time, until stdin closes."""
    hosting = _Hosting(first_number)
    inbox: "queue.Queue[Optional[protocol.Message]]" = queue.Queue()
    commands: "queue.Queue[Optional[protocol.Message]]" = queue.Queue()
    threading.Thread(target=_read_parent, args=(stdin, hosting, inbox, commands), name="parent", daemon=True).start()
    threading.Thread(target=_apply_commands, args=(hosting, commands), name="commands", daemon=True).start()
    data: Any = None
    job_file: Optional[str] = first_job
    while job_file is not None:
        spec, sent = _read_job(job_file)
        if sent is not None:
            data = sent
        host = RunHost(channel.send)
        following: Optional[protocol.Message] = None
        read = False        # whether ``following`` holds the parent's next message already
        if host.build(spec, data)["kind"] == protocol.READY:
            channel.host = host
            hosting.hosted(host)
            following, read = inbox.get(), True
            if following is not None and following["kind"] == TRAIN:
                host.train()
                read = False
            channel.host = None
        hosting.end()
        del host        # the run's model and data go before the next job builds its own
        channel.send({"kind": IDLE})
        while True:     # a drop of the built run (or stdin closing) ends the job untrained
            if not read:
                following = inbox.get()
            read = False
            if following is None or following["kind"] == JOB:
                break
        job_file = following["file"] if following is not None else None


def main(job_file: str, job_number: int) -> int:
    # Take stdout for the protocol; a library's stray print lands on stderr instead.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[epoch-widgets sweep worker %(process)d] %(levelname)s %(message)s")
    serve(job_file, job_number, _Channel(proto), sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1], int(sys.argv[2]))
    except Exception:
        logging.getLogger("trainer").exception("the sweep's worker failed")
        code = 1
    sys.stderr.flush()
    # The command thread blocks reading stdin; everything is written by now.
    os._exit(code)
