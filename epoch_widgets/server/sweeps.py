"""The server's sweeps: start one (``trainer.sweep`` with the server's own launcher), follow it,
control it, stream its events, and read back the sweeps of earlier server lives.

A sweep keeps its trials in ``<models_dir>/sweeps/<sweep_id>/`` (``trial-<n>/`` each, the Optuna
study in ``study.db``, and this server's note of it in ``.epoch_widgets_sweep.json``): the server
chooses the folder, never the request. Each trial trains as a task of the registry
(``trial_tasks.py``), so ``GET tasks`` lists it with its ``sweep_id`` and every task endpoint
works on it. The sweep's own threads report through its callbacks; they are handed to the
server's event loop here, where the stream clients are.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

import trainer
from trainer import ConfigError, StateError
from trainer.atomic import atomic_write_json
from trainer.data.values import values_hidden
from trainer.sweep.study import STUDY_FILE
from trainer.data.tables import read_table

from .errors import BadRequest, Conflict, TaskNotFound, TooManyTasks, WorkerProblem
from .ids import SWEEP_PREFIX, TaskIdAllocator, is_sweep_id
from .paths import resolve_data_path, shown_output_dir
from .registry import TaskRegistry
from .subscriptions import Subscription
from .sweep_requests import OPTIONS, parse_sweep_request
from .tasks import _iso
from .trial_tasks import TaskLauncher, TaskRun

log = logging.getLogger("epoch_widgets.server")

NOTE_FILE = ".epoch_widgets_sweep.json"
FOLLOW_WAIT = 5.0      # seconds a trial's run may lag behind its task's state


class ServerSweep:
    """One sweep of this server: its handle (live, or loaded from its folder) and its stream clients."""

    def __init__(self, sweep_id: str, folder: Path, note: dict[str, Any], handle: Any = None):
        self.sweep_id, self.folder, self.note = sweep_id, folder, note
        self.handle = handle
        self.runs_here = handle is not None       # started by this server life (not read back)
        self.subscribers: set[Subscription] = set()

    @property
    def live(self) -> bool:
        return self.runs_here and not self.handle.done

    def loaded(self) -> Any:
        """The handle; a sweep of an earlier server life is read from its folder (once)."""
        if self.handle is None:
            try:
                self.handle = trainer.Sweep.load(self.folder)
            except Exception as exc:      # a damaged study.db: said, never a 500
                raise Conflict(f"sweep {self.sweep_id}: its study cannot be read ({type(exc).__name__}: {exc})") from None
        return self.handle

    def publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.put(event)


class SweepRegistry:
    """The sweeps of a server, beside its task registry (see the module docstring)."""

    def __init__(self, registry: TaskRegistry):
        self.registry = registry
        self.root = registry.settings.models_dir / "sweeps"
        self.sweeps: dict[str, ServerSweep] = {}
        for folder in sorted(self.root.glob("sweep_*")) if self.root.is_dir() else ():
            note = _read_note(folder)
            if is_sweep_id(folder.name) and note is not None and (folder / STUDY_FILE).is_file():
                self.sweeps[folder.name] = ServerSweep(folder.name, folder, note)
        # Every folder there is taken, a sweep's or not: a new sweep starts in a folder of its own.
        taken = [p.name for p in self.root.iterdir()] if self.root.is_dir() else []
        self.ids = TaskIdAllocator(taken=taken, prefix=SWEEP_PREFIX)
        registry.trial_control = self.control_trial

    def get(self, sweep_id: str) -> ServerSweep:
        found = self.sweeps.get(sweep_id)
        if found is None:
            raise TaskNotFound(f"no sweep {sweep_id!r}; GET sweeps lists the known ones")
        return found

    # ------------------------------------------------------------------ start
    async def start(self, body: Any) -> ServerSweep:
        """Check ``body``, start the sweep in a new folder of the server's, and return it once its
        study exists; a refused request leaves no folder and no task behind."""
        self._check_open()
        request = parse_sweep_request(body, self.registry.settings.max_running_tasks)
        sweep_id = self.ids.allocate()
        try:
            handle = await self._begin(sweep_id, request.config, request.space, request.options, resume=False)
        except BaseException:
            self.ids.release(sweep_id)
            raise
        note = {"sweep_id": sweep_id, "created_at": time.time(), "space": request.space_json, **request.options}
        atomic_write_json(self.root / sweep_id / NOTE_FILE, note)
        entry = ServerSweep(sweep_id, self.root / sweep_id, note, handle)
        self.sweeps[sweep_id] = entry
        return entry

    async def _begin(self, sweep_id: str, config: Any, space: dict[str, Any], options: dict[str, Any],
                     resume: bool) -> Any:
        """``trainer.sweep`` in the sweep's folder, its trials this server's tasks."""
        settings = self.registry.settings
        data_file = resolve_data_path(config.data_path, settings.root_dir)
        free = settings.max_running_tasks - len(self.registry.live())
        if options["parallel"] > free:
            raise TooManyTasks(f"parallel: {options['parallel']} trials at once would exceed the server's "
                               f"max_running_tasks ({settings.max_running_tasks}, {free} free now); ask for fewer, "
                               f"or wait for tasks to end")
        loop = asyncio.get_running_loop()
        launcher = TaskLauncher(self.registry, loop, sweep_id, data_file)

        def forward(_sweep: Any, event: str, data: dict[str, Any]) -> None:     # on the sweep's threads
            loop.call_soon_threadsafe(self._on_event, sweep_id, event, data)

        def begin() -> Any:
            # The data is read here only to check the config and metric against it (the trials'
            # workers read it themselves); answers name columns and counts, never values.
            with values_hidden():
                data = read_table(str(data_file), root=str(settings.root_dir))
                return trainer.sweep(config, data, space, output_path=self.root / sweep_id, launcher=launcher,
                                     resume=resume, callbacks=[forward], **options)
        try:
            return await asyncio.to_thread(begin)
        except ConfigError as exc:
            errors = [{**e, "field": _placed(e["field"], space)} for e in exc.errors]
            raise BadRequest(str(ConfigError(errors)), errors) from None
        except (OSError, ValueError) as exc:
            raise BadRequest(f"data_path: cannot read the data file: {type(exc).__name__}",
                             [{"field": "config.data_path", "value": config.data_path,
                               "message": f"cannot read it as a table ({type(exc).__name__})"}]) from None


    def _check_open(self) -> None:
        if self.registry._closing:
            raise WorkerProblem("the server is shutting down", status=503)

    async def resume(self, sweep_id: str) -> ServerSweep:
        """Continue a stopped or interrupted sweep from its folder: finished trials are kept, the
        interrupted ones continue from their checkpoints (as new tasks), then new trials start."""
        self._check_open()
        entry = self.get(sweep_id)
        stored = entry.loaded()
        if entry.live or stored.state not in ("stopped", "failed"):
            raise Conflict(f"cannot resume: the sweep is {stored.state}"
                           + ("; only a paused, stopped or interrupted sweep resumes" if not entry.live else ""))
        options = {k: entry.note.get(k, v) for k, v in OPTIONS.items()}
        handle = await self._begin(sweep_id, stored.config, stored.space, {**options, "direction": stored.direction},
                                   resume=True)
        entry.handle, entry.runs_here = handle, True
        return entry

    # ------------------------------------------------------------------ what clients see
    def describe(self, entry: ServerSweep) -> dict[str, Any]:
        """The sweep: state, settings, every trial (with its task) and the best trial so far."""
        handle = entry.loaded()
        tasks = self._trial_tasks(entry.sweep_id)
        trials = [{"number": t.number, "params": t.params, "state": t.state, "task_id": tasks.get(t.number),
                   "best_metric": t.best_metric, "epochs": t.epochs_done, "reason": t.reason}
                  for t in list(handle.trials)]
        best = handle.best_trial
        note = entry.note
        return {"sweep_id": entry.sweep_id, "state": handle.state, "reason": handle.reason, "metric": handle.metric,
                "direction": handle.direction, "trials_wanted": note.get("trials"), "parallel": note.get("parallel"),
                "sampler": note.get("sampler"), "pruner": note.get("pruner"), "space": note.get("space"),
                "output_dir": shown_output_dir(entry.folder, self.registry.settings.models_dir),
                "created_at": _iso(note.get("created_at")), "trials": trials,
                "best": None if best is None else {"trial": best.number, "task_id": tasks.get(best.number),
                                                   "params": best.params, "best_metric": best.best_metric},
                "best_config": None if best is None else self._shown_config(handle.best_config)}

    def summaries(self) -> list[dict[str, Any]]:
        out = []
        for sweep_id in sorted(self.sweeps):
            try:
                full = self.describe(self.sweeps[sweep_id])
            except Conflict as exc:      # an unreadable study: GET sweep/{id} says why
                log.warning("GET sweeps leaves out %s: %s", sweep_id, exc.message)
                continue
            out.append({k: full[k] for k in ("sweep_id", "state", "metric", "trials_wanted", "created_at",
                                             "output_dir", "best")} | {"trials": len(full["trials"])})
        return out

    def _shown_config(self, config: Any) -> dict[str, Any]:
        return {**config.to_saved_dict(), "output_path": None}

    def _trial_tasks(self, sweep_id: str) -> dict[int, str]:
        """Each trial's task (the latest, when a trial was resumed in a new task)."""
        found: dict[int, Any] = {}
        for task in self.registry.tasks.values():
            if task.sweep.get("sweep_id") == sweep_id and isinstance(task.sweep.get("trial"), int):
                n = task.sweep["trial"]
                if n not in found or task.created_at >= found[n].created_at:
                    found[n] = task
        return {n: task.task_id for n, task in found.items()}

    # ------------------------------------------------------------------ control
    async def control(self, sweep_id: str, action: str) -> ServerSweep:
        """Pause, resume or stop a running sweep (409 when its state does not allow it); resume
        also continues a stopped or interrupted one."""
        entry = self.get(sweep_id)
        if action == "resume" and not entry.live:
            return await self.resume(sweep_id)
        if not entry.live:
            state = entry.loaded().state
            raise Conflict(f"cannot {action}: the sweep has ended ({state})"
                           + ("; it ran in an earlier life of this server" if not entry.runs_here else ""))
        try:
            getattr(entry.handle, action)()
        except StateError as exc:
            raise Conflict(str(exc)) from None
        return entry

    async def control_trial(self, task: Any, action: str) -> Optional[str]:
        """A pause, resume or stop of a trial's task goes through its sweep, which then knows a
        stopped trial was the user's choice and not an interruption; returns the state the task
        reached, or None when the task is no running trial of a sweep running here."""
        entry = self.sweeps.get(task.sweep.get("sweep_id"))
        if entry is None or not entry.live:
            return None
        try:
            trial = entry.handle.trial(task.sweep.get("trial"))
        except ValueError:
            return None
        run = trial.run
        if not isinstance(run, TaskRun) or run.task is not task:
            return None
        async with task.lock:
            task.check(action)             # the task's own 404 and 409 answers
        # The trial's run hears the task's events a moment after the task (they cross to the
        # sweep's thread): it must have heard the state the request was checked against.
        deadline = time.monotonic() + FOLLOW_WAIT
        while run.state.value != task.state and task.state in ("running", "paused") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        try:
            getattr(entry.handle, f"{action}_trial")(trial.number)
        except StateError as exc:
            raise Conflict(str(exc)) from None
        request = run.last_request
        return await asyncio.wrap_future(request) if request is not None else task.state

    # ------------------------------------------------------------------ streams
    def subscribe(self, entry: ServerSweep) -> Subscription:
        """A stream client's queue, holding the sweep as it is now (and its end when it has ended)."""
        sub = Subscription(entry.subscribers.discard)
        sub.put({"type": "sweep", "sweep_id": entry.sweep_id, "sweep": self.describe(entry)})
        if not entry.live:
            sub.put(self._end_event(entry))
            sub.close()
        else:
            entry.subscribers.add(sub)
        return sub

    def _end_event(self, entry: ServerSweep) -> dict[str, Any]:
        return {"type": "sweep_end", "sweep_id": entry.sweep_id, "sweep": self.describe(entry)}

    def _on_event(self, sweep_id: str, event: str, data: dict[str, Any]) -> None:
        """A sweep callback, now on the server's loop: published to the stream clients (none can
        have subscribed before its start was answered)."""
        entry = self.sweeps.get(sweep_id)
        if entry is None:
            return
        if event == "sweep_end":
            entry.publish(self._end_event(entry))
            for sub in list(entry.subscribers):
                sub.close()
            return
        payload = {"type": event, "sweep_id": entry.sweep_id, **_jsonable(data)}
        if "number" in payload:
            payload["trial"] = payload.pop("number")
        payload.pop("path", None)          # the server's own folder: clients see output_dir
        if event == "trial_end":
            payload["task_id"] = self._trial_tasks(entry.sweep_id).get(payload["trial"])
        entry.publish(payload)

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self, timeout: float) -> None:
        """Stop the live sweeps (no new trial starts; their trials stay resumable) before the tasks stop."""
        live = [e for e in self.sweeps.values() if e.live]
        for entry in live:
            try:
                entry.handle.stop()
            except StateError:
                pass
        deadline = time.monotonic() + timeout
        for entry in live:
            await asyncio.to_thread(entry.handle.wait, max(0.0, deadline - time.monotonic()))


def _read_note(folder: Path) -> Optional[dict[str, Any]]:
    try:
        note = json.loads((folder / NOTE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _placed(name: str, space: dict[str, Any]) -> str:
    """A sweep error's field as the request placed it (``space.x`` for a field of the space)."""
    if name in space:
        return f"space.{name}"
    if name in ("trials", "parallel", "metric", "direction", "sampler", "pruner", "seed", "space", "data"):
        return "config.data_path" if name == "data" else name
    return f"config.{name}"


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))
