"""The worker process of one sweep trial: ``python -m trainer.sweep.worker <job file>``.

The job file (written by :class:`trainer.sweep.process_run.ProcessRun` in a private temporary
file, read once) holds the ``start`` message and the DataFrame. The run is hosted with
:class:`trainer.remote.RunHost`: ``ready`` (or why not) and every event go to the parent as JSON
lines on stdout (``trainer.protocol``); the trained weights go just before ``train_end``, base64
in a ``weights`` message. On stdin the parent sends ``train`` (start training) and then
``command`` messages. When stdin closes (the sweep's process went away) the run is stopped, so
its checkpoint is written and a resumed sweep continues it.
"""
from __future__ import annotations

import base64
import logging
import os
import pickle
import sys
import threading
from typing import IO, Any

from .. import protocol
from ..remote import RunHost

TRAIN = "train"       # parent -> worker: the run may start training (the parent follows it now)


class _Channel:
    """Messages to the parent, one JSON line each, thread-safe; the final weights go just before
    ``train_end``; silent once the parent has gone."""

    def __init__(self, stream: IO[bytes]):
        self._stream, self._lock, self.closed = stream, threading.Lock(), False
        self.host: Any = None

    def send(self, message: protocol.Message) -> None:
        lines = [protocol.encode(message)]
        if message.get("kind") == protocol.EVENT and message.get("event") == "train_end" and self.host:
            backend = self.host.run.backend
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


def _serve_commands(host: RunHost, commands: IO[bytes], go: threading.Event, told: list[bool]) -> None:
    for line in commands:
        try:
            message = protocol.decode(line)
        except ValueError:
            continue
        if message["kind"] == TRAIN:
            told.append(True)
            go.set()
        else:
            host.command(message)
    host.abandon()
    go.set()


def main(job_file: str) -> int:
    # Take stdout for the protocol; a library's stray print lands on stderr instead.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[epoch-widgets sweep trial %(process)d] %(levelname)s %(message)s")
    channel = _Channel(proto)
    with open(job_file, "rb") as fh:
        spec, data = pickle.load(fh)    # our own job file: the parent wrote it a moment ago
    host = RunHost(channel.send)
    if host.build(spec, data)["kind"] != protocol.READY:
        return 2
    channel.host = host
    go, told = threading.Event(), []
    threading.Thread(target=_serve_commands, args=(host, sys.stdin.buffer, go, told), name="commands",
                     daemon=True).start()
    go.wait()
    if not told:        # the parent went away before the run was to start
        return 0
    state = host.train()
    return 1 if state.value == "failed" else 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1])
    except Exception:
        logging.getLogger("trainer").exception("the sweep trial's worker failed")
        code = 1
    sys.stderr.flush()
    # The command thread blocks reading stdin; everything is written by now.
    os._exit(code)
