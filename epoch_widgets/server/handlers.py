"""HTTP handlers of the epoch-training API (docs/api.md), under ``<base_url>/api/v1/epoch-training/``.

Every handler requires Jupyter's authentication (``Authorization: Bearer <token>``, ``token <token>``
or ``?token=`` for EventSource clients) and the server's ``Authorizer`` (resource ``epoch_training``:
``read`` for GET, ``write`` for the rest), and answers errors as ``{"success": false, "message": ...}``.
Answers are standard JSON and never show the server's own absolute paths; logged URLs never show
the token.
"""
from __future__ import annotations

from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from .base_handler import TASK_ID, TrainingHandler
from .evaluation import EvaluationHandler
from .jsonio import dumps
from .openapi import openapi_document
from .sweep_handlers import sweep_handlers
from .registry import TaskRegistry
from .sse import StreamHandler, TasksStreamHandler
from .steering import update
from .urls import API_PREFIX

class StartHandler(TrainingHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        task, ready = await self.registry.start(await self.json_body())
        self.reply({"task_id": task.task_id, "message": "Epoch training started", "config": task.config,
                    "output_dir": self.registry.shown_output_dir(task),
                    "samples": task.samples, "data_task": ready.get("task"), "parameters": ready.get("parameters")})


class ProgressHandler(TrainingHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        self.reply({"task_id": task_id, "progress": task.progress_snapshot()})


class HistoryHandler(TrainingHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        self.reply({"task_id": task_id, "history": task.history,
                    "config_changes": task.progress["config_changes"]})


class ControlHandler(TrainingHandler):
    """POST pause/{id}, resume/{id}, stop/{id}: effective within one batch."""

    def initialize(self, registry: TaskRegistry, action: str = "pause") -> None:  # type: ignore[override]
        super().initialize(registry)
        self.action = action

    @tornado.web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        note = None
        if self.action == "resume":     # also continues an ended task from its last checkpoint
            task, state, note = await self.registry.resume(task_id)
        else:
            task, state = await self.registry.control(task_id, self.action)
        done = {"pause": "paused", "resume": "running"}.get(self.action)
        if note is not None:
            message = note
        elif self.action == "stop":
            if not task.done:
                message = "Stop requested; the run is finishing"
            else:
                message = "Training stopped" if task.state == "stopped" else f"Training ended ({task.state})"
        elif state == done:
            message = f"Training {'paused' if self.action == 'pause' else 'resumed'}"
        else:
            message = f"{self.action.capitalize()} requested; the run is {state}"
        self.reply({"task_id": task_id, "message": message, "training_state": task.state,
                    "progress": task.progress_snapshot()})


class UpdateHandler(TrainingHandler):
    """POST update/{id}: change settings of a running or paused task (the body: the fields)."""

    @tornado.web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        body = await self.json_body()
        change = await update(task, body, self.registry.settings.command_timeout)
        fields = ", ".join(change["changes"]) or "nothing (every value was already the run's)"
        self.reply({"task_id": task_id, "message": f"Changed {fields} in epoch {change['epoch']}",
                    "change": change, "training_state": task.state, "progress": task.progress_snapshot()})


class TasksHandler(TrainingHandler):
    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        # ?state=completed,failed (or state repeated) and ?name=<part of the name>
        self.reply({"tasks": self.registry.list(self.get_query_arguments("state"), self.get_query_argument("name", None),
                                                self.get_query_argument("sweep_id", None))})


class TaskHandler(TrainingHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        self.reply({"task_id": task_id, "task": {**task.details(self.registry.shown_output_dir(task)),
                                                 "replaced_by": self.registry.replaced_by(task)}})

    @tornado.web.authenticated
    @authorized
    async def delete(self, task_id: str) -> None:
        await self.registry.delete(task_id)
        self.reply({"task_id": task_id, "message": "Task deleted (its model files are kept)"})


class OpenApiHandler(TrainingHandler):
    """The API's OpenAPI 3.1 document (authenticated like every endpoint)."""

    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        base_url = self.settings.get("base_url", "/")
        self.finish(dumps(openapi_document(f"{base_url.rstrip('/')}/{API_PREFIX}")))


def handlers(registry: TaskRegistry, sweeps: Any = None) -> list[tuple[str, type, dict[str, Any]]]:
    """URL patterns relative to the server's base_url (ExtensionApp joins them with it); with
    ``sweeps`` (a ``sweeps.SweepRegistry``) the sweep endpoints too."""
    kw = {"registry": registry}
    return [*(sweep_handlers(registry, sweeps) if sweeps is not None else []),
        (f"/{API_PREFIX}/openapi.json", OpenApiHandler, kw),
        (f"/{API_PREFIX}/start", StartHandler, kw),
        (f"/{API_PREFIX}/progress/{TASK_ID}", ProgressHandler, kw),
        (f"/{API_PREFIX}/history/{TASK_ID}", HistoryHandler, kw),
        (f"/{API_PREFIX}/stream-progress/{TASK_ID}", StreamHandler, kw),
        (f"/{API_PREFIX}/stream-tasks", TasksStreamHandler, kw),
        (f"/{API_PREFIX}/pause/{TASK_ID}", ControlHandler, {**kw, "action": "pause"}),
        (f"/{API_PREFIX}/resume/{TASK_ID}", ControlHandler, {**kw, "action": "resume"}),
        (f"/{API_PREFIX}/stop/{TASK_ID}", ControlHandler, {**kw, "action": "stop"}),
        (f"/{API_PREFIX}/update/{TASK_ID}", UpdateHandler, kw),
        (f"/{API_PREFIX}/tasks", TasksHandler, kw),
        (f"/{API_PREFIX}/tasks/{TASK_ID}", TaskHandler, kw),
        (f"/{API_PREFIX}/evaluation/{TASK_ID}", EvaluationHandler, kw),
    ]
