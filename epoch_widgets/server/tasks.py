"""One training task as the server sees it: its record, its worker, its control and its event stream.

Everything here runs on the server's event loop thread; worker messages arrive there through
:class:`~.process.WorkerProcess`. Nothing here imports tornado or jupyter_server.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from .errors import BadRequest, Conflict, WorkerProblem
from .process import WorkerProcess, describe_exit
from .store import TaskStore
from .subscriptions import Subscription

log = logging.getLogger("epoch_widgets.server")

RECORD_FORMAT = 1
FINAL = frozenset({"completed", "stopped", "early_stopped", "failed", "interrupted"})
# A client reading a stream stops at "complete"; "error" ends a run that did not finish normally.
ERROR_STATES = frozenset({"failed", "interrupted"})
ACTIONS = {"pause": "paused", "resume": "resumed", "stop": "stopped"}
# Ended tasks that POST resume/{id} continues from their last checkpoint (a completed or
# early-stopped run has nothing left to do).
RESUMABLE = frozenset({"interrupted", "stopped", "failed"})


@dataclass
class Settings:
    """What the registry needs from the server's configuration (see app.py for the meanings)."""

    root_dir: Path
    models_dir: Path
    tasks_dir: Path
    keepalive_interval: float = 10.0
    start_timeout: float = 120.0
    command_timeout: float = 45.0
    stop_timeout: float = 60.0
    shutdown_timeout: float = 10.0
    max_running_tasks: int = 8
    save_interval: float = 1.0
    python: str = sys.executable


class WorkerGone(Exception):
    """The worker exited before answering."""


def _iso(ts: Optional[float]) -> Optional[str]:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds") if ts else None


def _initial_progress(total_epochs: int) -> dict[str, Any]:
    return {"current_epoch": 0, "total_epochs": total_epochs, "training_state": "pending",
            "latest_metrics": {}, "best_metrics": {}, "current_batch": 0, "total_batches": 0,
            "reason": None, "error": None}


