"""One training task as the server sees it: its record, its lifecycle and its worker generations.

Everything here runs on the server's event loop thread; worker messages arrive there through
:class:`~.generation.WorkerGeneration`. The phases and the allowed transitions are in
``lifecycle.py``; following the run's events is in ``following.py``. Nothing here imports tornado
or jupyter_server.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from trainer import RunState, protocol
from trainer.redaction import redacted

from . import lifecycle as lc
from .errors import Conflict, TaskNotFound, WorkerProblem
from .following import FollowsRun, state_from_record
from .generation import WorkerGeneration, WorkerGone
from .lifecycle import Lifecycle
from .store import TaskStore
from .subscriptions import Subscription

log = logging.getLogger("epoch_widgets.server")

RECORD_FORMAT = 1
ACTIONS = {"pause": "paused", "resume": "resumed", "stop": "stopped"}


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
    mlflow_tracking_uri: Optional[str] = None
    save_interval: float = 1.0
    python: str = sys.executable
    # What runs a worker generation: None for a local worker process (``process.WorkerProcess``),
    # or a factory with its interface (``ray_worker.RayWorker.factory()``).
    worker_factory: Optional[Callable[..., Any]] = None


def _iso(ts: Optional[float]) -> Optional[str]:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds") if ts else None


class Task(FollowsRun):
    """One training task: its record, its lifecycle, its current worker and its stream clients."""

    def __init__(self, task_id: str, config: dict[str, Any], data_file: Path, output_dir: Optional[Path],
                 store: TaskStore, settings: Settings):
        self.task_id = task_id
        self.config = config                      # the effective config, paths as the client gave them
        self.data_file = data_file
        self.output_dir = output_dir
        self.store = store
        self.settings = settings
        self.lifecycle = Lifecycle()
        self.reason: Optional[str] = None
        self.error: Optional[str] = None
        self.follow_state(RunState(total_epochs=config["epochs"]))
        self.seed: Optional[int] = config.get("seed")
        self.samples: dict[str, int] = {}
        self.created_at = time.time()
        self.launched_at = self.created_at        # the last time a worker started writing to output_dir
        self.finished_at: Optional[float] = None
        self.gen: Optional[WorkerGeneration] = None
        self._generations = 0
        self._finished_gen = 0      # the generation whose end was recorded (streams closed, record saved)
        self.subscribers: set[Subscription] = set()
        # Only a task the registry accepted is persisted or reported; a refused start leaves no trace.
        self.accepted = False
        self._save_handle: Optional[asyncio.TimerHandle] = None
        self._last_save = 0.0

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> str:
        """The training_state clients see."""
        return self.lifecycle.training_state

    @property
    def phase(self) -> str:
        return self.lifecycle.phase

    @property
    def done(self) -> bool:
        return self.lifecycle.ended

    @property
    def lock(self) -> asyncio.Lock:
        return self.lifecycle.lock

    def summary(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "name": self.config.get("name"), "training_state": self.state,
                "current_epoch": self.progress["current_epoch"], "total_epochs": self.progress["total_epochs"],
                "best_metrics": self.progress.get("best_metrics", {}), "reason": self.reason,
                "error": self.error, "created_at": _iso(self.created_at), "finished_at": _iso(self.finished_at),
                "watchers": len(self.subscribers), "output_path": self.config.get("output_path")}

    def details(self, output_dir: Optional[str]) -> dict[str, Any]:
        return {**self.summary(), "config": self.config, "progress": self.progress_snapshot(),
                "seed": self.seed, "samples": self.samples, "output_dir": output_dir}

    # ------------------------------------------------------------------ persistence
    def to_record(self) -> dict[str, Any]:
        # Worker reasons and errors may quote a URI with its password; records never keep one.
        return redacted({
            "format": RECORD_FORMAT, "task_id": self.task_id, "config": self.config,
            "data_file": str(self.data_file), "output_dir": str(self.output_dir) if self.output_dir else None,
            "state": self.state, "reason": self.reason, "error": self.error,
            "progress": self.progress, "history": list(self.history), "run": self.run_state.snapshot(),
            "seed": self.seed,
            "samples": self.samples, "created_at": self.created_at, "launched_at": self.launched_at,
            "finished_at": self.finished_at})

    @classmethod
    def from_record(cls, record: dict[str, Any], store: TaskStore, settings: Settings) -> "Task":
        """A task from a previous server life; one that was still going is now ``interrupted``."""
        out = record.get("output_dir")
        task = cls(record["task_id"], record["config"], Path(record["data_file"]),
                   Path(out) if out else None, store, settings)
        task.follow_state(state_from_record(record, record["config"]["epochs"]))
        task.seed = record.get("seed")
        task.samples = record.get("samples", {})
        task.created_at = record.get("created_at") or task.created_at
        task.launched_at = record.get("launched_at") or task.created_at
        task.finished_at = record.get("finished_at")
        task.reason, task.error = record.get("reason"), record.get("error")
        task.accepted = True
        state = record["state"]
        if state in lc.FINAL:
            task.lifecycle = Lifecycle(state)
        else:
            task.lifecycle = Lifecycle(lc.INTERRUPTED)
            task.reason = task.error = (
                f"the Jupyter server stopped while the task was {state} (after epoch "
                f"{task.progress['current_epoch']} of {task.progress['total_epochs']}); {task.restart_hint()}")
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

    def restart_hint(self) -> str:
        """What a user can do about a task that ended before its time."""
        if self.output_dir is not None and self.config.get("checkpoints", True):
            return f"POST resume/{self.task_id} continues it from its last checkpoint, or start it again to train"
        return "start it again to train"

    # ------------------------------------------------------------------ worker generations
    def launch(self, worker_config: dict[str, Any], resume: bool = False, overwrite: bool = False) -> WorkerGeneration:
        """Start a new worker generation; with ``resume`` it continues from output_path's checkpoints."""
        self._generations += 1
        gen = WorkerGeneration(self._generations, self.task_id, self._ready, self._from_worker,
                               self._worker_exited, python=self.settings.python,
                               spawn=self.settings.worker_factory)
        self.gen = gen
        self.launched_at = time.time()
        gen.start(protocol.start(self.task_id, worker_config, resume, overwrite))
        return gen

    def _ready(self, gen: WorkerGeneration, msg: dict[str, Any]) -> None:
        if gen is not self.gen or self.phase not in (lc.STARTING, lc.RELAUNCHING):
            return
        old = self.state
        self.apply_ready(msg)
        self.lifecycle.move(lc.RUNNING)
        self.publish_state(old)
        self.save()

    def _following(self, gen: WorkerGeneration) -> bool:
        """Whether ``gen``'s reports still concern the task: it is the current generation, and the
        task's end has not been recorded (a final state_change comes before train_end)."""
        return gen is self.gen and self._finished_gen != gen.number and self.phase not in (
            lc.STARTING, lc.RELAUNCHING, lc.DELETED)

    def _from_worker(self, gen: WorkerGeneration, msg: dict[str, Any]) -> None:
        if self._following(gen):
            self.follow(msg)

    def _run_state_changed(self, new: str, reason: Optional[str], error: Optional[str]) -> None:
        old = self.state
        if self.phase in lc.FINAL:       # the end is already known; train_end records it
            return
        if new in lc.FINAL:
            self.lifecycle.move(new)
        elif new in (lc.RUNNING, lc.PAUSED):
            if self.phase == lc.STOPPING:
                self.lifecycle.run_state = new
            else:
                self.lifecycle.move(new)
        else:
            return
        self.reason = reason
        if new == lc.FAILED:
            self.error = error or reason
        if self.state != old:
            self.publish_state(old)
        self.save()

    def _run_ended(self, state: str, reason: Optional[str], error: Optional[str]) -> None:
        old = self.state
        if self.phase not in lc.FINAL:
            self.lifecycle.move(state)
        self.reason, self.error = reason, error
        if self.state != old:
            self.publish_state(old)
        self._finish()

    def _worker_exited(self, gen: WorkerGeneration, returncode: int) -> None:
        # Starting and relaunching handle their worker's early exit themselves (its ready fails).
        if not self._following(gen):
            return
        if self.phase in lc.LIVE:
            old = self.state
            self.lifecycle.move(lc.FAILED)
            self.reason = self.error = gen.describe_exit(returncode)
            self.publish_state(old)
        self._finish()      # also when it died between its final state and its train_end

    def interrupt(self, reason: str) -> None:
        """Mark a task the server gave up on (shutdown) as interrupted."""
        if self.phase not in lc.LIVE and self.phase != lc.STOPPED:
            return
        old = self.state
        self.lifecycle.move(lc.INTERRUPTED)
        self.reason = self.error = reason
        self.publish_state(old)
        self._finish()

    def _finish(self) -> None:
        self._finished_gen = self.gen.number if self.gen is not None else 0
        self.finished_at = self.finished_at or time.time()
        self.close_streams()
        self.save()

    async def wait_exit(self, timeout: float) -> bool:
        return self.gen is None or await self.gen.wait_exit(timeout)

    # ------------------------------------------------------------------ transitions that await
    def check(self, action: str) -> None:
        """Raise 404 for a deleted task and 409 when ``action`` is not possible now (hold the lock)."""
        if self.phase == lc.DELETED:
            raise TaskNotFound(f"no task {self.task_id!r}; it was deleted")
        refusal = self.lifecycle.refusal(action, self.task_id)
        if refusal is not None:
            raise Conflict(refusal)

    async def control(self, action: str) -> str:
        """Pause, resume or stop; returns the state the run reached. Raises Conflict when the
        state does not allow it, WorkerProblem when the worker does not answer."""
        async with self.lock:
            self.check(action)
            return await self.command(action)

    async def command(self, action: str) -> str:
        """``control`` for a caller that holds the lock and has checked the action."""
        gen = self.gen
        assert gen is not None
        if action == "stop":
            self.lifecycle.move(lc.STOPPING)
            gen.arm_kill_timer(self.settings.stop_timeout,
                               f"the run did not stop within {self.settings.stop_timeout:g} s of the stop request, "
                               f"so its worker process was killed; no artifacts were written")
        try:
            reply = await gen.command(action, self.settings.command_timeout)
        except asyncio.TimeoutError:
            hint = ("it is killed if it has not ended " f"{self.settings.stop_timeout:g} s after the request"
                    if action == "stop" else f"it may be hung: POST stop/{self.task_id} ends it")
            raise WorkerProblem(f"the worker did not answer the {action} request within "
                                f"{self.settings.command_timeout:g} s; {hint}", status=504) from None
        except WorkerGone:
            await gen.wait_exit(5.0)
            if action == "stop" and self.done:
                return self.state
            raise Conflict(f"cannot {action}: the task has already ended ({self.state})") from None
        if not reply.get("ok"):
            if reply.get("conflict"):
                raise Conflict(reply.get("message", f"cannot {action} now"))
            raise WorkerProblem(reply.get("message", f"{action} failed"))
        state = reply.get("state", self.state)
        if action != "stop" and state in lc.FINAL:
            raise Conflict(f"cannot {action}: the run ended ({state}) before it could be {ACTIONS[action]}")
        return state

    async def relaunch(self, worker_config: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Continue an ended task in a new worker generation from its last checkpoint; returns the
        worker's ``ready``. The caller holds the lock, has checked ``relaunch`` and waited for the
        last worker's exit. On failure the task is left as it was."""
        before = (self.phase, self.reason, self.error, self.finished_at, self.launched_at)
        old = self.state
        self.lifecycle.move(lc.RELAUNCHING)
        self.reason = self.error = self.finished_at = None
        self.publish_state(old)
        gen = self.launch(worker_config, resume=True)
        try:
            return await gen.wait_ready(timeout)
        except BaseException:
            gen.kill()
            await gen.wait_exit(10.0)
            if self.phase == lc.RELAUNCHING:        # (a shutdown may have interrupted it meanwhile)
                phase, self.reason, self.error, self.finished_at, self.launched_at = before
                self.lifecycle.move(phase)
                self.publish_state("pending")
                self.save()
            raise

    def delete(self) -> None:
        """Forget the task (the caller holds the lock and has checked ``delete``)."""
        self.lifecycle.move(lc.DELETED)
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        self.accepted = False          # nothing may write its record again
        for sub in list(self.subscribers):
            sub.close()
