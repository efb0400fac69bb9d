"""The worker process of one training task: ``python -m epoch_widgets.server.worker``.

It reads one ``start`` message from stdin (``{"task_id", "config", "resume", "overwrite",
"data_root"}`` with resolved absolute paths), loads the data and hosts the run with :class:`trainer.remote.RunHost`:
``ready`` (or why not) and then every event of the run go to the server as JSON lines on stdout;
``command`` messages arrive on stdin and are answered with a ``reply`` once they took effect (see
``trainer.protocol``). When stdin closes (the server went away) the run is stopped.

Only ``trainer``, pandas and the standard library are imported here: no server code.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO, Any

from trainer import ConfigError, TrainingState, protocol
from trainer.remote import RunHost
from trainer.data.table_info import describe_table


class Channel:
    """Protocol messages to the server, one JSON line each; thread-safe, and silent once the
    server has gone."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._lock = threading.Lock()
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        line = protocol.encode(message)
        with self._lock:
            if self.closed:
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed = True


def serve_commands(host: RunHost, commands: IO[bytes], busy: threading.Lock) -> None:
    """Apply command messages until stdin closes; then stop the run (the server has gone)."""
    for line in commands:
        try:
            message = protocol.decode(line)
        except ValueError:
            continue
        with busy:
            host.command(message)
    host.abandon()


def _protocol_stream() -> IO[bytes]:
    """Take stdout for the protocol and point file descriptor 1 at stderr, so a stray print from
    a library lands in the server log instead of corrupting the messages."""
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(2, 1)
    return proto


def main() -> int:
    channel = Channel(_protocol_stream())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[epoch-widgets worker %(process)d] %(levelname)s %(message)s")
    commands = sys.stdin.buffer
    try:
        spec = protocol.decode(commands.readline())
        config = spec["config"]
    except (ValueError, KeyError, TypeError) as exc:
        channel.send(protocol.refusal(protocol.START_ERROR, f"bad start message: {exc}"))
        return 3
    host = RunHost(channel.send)
    try:
        # Described only: the run reads it whole or streams it, as its config's streaming says.
        data = describe_table(config["data_path"], root=spec.get("data_root"))
    except ConfigError as exc:
        channel.send(protocol.refusal(protocol.CONFIG_ERROR, str(exc), exc.errors))
        return 2
    if host.build(spec, data)["kind"] != protocol.READY:
        return 2
    busy = threading.Lock()
    threading.Thread(target=serve_commands, args=(host, commands, busy), name="commands", daemon=True).start()
    state = host.train()
    # Let a command being answered (typically the stop that ended the run) send its reply first.
    busy.acquire(timeout=5)
    return 1 if state == TrainingState.FAILED else 0


if __name__ == "__main__":
    try:
        code = main()
    except Exception:
        logging.getLogger("trainer").exception("the worker failed")
        code = 1
    sys.stderr.flush()
    # The command thread is blocked reading stdin; a normal interpreter exit would wait on that
    # read's lock and abort. Everything is written by now (the run saved its artifacts).
    os._exit(code)
