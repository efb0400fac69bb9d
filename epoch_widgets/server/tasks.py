"""One training task as the server sees it: its record, its lifecycle and its worker generations.

Everything here runs on the server's event loop thread; worker messages arrive there through
:class:`~.generation.WorkerGeneration`. The phases and the allowed transitions are in
``lifecycle.py``; following the run's events is in ``following.py``. Nothing here imports tornado
or jupyter_server.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from trainer import RunState, protocol
from trainer.redaction import redacted

from . import lifecycle as lc
from .errors import Conflict, TaskNotFound, WorkerProblem
from .following import FollowsRun, state_from_record
from .generation import WorkerGeneration, WorkerGone
from .lifecycle import Lifecycle
from .settings import Settings
from .store import TaskStore
from .subscriptions import Subscription

log = logging.getLogger("epoch_widgets.server")

RECORD_FORMAT = 1
ACTIONS = {"pause": "paused", "resume": "resumed", "stop": "stopped"}


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
        self.sweep: dict[str, Any] = {}           # a sweep's trial: {"sweep_id", "trial"} (sweeps.py)
        # Which run of output_dir is this task's (``ownership.py``); None for a task recorded
        # before runs had ids.
        self.run_id: Optional[str] = uuid.uuid4().hex
        self.created_at = time.time()
        self.launched_at = self.created_at        # the last time a worker started writing to output_dir
        self.finished_at: Optional[float] = None
        self.gen: Optional[WorkerGeneration] = None
        self._generations = 0
        self._finished_gen = 0      # the generation whose end was recorded (streams closed, record saved)
        self._run_ended_gen = 0     # the generation whose run reported its own end (its train_end still counts)
        self._trailing_gen = 0      # the generation whose epochs still count after the task's end (shutdown)
        # A resume from checkpoint in progress: its token, where the task was, its generation count.
        self._relaunch: Optional[object] = None
        self._relaunch_from: tuple[Any, ...] = ()
        self._relaunch_gens = 0
        self._ready_gen = 0         # the last generation whose ready the task accepted
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
                "watchers": len(self.subscribers), "output_path": self.config.get("output_path"),
                "logger_errors": self.progress["logger_errors"], "sweep_id": self.sweep.get("sweep_id"),
                "trial": self.sweep.get("trial")}

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
            "seed": self.seed, "run_id": self.run_id, "sweep": self.sweep,
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
        task.run_id, task.sweep = record.get("run_id"), record.get("sweep") or {}
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
        # The worker opens the data file itself, later (and again on resume): it gets the root so
        # that the open, not only the server's earlier check, keeps to it.
        gen.start(protocol.start(self.task_id, worker_config, resume, overwrite,
                                 data_root=str(self.settings.root_dir)))
        return gen

    def _ready(self, gen: WorkerGeneration, msg: dict[str, Any]) -> None:
        if gen is not self.gen or self.phase not in (lc.STARTING, lc.RELAUNCHING):
            return
        old = self.state
        self.apply_ready(msg)
        self.lifecycle.move(lc.RUNNING)
        self._ready_gen, self._relaunch = gen.number, None
        self.publish_state(old)
        self.save()

    def _following(self, gen: WorkerGeneration) -> bool:
        """Whether ``gen``'s reports still concern the task: it is the current generation, and the
        task's end has not been recorded."""
        return gen is self.gen and self._finished_gen != gen.number and self.phase not in (
            lc.STARTING, lc.RELAUNCHING, lc.DELETED)

    def _from_worker(self, gen: WorkerGeneration, msg: dict[str, Any]) -> None:
        if self._following(gen) or (gen is self.gen and gen.number == self._trailing_gen):
            self.follow(msg)
        elif gen is self.gen and self._run_ended_gen == gen.number and msg.get("event") == "train_end":
            # The run reported its own end (its final state_change came first): train_end adds
            # where its files are to the record.
            self.follow(msg)

    def _run_state_changed(self, new: str, reason: Optional[str], error: Optional[str]) -> None:
        if self.done:       # a run the server gave up on, still saving its last epochs
            return
        if new in lc.FINAL:
            self._run_ended_gen = self.gen.number if self.gen is not None else 0
            self._finish(new, reason, (error or reason) if new == lc.FAILED else None)
            return
        if new not in (lc.RUNNING, lc.PAUSED):
            return
        old = self.state
        if self.phase == lc.STOPPING:
            self.lifecycle.run_state = new
        else:
            self.lifecycle.move(new)
        self.reason = reason
        if self.state != old:
            self.publish_state(old)
        self.save()

    def _run_ended(self, state: str, reason: Optional[str], error: Optional[str]) -> None:
        if not self.done:               # a train_end without its final state_change
            self._finish(state, reason, error)
        else:
            self.save()                 # the files' paths train_end brought

    def _worker_exited(self, gen: WorkerGeneration, returncode: int) -> None:
        # Starting and relaunching handle their worker's early exit themselves (its ready fails).
        if self._following(gen):
            why = gen.describe_exit(returncode)
            self._finish(lc.FAILED, why, why)

    def interrupt(self, reason: str) -> None:
        """Mark a task the server gives up on (shutdown) as interrupted, before its worker is
        stopped: what that worker reports afterwards no longer concerns the task."""
        if self.phase in lc.LIVE and self.phase != lc.STARTING:
            if self.phase != lc.RELAUNCHING and self.gen is not None:
                # Its run stops within a batch and may finish an epoch meanwhile: the history the
                # record keeps goes as far as the artifacts the run writes.
                self._trailing_gen = self.gen.number
            self._finish(lc.INTERRUPTED, reason, reason)

    def _finish(self, state: str, reason: Optional[str], error: Optional[str],
                finished_at: Optional[float] = None) -> None:
        """The one way into an ended phase: record the end and why, cancel a resume in progress,
        send every stream client its final event and end its stream, and save the record. The
        current worker generation's reports no longer concern the task (a new generation's will)."""
        if self.done:
            return
        old = self.state
        self.lifecycle.move(state)
        self.reason, self.error = reason, error
        self._finished_gen = self.gen.number if self.gen is not None else 0
        self._relaunch = None
        self.finished_at = finished_at or self.finished_at or time.time()
        self.publish_state(old)
        self.close_streams()
        self.save()

    async def wait_exit(self, timeout: float) -> bool:
        return self.gen is None or await self.gen.wait_exit(timeout)

    # ------------------------------------------------------------------ transitions that await
    # Each takes its transition under the lock without awaiting, releases it, then waits; after
    # a wait it checks that its transition is still the current one (a stop, delete or shutdown
    # meanwhile ends it). So a stop or delete never waits behind another request's wait.
    def check(self, action: str) -> None:
        """Raise 404 for a deleted task and 409 when ``action`` is not possible now (hold the lock)."""
        if self.phase == lc.DELETED:
            raise TaskNotFound(f"no task {self.task_id!r}; it was deleted")
        refusal = self.lifecycle.refusal(action, self.task_id)
        if refusal is not None:
            raise Conflict(refusal)

    async def control(self, action: str) -> str:
        """Pause, resume or stop; returns the state the run reached. A stop while the task resumes
        from its checkpoint cancels that resume. Raises Conflict when the state does not allow it,
        WorkerProblem when the worker does not answer."""
        async with self.lock:
            self.check(action)
            if action == "stop" and self.phase == lc.RELAUNCHING:
                self.cancel_relaunch(f"a stop request (POST stop/{self.task_id}) cancelled its resume from the "
                                     f"checkpoint before it trained; {self.restart_hint()}")
                return self.state
            gen, reply = self.request(action)
        return await self.answer(action, gen, reply)

    def request(self, action: str) -> tuple[WorkerGeneration, "asyncio.Future[dict[str, Any]]"]:
        """Send ``action`` to the worker (the caller holds the lock and has checked it); await its
        reply with :meth:`answer` after releasing the lock."""
        gen = self.gen
        assert gen is not None
        if action == "stop":
            self.lifecycle.move(lc.STOPPING)
            gen.arm_kill_timer(self.settings.stop_timeout,
                               f"the run did not stop within {self.settings.stop_timeout:g} s of the stop request, "
                               f"so its worker process was killed; no artifacts were written")
        try:
            return gen, gen.request(action)
        except WorkerGone:
            failed: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            failed.set_exception(WorkerGone())
            return gen, failed

    async def answer(self, action: str, gen: WorkerGeneration, reply_future: "asyncio.Future[dict[str, Any]]") -> str:
        """The state the run reached after ``action``, from the worker's reply."""
        try:
            reply = await asyncio.wait_for(reply_future, self.settings.command_timeout)
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

    # ------------------------------------------------------------------ resuming from a checkpoint
    def begin_relaunch(self) -> object:
        """Move to relaunching (the caller holds the lock and has checked ``relaunch``); returns
        the token :meth:`relaunch` needs. Until the new worker is ready a stop, delete or shutdown
        cancels it (:meth:`cancel_relaunch`)."""
        token = object()
        self._relaunch = token
        self._relaunch_from = (self.phase, self.reason, self.error, self.finished_at, self.launched_at)
        self._relaunch_gens = self._generations
        old = self.state
        self.lifecycle.move(lc.RELAUNCHING)
        self.reason = self.error = self.finished_at = None
        self.publish_state(old)
        return token

    async def relaunch(self, token: object, worker_config: dict[str, Any], exit_timeout: float,
                       ready_timeout: float) -> dict[str, Any]:
        """Continue the task from its last checkpoint in a new worker generation, begun with
        :meth:`begin_relaunch`; returns the worker's ``ready``. No lock is held while it waits
        for the last worker's exit or the new one's ready. On failure the task is back where it
        was (its streams ended); when a stop or delete cancelled it, Conflict says so."""
        previous, gen = self.gen, None
        try:
            # The last worker may still be writing its artifacts; its exit must not overlap the next one.
            if previous is not None and not await previous.wait_exit(exit_timeout):
                raise Conflict("cannot resume: the task's last worker process is still finishing; try again shortly")
            async with self.lock:
                self._check_relaunch_current(token)
                gen = self.launch(worker_config, resume=True)
            ready = await gen.wait_ready(ready_timeout)
            async with self.lock:
                if self._ready_gen != gen.number:       # a stop, delete or shutdown came first
                    self._check_relaunch_current(token)
            return ready
        except BaseException as exc:
            current = self._relaunch is token
            if gen is not None:
                gen.kill(f"its resume from the checkpoint failed: {exc}" if current else
                         "its resume from the checkpoint was cancelled")
            if current:
                phase, reason, error, finished_at, self.launched_at = self._relaunch_from
                self._finish(phase, reason, error, finished_at)
                if gen is not None:
                    await gen.wait_exit(10.0)       # reaped before the refusal goes out
            elif isinstance(exc, Exception) and not isinstance(exc, Conflict):
                self._check_relaunch_current(token)     # says who cancelled it, not how its worker ended
            raise

    def _check_relaunch_current(self, token: object) -> None:
        if self._relaunch is token and self.phase == lc.RELAUNCHING:
            return
        if self.phase == lc.DELETED:
            raise Conflict(f"cannot resume: task {self.task_id} was deleted while it resumed from its checkpoint")
        raise Conflict(f"cannot resume: the resume from the checkpoint was cancelled ({self.reason}); the task "
                       f"is {self.state}")

    def cancel_relaunch(self, reason: str) -> None:
        """End a resume in progress (hold the lock): the new worker, if it appeared, is killed and
        the task is stopped. The request that began the resume is answered 409."""
        if self.phase != lc.RELAUNCHING:
            return
        if self.gen is not None and self.gen.number > self._relaunch_gens:
            self.gen.kill(f"its resume from the checkpoint was cancelled: {reason}")
        self._finish(lc.STOPPED, reason, None)

    def delete(self) -> None:
        """Forget the task (the caller holds the lock; a resume in progress is cancelled first)."""
        self.cancel_relaunch(f"task {self.task_id} was deleted (DELETE tasks/{self.task_id})")
        self.check("delete")
        self.lifecycle.move(lc.DELETED)
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        self.accepted = False          # nothing may write its record again
        for sub in list(self.subscribers):
            sub.close()
