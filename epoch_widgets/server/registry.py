"""The registry of a server's training tasks: start, list, control, delete, persistence, shutdown."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from trainer import ConfigError, TrainingConfig, has_checkpoints
from trainer.checkpoints import describe_run, describe_saved_run, holds_run, run_summary, saved_run_files
from trainer.loggers import logger_locations
from trainer.data.table_files import is_glob

from . import lifecycle as lc
from . import ownership
from .errors import ApiProblem, BadRequest, Conflict, Gone, TaskNotFound, TooManyTasks, WorkerProblem
from .feed import TaskFeed
from .ids import TaskIdAllocator
from .paths import PathRedactor, check_data_files, resolve_data_path, resolve_output_path, shown_output_dir
from .store import TaskStore
from .settings import Settings
from .steering import settings_at_checkpoint
from .tasks import Task

log = logging.getLogger("epoch_widgets.server")

# What GET tasks?state= accepts: the states a client sees.
TASK_STATES = ("pending", "running", "paused", *sorted(lc.FINAL))
# A request key beside the config fields: replace another run's checkpoints in output_path.
OVERWRITE = "overwrite"
# Config fields that name where a task writes or connects beyond data_path and output_path (which
# are confined to the server's folders): over the API the server's settings decide them.
SERVER_DECIDES = {"mlflow_tracking_uri": "--EpochTrainingApp.mlflow_tracking_uri=<uri>"}


class TaskRegistry:
    """All tasks of this server: starting, listing, control, deletion, persistence, shutdown."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # What answers show instead of the server's own folders.
        self.redactor = PathRedactor(settings.root_dir, settings.models_dir, settings.tasks_dir)
        self.store = TaskStore(settings.tasks_dir)
        self.tasks: dict[str, Task] = {}
        self.feed = TaskFeed()
        for record in self.store.load_all():
            try:
                task = Task.from_record(record, self.store, settings)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipping task record %s: %s", record.get("task_id"), exc)
                continue
            task.feed = self.feed
            self.tasks[task.task_id] = task
        self.ids = TaskIdAllocator(taken=self.tasks)
        self._starting: dict[str, Task] = {}
        self._closing = False
        # How a pause, resume or stop of a sweep's trial reaches its sweep (sweeps.py sets it): the
        # state it reached, or None for a task that is no trial of a sweep running here.
        self.trial_control: Optional[Callable[[Task, str], Awaitable[Optional[str]]]] = None

    def get(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_id!r}; GET tasks lists the known ones")
        return task

    def list(self, states: Optional[list[str]] = None, name: Optional[str] = None,
             sweep_id: Optional[str] = None) -> list[dict[str, Any]]:
        """Task summaries, oldest first; ``states`` keeps tasks in any of them (each a state or a
        comma-separated list), ``name`` those whose name contains it (case-insensitive), ``sweep_id``
        the trials of that sweep. Each
        summary gains ``loggers``: where its TensorBoard and MLflow loggers write (those that did
        not fail; ``logger_errors`` says why one did)."""
        wanted = {s.strip() for text in states or [] for s in text.split(",") if s.strip()}
        unknown = sorted(wanted - set(TASK_STATES))
        if unknown:
            raise BadRequest(f"state: unknown state(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(TASK_STATES)} "
                             f"(several separated by commas)",
                             [{"field": "state", "value": ",".join(unknown), "message": f"allowed: {', '.join(TASK_STATES)}"}])
        needle = (name or "").casefold()
        out = []
        for task in sorted(self.tasks.values(), key=lambda t: (t.created_at, t.task_id)):
            if wanted and task.state not in wanted:
                continue
            if needle and needle not in str(task.config.get("name") or "").casefold():
                continue
            if sweep_id is not None and task.sweep.get("sweep_id") != sweep_id:
                continue
            summary = task.summary()
            if task.config.get("loggers"):
                locations = logger_locations(task.output_dir, self._server_config(task),
                                             relative_to=self.settings.models_dir)
                # A logger that failed wrote nothing usable there: no link to it.
                failed = {e["logger"].casefold() for e in summary["logger_errors"]}
                summary["loggers"] = {kind: where for kind, where in locations.items() if kind not in failed}
            out.append(summary)
        return out

    def live(self) -> list[Task]:
        return [t for t in [*self.tasks.values(), *self._starting.values()] if t.phase in lc.LIVE]

    def shown_output_dir(self, task: Task) -> Optional[str]:
        """Where the task's output_path landed, as ``/models/...`` (never the server's own path)."""
        return shown_output_dir(task.output_dir, self.settings.models_dir)

    def owner(self, output_dir: Path) -> Optional[Task]:
        """The task that wrote to ``output_dir`` last (its checkpoints are that task's)."""
        writers = [t for t in self.tasks.values() if t.output_dir == output_dir]
        return max(writers, key=lambda t: (t.launched_at, t.created_at), default=None)

    def replaced_by(self, task: Task) -> Optional[str]:
        """The id of the task whose run replaced ``task``'s files in its output folder since its
        own run wrote them; None while they are its own."""
        if task.output_dir is None:
            return None
        claim = ownership.holder(task.output_dir, self.settings.models_dir)
        if claim is not None and task.run_id is not None:
            return None if claim["run_id"] == task.run_id else claim["task_id"]
        owner = self.owner(task.output_dir)     # a task recorded before runs had ids
        return owner.task_id if owner is not None and owner is not task else None

    def check_not_replaced(self, task: Task, what: str) -> None:
        """410 when ``task``'s output folder holds another task's run, so ``what`` (e.g. its
        evaluation) would be that run's."""
        later = self.replaced_by(task)
        if later is None:
            return
        raise Gone(f"task {task.task_id} was replaced: task {later} was started in its output_path "
                   f"{task.config.get('output_path')!r} with \"overwrite\": true and its run replaced this "
                   f"task's files, so this task's {what} is gone (GET {what}/{later} gives the new run's; this "
                   f"task's own history stays in GET history/{task.task_id})")

    # ------------------------------------------------------------------ start
    async def start(self, body: Any) -> tuple[Task, dict[str, Any]]:
        """Validate ``body`` (a training config, plus ``overwrite``), start its worker, and return the
        task once the worker has checked the config against the data. A refused request changes nothing."""
        if self._closing:
            raise WorkerProblem("the server is shutting down", status=503)
        if not isinstance(body, dict):
            raise BadRequest("send the training config as a JSON object",
                             [{"field": "<config>", "value": None, "message": "expected a JSON object"}])
        body = dict(body)
        overwrite = body.pop(OVERWRITE, False)
        if not isinstance(overwrite, bool):
            raise BadRequest(f"{OVERWRITE}: give true or false",
                             [{"field": OVERWRITE, "value": overwrite, "message": "give true or false"}])
        self._refuse_server_decided(body)
        try:
            # In a thread: a large config must not hold up the other clients' requests.
            config = await asyncio.to_thread(TrainingConfig.from_dict, body)
        except ConfigError as exc:
            raise BadRequest(str(exc), exc.errors) from None
        errors: list[dict[str, Any]] = []
        data_file = output_dir = None
        try:
            data_file = resolve_data_path(config.data_path, self.settings.root_dir)
        except BadRequest as exc:
            errors += exc.errors or []
        if config.output_path is not None:
            try:
                output_dir = resolve_output_path(config.output_path, self.settings.models_dir)
            except BadRequest as exc:
                errors += exc.errors or []
        if errors:
            raise BadRequest(str(ConfigError(errors)), errors)
        assert data_file is not None
        if self._closing:       # shutdown began while the config was checked in a thread
            raise WorkerProblem("the server is shutting down", status=503)
        self._check_capacity()
        if output_dir is not None:
            self._check_output_dir(output_dir, config.output_path, overwrite)

        task = Task(self.ids.allocate(), config.to_saved_dict(), data_file, output_dir, self.store, self.settings)
        ready = await self._launch(task, overwrite=overwrite)
        if config.seed is None:
            task.config["seed"] = ready.get("seed")     # the effective config reproduces the run
        return self._accept(task), ready

    async def start_trial(self, config: TrainingConfig, data_file: Path, output_dir: Path, sweep: dict[str, Any],
                          resume: bool, listener: Callable[[str, dict[str, Any]], None]) -> Task:
        """Start a sweep's trial as a task of its own (``sweep``: {"sweep_id", "trial"}) in the
        folder the server chose for it; ``resume`` continues its checkpoint there. ``listener``
        hears the trial run's events."""
        if self._closing:
            raise WorkerProblem("the server is shutting down", status=503)
        self._check_capacity()
        saved = {**config.to_saved_dict(), "output_path": shown_output_dir(output_dir, self.settings.models_dir)}
        task = Task(self.ids.allocate(), saved, data_file, output_dir, self.store, self.settings)
        task.sweep = dict(sweep)
        task.listen_run(listener)
        ready = await self._launch(task, overwrite=not resume, resume=resume)
        task.config["seed"] = ready.get("seed", task.config.get("seed"))
        return self._accept(task)

    def _accept(self, task: Task) -> Task:
        task.accepted = True
        task.feed = self.feed
        self.tasks[task.task_id] = task
        self.feed.changed(task, "created")
        if task.output_dir is not None:
            ownership.claim(task.output_dir, task.task_id, task.run_id)
        task.save()
        return task

    async def _launch(self, task: Task, overwrite: bool, resume: bool = False) -> dict[str, Any]:
        """Start ``task``'s worker and wait for its ready; a failure leaves no trace of the task."""
        task_id = task.task_id
        self._starting[task_id] = task
        try:
            gen = task.launch(self._worker_config(task), resume=resume, overwrite=overwrite)
            return await gen.wait_ready(self.settings.start_timeout)
        except BaseException as exc:
            if task.gen is not None:
                task.gen.kill(f"its start was refused: {exc}")
                await task.gen.wait_exit(10.0)     # reaped before the refusal goes out
            if task.phase == lc.STARTING:
                task.lifecycle.move(lc.DELETED)
            self.ids.release(task_id)
            if not isinstance(exc, ApiProblem) and isinstance(exc, Exception):
                log.exception("could not start task %s", task_id)
                raise WorkerProblem(f"could not start the worker process: {type(exc).__name__}: {exc}") from None
            raise
        finally:
            self._starting.pop(task_id, None)

    def _refuse_server_decided(self, body: dict[str, Any]) -> None:
        """400 for a request that sets a field only the server's settings decide."""
        errors = [{"field": field, "value": None, "message": (
                      f"over the API the server decides where tasks log to MLflow: leave {field} out; the server's "
                      f"administrator sets it with {option} ({self._tracking_now()})")}
                  for field, option in SERVER_DECIDES.items() if body.get(field) is not None]
        if errors:
            raise BadRequest(str(ConfigError(errors)), errors)

    def _tracking_now(self) -> str:
        if self.settings.mlflow_tracking_uri:
            return "this server logs to its own tracking store"
        return ("unset here: MLFLOW_TRACKING_URI of the server's environment, else a store beside output_path "
                "in the models directory")

    def _server_config(self, task: Task) -> dict[str, Any]:
        """The task's config with what the server decides (``SERVER_DECIDES``) in place."""
        return {**task.config, "mlflow_tracking_uri": self.settings.mlflow_tracking_uri}

    def _worker_config(self, task: Task) -> dict[str, Any]:
        """What a task's worker trains with: the server's config of it, with the resolved paths."""
        return {**self._server_config(task), "data_path": str(task.data_file),
                "output_path": str(task.output_dir) if task.output_dir else None}

    def _check_capacity(self) -> None:
        live = self.live()
        if len(live) >= self.settings.max_running_tasks:
            raise TooManyTasks(f"{len(live)} tasks are running, the most this server allows "
                               f"(EpochTrainingApp.max_running_tasks); wait for one to finish or stop one")

    def _check_output_dir(self, output_dir: Path, given: Optional[str], overwrite: bool,
                          resuming: Optional[Task] = None) -> None:
        """409 when a live task writes there, or (for a new task without ``overwrite``) when the
        folder holds another run's checkpoints or saved files, naming that task and the ways out."""
        clash = next((t for t in self.live() if t.output_dir == output_dir and t is not resuming), None)
        if clash is not None:
            raise Conflict(f"output_path: task {clash.task_id} ({clash.state}) writes to the same folder; "
                           f"choose another output_path or stop that task (POST stop/{clash.task_id})",
                           [{"field": "output_path", "value": given, "message": f"task {clash.task_id} writes there"}])
        if overwrite or resuming is not None or not holds_run(output_dir):
            return
        owner = self.owner(output_dir)
        resumable = has_checkpoints(output_dir)
        kind = "checkpoints" if resumable else "saved files"
        files = kind if resumable else f"{kind} ({', '.join(saved_run_files(output_dir))})"
        if owner is not None:
            what = (f"the {files} of task {owner.task_id} ({owner.state} after epoch "
                    f"{owner.progress['current_epoch']} of {owner.progress['total_epochs']})")
            ways = ((f"POST resume/{owner.task_id} continues that task; " if resumable else "")
                    + f"send \"overwrite\": true with the config to replace its {kind} "
                      f"(DELETE tasks/{owner.task_id} forgets the task, its files stay); or choose another output_path")
        elif resumable:
            what = f"the checkpoints of a run this server has no task for ({run_summary(describe_run(output_dir))})"
            ways = ("send \"overwrite\": true with the config to replace them, or choose another output_path "
                    "(from Python, Trainer.from_checkpoint(output_path, df) continues that run)")
        else:
            run = describe_saved_run(output_dir)
            what = (f"the {files} of a run this server has no task for"
                    + (f" ({run_summary(run)})" if run else ""))
            ways = "send \"overwrite\": true with the config to replace them, or choose another output_path"
        message = f"the folder holds {what}; a new task would {'delete' if resumable else 'replace'} them. {ways}"
        raise Conflict(f"output_path: {message}", [{"field": "output_path", "value": given, "message": message}])

    # ------------------------------------------------------------------ control
    async def control(self, task_id: str, action: str) -> tuple[Task, str]:
        task = self.get(task_id)
        if task.sweep and self.trial_control is not None:
            state = await self.trial_control(task, action)
            if state is not None:
                return task, state
        return task, await task.control(action)

    async def resume(self, task_id: str) -> tuple[Task, str, Optional[str]]:
        """Resume a paused task; or continue an interrupted, stopped or failed one from its last
        checkpoint in a new worker. Returns (task, state, a note when it came from a checkpoint).
        The task's lock is held only while the request is checked and the transition taken, never
        across the waits for a worker (a stop or delete meanwhile answers at once)."""
        task = self.get(task_id)
        if task.sweep and task.phase not in lc.RESUMABLE and self.trial_control is not None:
            state = await self.trial_control(task, "resume")
            if state is not None:
                return task, state, None
        if task.sweep and task.phase in lc.RESUMABLE:
            raise Conflict(f"task {task_id} is trial {task.sweep.get('trial')} of sweep {task.sweep.get('sweep_id')}: "
                           f"it continues with its sweep (POST resume-sweep/{task.sweep.get('sweep_id')}), which "
                           f"resumes it from its checkpoint")
        async with task.lock:
            in_worker = task.phase not in lc.RESUMABLE
            if in_worker:
                task.check("resume")
                gen, reply = task.request("resume")
            else:
                self._check_relaunch(task)
                task.config = {**task.config, **settings_at_checkpoint(task)}
                token = task.begin_relaunch()
        if in_worker:
            return task, await task.answer("resume", gen, reply), None
        assert task.output_dir is not None
        # A record from before the server decided the tracking store may hold a request's URI:
        # the relaunched worker logs where this server's setting says.
        ready = await task.relaunch(token, self._worker_config(task), self.settings.stop_timeout, self.settings.start_timeout)
        where = ready.get("resumed_from") or {}
        epoch, batch = where.get("epoch", 0), where.get("batch", 0)
        note = f"Training resumed from its checkpoint after epoch {epoch}" + (f", batch {batch} of epoch {epoch + 1}"
                                                                             if batch else "")
        if ready.get("warnings"):
            note += " (" + "; ".join(ready["warnings"]) + ")"
        return task, task.state, note

    def _check_relaunch(self, task: Task) -> None:
        """Everything a resume from checkpoint needs, checked without awaiting (so it still holds
        when the task moves to relaunching)."""
        task.check("relaunch")
        if self._closing:
            raise WorkerProblem("the server is shutting down", status=503)
        ended = f"cannot resume: the task has already ended ({task.state})"
        if task.output_dir is None:
            raise Conflict(f"{ended} and was started without output_path, so it has no checkpoint to continue "
                           f"from; start it again to train")
        if not has_checkpoints(task.output_dir):
            raise Conflict(f"{ended} and wrote no checkpoint to continue from (checkpoints=False, or it ended "
                           f"before its first one); start it again to train")
        replacer = self.replaced_by(task)
        if replacer is not None:
            raise Conflict(f"{ended} and task {replacer} has written to its output_path since (started with "
                           f"\"overwrite\": true), so the checkpoints there are no longer this task's; start it "
                           f"again to train")
        if not is_glob(task.data_file) and not os.path.lexists(task.data_file):
            raise Conflict(f"{ended} and its data file {task.data_file.name!r} is no longer there; put it back "
                           f"to resume")
        check_data_files(task.data_file, self.settings.root_dir, task.config.get("data_path"))
        self._check_capacity()
        self._check_output_dir(task.output_dir, task.config.get("output_path"), False, resuming=task)

    # ------------------------------------------------------------------ delete, shutdown
    async def delete(self, task_id: str) -> Task:
        """Forget an ended task (its files stay); a resume in progress is cancelled first."""
        task = self.get(task_id)
        async with task.lock:
            task.delete()
            self.tasks.pop(task_id, None)
            self.store.delete(task_id)
        self.feed.deleted(task_id)
        return task

    async def shutdown(self) -> None:
        """Record every live task as interrupted (so a later server lists it as resumable), then
        stop the workers (each saves its artifacts if it can) and kill those that do not stop."""
        self._closing = True
        live = self.live()
        for task in live:
            if task.task_id in self.tasks:
                doing = "resuming from its checkpoint" if task.phase == lc.RELAUNCHING else task.state
                task.interrupt(f"the Jupyter server shut down while the task was {doing} (after epoch "
                               f"{task.progress['current_epoch']} of {task.progress['total_epochs']}); "
                               f"{task.restart_hint()}")
        for task in live:
            if task.gen is not None:
                task.gen.close_input()
        deadline = time.monotonic() + self.settings.shutdown_timeout
        for task in live:
            if not await task.wait_exit(max(0.0, deadline - time.monotonic())) and task.gen is not None:
                task.gen.kill(f"the Jupyter server shut down and the worker did not stop within "
                              f"{self.settings.shutdown_timeout:g} s")
                await task.wait_exit(2.0)
        for task in live:
            task.save()         # with the epochs its run finished while it stopped
        self.feed.close()
        await asyncio.to_thread(self.store.close)
