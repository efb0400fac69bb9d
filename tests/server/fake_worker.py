"""A stand-in for a task's worker process, through the server's ``worker_factory`` seam.

It speaks the worker protocol (``trainer.protocol``) on the event loop at once, as a worker's
reader thread would hand its lines over, so a lifecycle test runs in milliseconds. Each test says
how its workers answer the start message (``on_start``) and whether they obey a closed input.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Optional

from epoch_widgets.server.process import describe_exit
from trainer import RunState, protocol
from trainer.checkpoints import checkpoint_dir

READY, HANG, REFUSE = "ready", "hang", "refuse"


class FakeWorkers:
    """The factory (``Settings.worker_factory``): every worker it made, in order."""

    def __init__(self, on_start: str = READY, obey_close: bool = True):
        self.on_start = on_start
        self.obey_close = obey_close
        self.made: list[FakeWorker] = []

    def __call__(self, task_id: str, on_message: Callable[[dict[str, Any]], None],
                 on_exit: Callable[[int], None], python: str = "", env: Optional[dict[str, str]] = None) -> "FakeWorker":
        worker = FakeWorker(self, task_id, on_message, on_exit)
        self.made.append(worker)
        return worker

    @property
    def alive(self) -> list["FakeWorker"]:
        return [w for w in self.made if w.alive]


class FakeWorker:
    """One worker: ready (or not) on start, a run that goes where its commands or the test say."""

    def __init__(self, fleet: FakeWorkers, task_id: str, on_message: Callable[[dict[str, Any]], None],
                 on_exit: Callable[[int], None]):
        self.fleet, self.task_id = fleet, task_id
        self._on_message, self._on_exit = on_message, on_exit
        self.pid: Optional[int] = None
        self.returncode: Optional[int] = None
        self.spec: dict[str, Any] = {}
        self.state = "pending"
        self.epoch = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def alive(self) -> bool:
        return self.pid is not None and self.returncode is None

    @property
    def output(self) -> Optional[Path]:
        out = self.spec["config"].get("output_path")
        return Path(out) if out else None

    # ------------------------------------------------------------------ the WorkerProcess interface
    def start(self, message: dict[str, Any]) -> None:
        self._loop = asyncio.get_running_loop()
        self.pid = 10_000 + len(self.fleet.made)
        self.spec = message
        if self.fleet.on_start == READY:
            self._later(self._ready)
        elif self.fleet.on_start == REFUSE:
            self._later(self.refuse)

    def send(self, message: dict[str, Any]) -> bool:
        if not self.alive:
            return False
        if message.get("kind") == protocol.COMMAND:
            self._later(self._command, message["cmd"], message["seq"])
        return True

    def kill(self) -> None:
        if self.alive:
            self._later(self._exit, -9)

    def close_input(self) -> None:
        if self.alive and self.fleet.obey_close:
            self._later(self.end, "stopped", "the server went away")

    def describe_exit(self, returncode: int) -> str:
        return describe_exit(returncode)

    # ------------------------------------------------------------------ what the run does
    def train_epoch(self) -> None:
        self.epoch += 1
        metrics = {"epoch": self.epoch, "train_loss": 1.0 / self.epoch, "val_loss": 1.0 / self.epoch,
                   "learning_rate": 0.01, "time_per_epoch": 0.01}
        self._event("epoch_end", {"metrics": metrics, "best_epoch": self.epoch, "improved": True})
        if self.output is not None:
            ckpt = checkpoint_dir(self.output)
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / f"ckpt-{self.epoch:06d}-000000.zip").write_bytes(b"fake")

    def end(self, state: str = "completed", reason: str = "done", exit: bool = True) -> None:
        """The run ends: its files (when it has an output_path), its final state, train_end, exit."""
        if not self.alive:
            return
        if self.output is not None:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / "evaluation.json").write_text(json.dumps({"written_by": self.task_id}))
        self._change(state, reason)
        self._event("train_end", {"state": state, "reason": reason, "error": None})
        if exit:
            self._exit(0)

    def refuse(self) -> None:
        """Answer the start message with a refusal (an unusable checkpoint)."""
        self._on_message(protocol.refusal(protocol.RESUME_ERROR, "the checkpoint does not load"))

    def _ready(self) -> None:
        if not self.alive:
            return
        snapshot = RunState(total_epochs=self.spec["config"]["epochs"]).snapshot()
        if self.spec.get("resume"):
            snapshot.update(current_epoch=self.epoch)
        self._on_message({"kind": protocol.READY, "task_id": self.task_id, "seed": 0, "snapshot": snapshot,
                          "samples": {"train": 8, "validation": 2}, "resumed_from": {"epoch": 0, "batch": 0}})
        self._change("running", "started")

    def _command(self, cmd: str, seq: int) -> None:
        if not self.alive:
            return
        if cmd == "stop":
            self.end("stopped", "stop requested", exit=False)
            self._on_message(protocol.reply(seq, True, "stopped"))
            self._exit(0)
            return
        target = {"pause": "paused", "resume": "running"}[cmd]
        self._change(target, cmd)
        self._on_message(protocol.reply(seq, True, target))

    def _change(self, new: str, reason: str) -> None:
        old, self.state = self.state, new
        self._event("state_change", {"old": old, "new": new, "reason": reason, "error": None})

    def _event(self, name: str, data: dict[str, Any]) -> None:
        self._on_message(protocol.event(name, data))

    def _exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._on_exit(code)

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon(fn, *args)
