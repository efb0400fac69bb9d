"""The worker process of one training task: ``python -m epoch_widgets.server.worker``.

It reads one JSON line from stdin (``{"task_id", "config", "resume", "overwrite"}`` with resolved
absolute paths), loads the data, builds the :class:`trainer.Trainer` and answers ``ready`` (or
``config_error``, ``output_in_use``, ``resume_error``, ``start_error``) on its protocol stream, then trains. Every trainer event goes to the server as one JSON line; control
commands (``{"cmd": "pause"|"resume"|"stop", "seq"}``) arrive on stdin and are answered with a
``reply`` once they took effect. When stdin closes (the server went away) the run is stopped.

Only ``trainer``, pandas and the standard library are imported here: no server code.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import warnings
from typing import IO, Any, Callable, Optional


from trainer import FINAL_STATES, CheckpointError, ConfigError, OutputPathInUse, StateError, Trainer, TrainingState
from trainer.events import Callback
from trainer.summary import parameter_count
from trainer.tables import read_table


# How long a command waits for the run to reach the state it asked for (a batch is milliseconds;
# stopping includes writing the artifacts).
COMMAND_WAIT = {"pause": 10.0, "resume": 10.0, "stop": 30.0}
BATCH_MESSAGE_INTERVAL = 0.25
FINAL = {s.value for s in FINAL_STATES}
TARGETS = {"pause": {"paused"} | FINAL, "resume": {"running"} | FINAL, "stop": FINAL}


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


class Channel:
    """JSON lines to the server; thread-safe, and silent once the server has gone."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._lock = threading.Lock()
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        line = (json.dumps(message, default=_json_default) + "\n").encode()
        with self._lock:
            if self.closed:
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed = True


class Relay(Callback):
    """Forwards the run's events and remembers the last state it forwarded (for command replies)."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.state = TrainingState.PENDING.value
        self._changed = threading.Condition()
        self._last_batch = 0.0

    def _send(self, run: Trainer, event: str, data: dict[str, Any]) -> None:
        self.channel.send({"kind": "event", "event": event, "data": data, "progress": run.progress()})

    def on_train_begin(self, run: Trainer, data: dict[str, Any]) -> None:
        self._send(run, "train_begin", data)

    def on_epoch_end(self, run: Trainer, data: dict[str, Any]) -> None:
        self._send(run, "epoch_end", data)

    def on_train_end(self, run: Trainer, data: dict[str, Any]) -> None:
        self._send(run, "train_end", data)

    def on_batch_end(self, run: Trainer, data: dict[str, Any]) -> None:
        # Batch position only feeds the progress endpoint; a few messages a second are plenty.
        now = time.monotonic()
        if now - self._last_batch >= BATCH_MESSAGE_INTERVAL or data["batch"] == data["num_batches"]:
            self._last_batch = now
            self.channel.send({"kind": "batch", **data})

    def on_state_change(self, run: Trainer, data: dict[str, Any]) -> None:
        # Send before recording, so a command reply never overtakes the state change it reports.
        self._send(run, "state_change", data)
        with self._changed:
            self.state = data["new"]
            self._changed.notify_all()

    def wait_for(self, states: set[str], timeout: float) -> str:
        with self._changed:
            self._changed.wait_for(lambda: self.state in states, timeout)
            return self.state


def serve_commands(run: Trainer, relay: Relay, commands: IO[bytes], channel: Channel,
                   busy: threading.Lock) -> None:
    """Apply control commands until stdin closes; then stop the run (the server has gone)."""
    for line in commands:
        with busy:
            _apply(run, relay, line, channel)
    if run.state not in FINAL_STATES:
        try:
            run.stop()
        except StateError:
            pass


def _apply(run: Trainer, relay: Relay, line: bytes, channel: Channel) -> None:
    """Run one command and reply once its effect is visible (or the wait ran out)."""
    try:
        message = json.loads(line)
        cmd, seq = message["cmd"], message.get("seq")
    except (ValueError, KeyError, TypeError):
        return
    action: Optional[Callable[[], None]] = {"pause": run.pause, "resume": run.resume, "stop": run.stop}.get(cmd)
    if action is None:
        channel.send({"kind": "reply", "seq": seq, "ok": False, "conflict": False,
                      "message": f"unknown command {cmd!r}"})
        return
    try:
        action()
    except StateError as exc:
        channel.send({"kind": "reply", "seq": seq, "ok": False, "conflict": True, "message": str(exc),
                      "state": relay.state})
        return
    state = relay.wait_for(TARGETS[cmd], COMMAND_WAIT[cmd])
    channel.send({"kind": "reply", "seq": seq, "ok": True, "state": state, "reached": state in TARGETS[cmd]})


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
        spec = json.loads(commands.readline())
        config, task_id = spec["config"], spec["task_id"]
    except (ValueError, KeyError, TypeError) as exc:
        channel.send({"kind": "start_error", "message": f"bad start message: {exc}"})
        return 3
    relay = Relay(channel)
    resuming = bool(spec.get("resume"))
    caught: list[warnings.WarningMessage] = []
    try:
        data = read_table(config["data_path"])
        if resuming:
            # A damaged newest checkpoint is skipped with a warning: the server tells the client.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run = Trainer.from_checkpoint(config["output_path"], data, config=config, callbacks=[relay])
        else:
            run = Trainer(config, data, callbacks=[relay], overwrite=bool(spec.get("overwrite")))
    except OutputPathInUse as exc:    # checkpoints appeared after the server checked the folder
        channel.send({"kind": "output_in_use", "message": f"output_path: {exc.errors[0]['message']}",
                      "errors": exc.errors})
        return 2
    except ConfigError as exc:
        channel.send({"kind": "config_error", "message": str(exc), "errors": exc.errors})
        return 2
    except CheckpointError as exc:
        channel.send({"kind": "resume_error", "message": str(exc)})
        return 2
    except Exception as exc:  # e.g. the framework is not installed: the server reports it
        channel.send({"kind": "start_error", "message": f"{type(exc).__name__}: {exc}"})
        return 3
    ready: dict[str, Any] = {"kind": "ready", "task_id": task_id, "pid": os.getpid(), "seed": run.seed,
                             "task": run.data.task, "progress": run.progress(),
                             "samples": {"train": len(run.data.train_index), "validation": len(run.data.val_index)},
                             "parameters": parameter_count(run.backend.model)}
    if resuming:
        ready.update(history=run.history, resumed_from={"epoch": run.current_epoch, "batch": run.batch},
                     warnings=[str(w.message) for w in caught])
    channel.send(ready)
    busy = threading.Lock()
    threading.Thread(target=serve_commands, args=(run, relay, commands, channel, busy),
                     name="commands", daemon=True).start()
    run.fit()
    # Let a command being answered (typically the stop that ended the run) send its reply first.
    busy.acquire(timeout=5)
    return 1 if run.state == TrainingState.FAILED else 0


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
