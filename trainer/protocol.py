"""The messages between a run and whoever drives it from another process.

Two pipes carry them: the HTTP API's worker process (one JSON object per line on its stdin and
stdout, ``epoch_widgets.server.worker``) and rank 0 of a multi-process run (a multiprocessing pipe,
``trainer.distributed``). Every message is a dict with a ``kind``:

From the run's side
    ``event``        {"event", "data"}: one run event (``trainer.events``), in order. Following
                     them with :class:`trainer.follower.RunFollower` keeps a copy of the run's state.
    ``ready``        {"snapshot", "seed", "samples", "task", "parameters", ...}: the run is built
                     and about to train; ``snapshot`` is its state (``RunState.snapshot``) to follow
                     from (``trainer.remote.RunHost`` builds it). From a rank: {"rank"}, it started.
    ``config_error`` {"message", "errors"}, ``output_in_use`` {"message", "errors"},
    ``resume_error`` {"message"}, ``start_error`` {"message"}: the run could not be built (a bad
    config, another run's checkpoints in output_path, an unusable checkpoint, anything else).
    ``reply``        {"seq", "ok", "state", "conflict", "message"}: the answer to a command. To
                     ``update``: with ``"event"`` (the applied ``config_change`` data) when ok, else
                     ``"refusal": "config"`` and ``"errors"`` (a bad change: HTTP 400) or
                     ``"conflict": true`` (the run has ended or is finishing: HTTP 409).
    ``weights``      {"data": bytes}: the trained weights (rank pipe; a Ray actor asked for them).
    ``failed``       {"rank", "message"}: a rank's failure (rank pipe only).
    ``file``         {"path", "data": bytes}: a file the run wrote or rewrote under its output_path
                     (``path`` relative to it), sent before the event that follows it (Ray actors
                     only, ``trainer.ray_executor``: the driver keeps the copy).
    ``file_removed`` {"path"}: a file the run deleted there (a rotated checkpoint).
To the run
    ``start``        {"task_id", "config", "resume", ...}: what to train (worker only; first line).
                     A Ray actor gets it with the DataFrame and, for a resume, the checkpoint files.
    ``command``      {"cmd": "pause" | "resume" | "stop", "seq"}, or {"cmd": "update", "seq",
                     "changes": {field: value}}: steer the run (``trainer.steering``).
"""
from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any, Callable, Optional

from .atomic import json_default
from .events import Callback

EVENT, READY, REPLY, WEIGHTS, FAILED = "event", "ready", "reply", "weights", "failed"
FILE, FILE_REMOVED = "file", "file_removed"
CONFIG_ERROR, RESUME_ERROR, START_ERROR = "config_error", "resume_error", "start_error"
OUTPUT_IN_USE = "output_in_use"
START, COMMAND = "start", "command"
REFUSALS = frozenset({CONFIG_ERROR, RESUME_ERROR, START_ERROR, OUTPUT_IN_USE})
COMMANDS = ("pause", "resume", "stop", "update")
CONFIG_REFUSAL = "config"       # a reply's "refusal": the change was invalid (nothing changed)

Message = dict[str, Any]


def event(name: str, data: dict[str, Any]) -> Message:
    return {"kind": EVENT, "event": name, "data": data}


def start(task_id: str, config: dict[str, Any], resume: bool = False, overwrite: bool = False,
          data_root: Optional[str] = None) -> Message:
    """``data_root``: the folder the data file must lie in. The host then opens the file confined
    to it (no symbolic links followed) and its messages quote no values from the data."""
    message = {"kind": START, "task_id": task_id, "config": config, "resume": resume, "overwrite": overwrite}
    if data_root is not None:
        message["data_root"] = data_root
    return message


def command(cmd: str, seq: int, changes: Optional[dict[str, Any]] = None) -> Message:
    """A control command; ``changes`` (the fields to set) only for ``update``."""
    message: Message = {"kind": COMMAND, "cmd": cmd, "seq": seq}
    if changes is not None:
        message["changes"] = changes
    return message


def reply(seq: Any, ok: bool, state: Optional[str] = None, *, conflict: bool = False,
          message: Optional[str] = None) -> Message:
    return {"kind": REPLY, "seq": seq, "ok": ok, "state": state, "conflict": conflict, "message": message}


def file_written(path: str, data: bytes) -> Message:
    return {"kind": FILE, "path": path, "data": data}


def file_appended(path: str, offset: int, data: bytes) -> Message:
    """The bytes of ``path`` from ``offset`` on (the receiver holds those before it)."""
    return {"kind": FILE, "path": path, "data": data, "offset": offset}


def file_removed(path: str) -> Message:
    return {"kind": FILE_REMOVED, "path": path}


def refusal(kind: str, message: str, errors: Optional[list[dict[str, Any]]] = None) -> Message:
    assert kind in REFUSALS
    out: Message = {"kind": kind, "message": message}
    if errors is not None:
        out["errors"] = errors
    return out


def encode(message: Message) -> bytes:
    """One JSON line (NaN stays NaN: a failed run's loss may be one; the server makes answers strict)."""
    return (json.dumps(message, default=json_default) + "\n").encode()


def decode(line: bytes) -> Message:
    """The message on one line; ValueError when it is not one."""
    message = json.loads(line)
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise ValueError("a protocol message is a JSON object with a 'kind'")
    return message


class EventForwarder(Callback):
    """Sends every event of a run as an ``event`` message through ``send``. ``batch_end`` only feeds
    progress bars, so at most one per ``batch_interval`` seconds goes (the epoch's last always does)."""

    def __init__(self, send: Callable[[Message], None], batch_interval: float = 0.0):
        self._send = send
        self._batch_interval = batch_interval
        self._last_batch = -float("inf")
        self._lock = threading.Lock()

    def on_event(self, run: Any, name: str, data: dict[str, Any]) -> None:
        if name == "batch_end" and self._batch_interval > 0:
            now = time.monotonic()
            if now - self._last_batch < self._batch_interval and data["batch"] != data["num_batches"]:
                return
            self._last_batch = now
        with self._lock:
            self._send(event(name, data))


def describe_exit(code: Optional[int]) -> str:
    """Why a process ended, in words a user can act on (negative codes are signals)."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGKILL":
            return (f"killed by {name}, e.g. by the system's out-of-memory killer (if memory was short, lower "
                    f"batch_size, hidden_units or sequence_length, or train on less data)")
        if name == "SIGSEGV":
            return f"killed by {name} (a crash in native code, e.g. the framework or a GPU driver)"
        return f"killed by {name}"
    return f"exit code {code}"