class Task:
    """One training task as the server sees it: its record, its worker and its stream clients."""

    def __init__(self, task_id: str, config: dict[str, Any], data_file: Path, output_dir: Optional[Path],
                 store: TaskStore, settings: Settings):
        self.task_id = task_id
        self.config = config                      # the effective config, paths as the client gave them
        self.data_file = data_file
        self.output_dir = output_dir
        self.store = store
        self.settings = settings
        self.state = "pending"
        self.reason: Optional[str] = None
        self.error: Optional[str] = None
        self.progress = _initial_progress(config["epochs"])
        self.history: list[dict[str, Any]] = []
        self.seed: Optional[int] = config.get("seed")
        self.samples: dict[str, int] = {}
        self.created_at = time.time()
        self.finished_at: Optional[float] = None
        self.worker: Optional[WorkerProcess] = None
        self.subscribers: set[Subscription] = set()
        self.kill_reason: Optional[str] = None
        # Only a task the registry accepted is persisted or reported; a refused start leaves no trace.
        self.accepted = False
        self._ready: Optional[asyncio.Future[dict[str, Any]]] = None
        self._exited: Optional[asyncio.Future[int]] = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._seq = 0
        self._command_lock = asyncio.Lock()
        self._save_handle: Optional[asyncio.TimerHandle] = None
        self._last_save = 0.0

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        return self.state in FINAL

    def progress_snapshot(self) -> dict[str, Any]:
        """SPEC.md's progress object (plus batch position, reason and error)."""
        return {**self.progress, "training_state": self.state, "reason": self.reason, "error": self.error}

    def summary(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "name": self.config.get("name"), "training_state": self.state,
                "current_epoch": self.progress["current_epoch"], "total_epochs": self.progress["total_epochs"],
                "best_metrics": self.progress.get("best_metrics", {}), "reason": self.reason,
                "error": self.error, "created_at": _iso(self.created_at), "finished_at": _iso(self.finished_at),
                "watchers": len(self.subscribers), "output_path": self.config.get("output_path")}

    def details(self) -> dict[str, Any]:
        return {**self.summary(), "config": self.config, "progress": self.progress_snapshot(),
                "seed": self.seed, "samples": self.samples,
                "output_dir": str(self.output_dir) if self.output_dir else None}

    # ------------------------------------------------------------------ persistence
    def to_record(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "task_id": self.task_id, "config": self.config,
                "data_file": str(self.data_file), "output_dir": str(self.output_dir) if self.output_dir else None,
                "state": self.state, "reason": self.reason, "error": self.error,
                "progress": dict(self.progress), "history": list(self.history), "seed": self.seed,
                "samples": self.samples, "created_at": self.created_at, "finished_at": self.finished_at}

    @classmethod
    def from_record(cls, record: dict[str, Any], store: TaskStore, settings: Settings) -> "Task":
        """A task from a previous server life; one that was still going is now ``interrupted``."""
        out = record.get("output_dir")
        task = cls(record["task_id"], record["config"], Path(record["data_file"]),
                   Path(out) if out else None, store, settings)
        task.progress = {**task.progress, **record.get("progress", {})}
        task.history = list(record.get("history", []))
        task.seed = record.get("seed")
        task.samples = record.get("samples", {})
        task.created_at = record.get("created_at") or task.created_at
        task.finished_at = record.get("finished_at")
        task.state, task.reason, task.error = record["state"], record.get("reason"), record.get("error")
        task.accepted = True
        if task.state not in FINAL:
            was = task.state
            task.state = "interrupted"
            task.reason = task.error = (
                f"the Jupyter server stopped while the task was {was} (after epoch "
                f"{task.progress['current_epoch']} of {task.progress['total_epochs']}); "
                f"{task.restart_hint()}")
            task.finished_at = task.finished_at or time.time()
            task.save()
        return task

    def save(self, now: bool = True) -> None:
        """Persist the record: at once, or (for epoch updates) at most every ``save_interval``."""
        if not self.accepted:
            return
        if not now:
            wait = self._last_save + self.settings.save_interval - time.monotonic()
            if wait > 0:
                if self._save_handle is None:
                    self._save_handle = asyncio.get_running_loop().call_later(wait, self.save)
                return
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        self._last_save = time.monotonic()
        self.store.save(self.to_record())

    # ------------------------------------------------------------------ worker
    def launch(self, worker_config: dict[str, Any], resume: bool = False) -> None:
        """Start the worker; with ``resume`` it continues from the checkpoints in output_path."""
        loop = asyncio.get_running_loop()
        self._ready, self._exited = loop.create_future(), loop.create_future()
        self.worker = WorkerProcess(self.task_id, self.handle_message, self.handle_exit, python=self.settings.python)
        self.worker.start({"task_id": self.task_id, "config": worker_config, "resume": resume})

    def restart_hint(self) -> str:
        """What a user can do about a task that ended before its time."""
        if self.output_dir is not None and self.config.get("checkpoints", True):
            return f"POST resume/{self.task_id} continues it from its last checkpoint, or start it again to train"
        return "start it again to train"

    async def resume_from_checkpoint(self, timeout: float) -> dict[str, Any]:
        """Continue an ended task in a new worker from its last checkpoint; returns the worker's
        ``ready`` message. On failure the task is left as it was."""
        assert self.output_dir is not None
        # The last worker may still be writing its artifacts; its exit must not reach the new one.
        if not await self.wait_exit(self.settings.stop_timeout):
            raise Conflict("cannot resume: the task's last worker process is still finishing; try again shortly")
        before = (self.state, self.reason, self.error, self.finished_at, dict(self.progress), list(self.history))
        self.state, self.reason, self.error, self.finished_at, self.kill_reason = "pending", None, None, None, None
        # Until the worker is ready, its exit must not turn the task into a failed one (see handle_exit).
        self.accepted = False
        try:
            self.launch({**self.config, "data_path": str(self.data_file), "output_path": str(self.output_dir)},
                        resume=True)
            ready = await self.wait_ready(timeout)
        except BaseException:
            self.state, self.reason, self.error, self.finished_at, self.progress, self.history = before
            if self.worker is not None:
                self.worker.kill()
                await self.wait_exit(10.0)
            raise
        finally:
            self.accepted = True
        # The checkpoint may be older than the last epoch the record saw: its history is the truth.
        self.history = list(ready.get("history", self.history))
        self.save()
        return ready

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self._ready is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            self._ready.cancel()       # a late answer or exit is no longer anyone's business
            raise WorkerProblem(f"the worker process did not load the data and build the model within "
                                f"{timeout:g} s; try a smaller data file or model", status=504) from None

    async def wait_exit(self, timeout: float) -> bool:
        """Wait until the worker has exited and its exit was handled; False on timeout."""
        if self._exited is None or self._exited.done() or self.worker is None or self.worker.pid is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def handle_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("kind")
        if kind == "event":
            self._on_event(msg["event"], msg.get("data", {}), msg.get("progress"))
        elif kind == "batch":
            self.progress["current_batch"] = msg.get("batch", 0)
            self.progress["total_batches"] = msg.get("num_batches", 0)
        elif kind == "reply":
            fut = self._replies.pop(msg.get("seq"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif kind in ("ready", "config_error", "start_error", "resume_error") and self._ready is not None \
                and not self._ready.done():
            if kind == "ready":
                self.seed, self.samples = msg.get("seed"), msg.get("samples", {})
                self.progress.update(msg.get("progress") or {})
                self._ready.set_result(msg)
            elif kind == "config_error":
                self._ready.set_exception(BadRequest(msg.get("message", "invalid config"), msg.get("errors")))
            elif kind == "resume_error":
                self._ready.set_exception(Conflict(f"cannot resume from the checkpoint: {msg.get('message')}"))
            else:
                self._ready.set_exception(WorkerProblem(f"the training could not start: {msg.get('message')}"))

    def _on_event(self, event: str, data: dict[str, Any], progress: Optional[dict[str, Any]]) -> None:
        if progress:
            self.progress.update(progress)
        if event == "epoch_end":
            self.history.append(data["metrics"])
            self.publish({"type": "progress", "task_id": self.task_id, "progress": self.progress_snapshot(),
                          "improved": bool(data.get("improved"))})
            self.save(now=False)
        elif event == "state_change":
            if self.done:
                return
            self.state, self.reason = data["new"], data.get("reason")
            if self.state == "failed":
                self.error = self.progress.get("error") or self.reason
            self._publish_state(data.get("old"))
            self.save()
        elif event == "train_end":
            self.state, self.reason = data["state"], data.get("reason")
            self.error = self.progress.get("error")
            self.progress["best_metrics"] = data.get("best_metrics", self.progress.get("best_metrics", {}))
            self._finish()

    def handle_exit(self, returncode: int) -> None:
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(WorkerGone())
        self._replies.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(WorkerProblem("the worker process ended before training started: "
                                                    + describe_exit(returncode)))
        elif self.accepted and not self.done:
            old = self.state
            self.state = "failed"
            self.reason = self.error = self.kill_reason or describe_exit(returncode)
            self._publish_state(old)
            self._finish()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(returncode)

    def interrupt(self, reason: str) -> None:
        """Mark a task the server gave up on (shutdown) as interrupted."""
        if self.state in FINAL and self.state != "stopped":
            return
        old, self.state = self.state, "interrupted"
        self.reason = self.error = reason
        self._publish_state(old)
        self._finish()

    def _finish(self) -> None:
        self.finished_at = self.finished_at or time.time()
        self.progress["training_state"] = self.state
        self.publish(self.final_event())
        for sub in list(self.subscribers):
            sub.close()
        self.save()

    # ------------------------------------------------------------------ events
    def _publish_state(self, old: Optional[str]) -> None:
        self.publish({"type": "state", "task_id": self.task_id, "old": old, "new": self.state,
                      "training_state": self.state, "reason": self.reason, "progress": self.progress_snapshot()})

    def final_event(self) -> dict[str, Any]:
        """``complete`` with the final state and best metrics, or ``error`` for a failed run."""
        if self.state in ERROR_STATES:
            return {"type": "error", "task_id": self.task_id, "training_state": self.state,
                    "message": self.error or self.reason, "progress": self.progress_snapshot()}
        return {"type": "complete", "task_id": self.task_id, "training_state": self.state,
                "best_metrics": self.progress.get("best_metrics", {}), "reason": self.reason,
                "progress": self.progress_snapshot()}

    def publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.put(event)

    def subscribe(self) -> Subscription:
        """A stream client's queue, already holding the current progress (and the final event when
        the task has ended, in which case it is not kept as a watcher)."""
        sub = Subscription(self.subscribers.discard)
        sub.put({"type": "progress", "task_id": self.task_id, "progress": self.progress_snapshot()})
        if self.done:
            sub.put(self.final_event())
            sub.close()
        else:
            self.subscribers.add(sub)
        return sub

    # ------------------------------------------------------------------ control
    async def control(self, action: str) -> str:
        """Pause, resume or stop; returns the state the run reached. Raises Conflict when the
        state does not allow it, WorkerProblem when the worker does not answer."""
        async with self._command_lock:
            if self.done:
                raise Conflict(f"cannot {action}: the task has already ended ({self.state})")
            worker = self.worker
            assert worker is not None and self._exited is not None
            if action == "stop":
                asyncio.get_running_loop().call_later(self.settings.stop_timeout, self._kill_if_still_running)
            self._seq += 1
            seq = self._seq
            fut = asyncio.get_running_loop().create_future()
            self._replies[seq] = fut
            if not worker.send({"cmd": action, "seq": seq}):
                self._replies.pop(seq, None)
                await self.wait_exit(5.0)
                raise Conflict(f"cannot {action}: the task's worker has ended ({self.state})")
            try:
                reply = await asyncio.wait_for(fut, self.settings.command_timeout)
            except asyncio.TimeoutError:
                self._replies.pop(seq, None)
                raise WorkerProblem(f"the worker did not answer the {action} request within "
                                    f"{self.settings.command_timeout:g} s; it may be hung: "
                                    f"POST stop/{self.task_id} ends it", status=504) from None
            except WorkerGone:
                await self.wait_exit(5.0)
                if action == "stop" and self.done:
                    return self.state
                raise Conflict(f"cannot {action}: the task has already ended ({self.state})") from None
            if not reply.get("ok"):
                if reply.get("conflict"):
                    raise Conflict(reply.get("message", f"cannot {action} now"))
                raise WorkerProblem(reply.get("message", f"{action} failed"))
            state = reply.get("state", self.state)
            if action != "stop" and state in FINAL:
                raise Conflict(f"cannot {action}: the run ended ({state}) before it could be {ACTIONS[action]}")
            return state

    def _kill_if_still_running(self) -> None:
        if not self.done and self.worker is not None and self.worker.alive:
            self.kill_reason = (f"the run did not stop within {self.settings.stop_timeout:g} s of the stop "
                                f"request, so its worker process was killed; no artifacts were written")
            log.warning("task %s: %s", self.task_id, self.kill_reason)
            self.worker.kill()
