"""HTTP handlers of the epoch-training API (SPEC.md), under ``<base_url>/api/v1/epoch-training/``.

Every handler requires Jupyter's authentication (``Authorization: Bearer <token>`` or
``token <token>``) and answers errors as ``{"success": false, "message": ...}``.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

import tornado.web
from jupyter_server.base.handlers import APIHandler
from tornado.iostream import StreamClosedError

from . import API_PREFIX
from .errors import ApiProblem, BadRequest
from .registry import TaskRegistry

TASK_ID = r"(?P<task_id>[^/]+)"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


class TrainingHandler(APIHandler):
    """Common parts: the registry, JSON replies and JSON errors."""

    registry: TaskRegistry

    def initialize(self, registry: TaskRegistry) -> None:
        self.registry = registry

    def reply(self, payload: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(_dumps({"success": True, **payload}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.clear_header("Content-Disposition")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any] = {"success": False}
        if isinstance(exc, ApiProblem):
            body["message"] = exc.message
            if exc.errors:
                body["errors"] = exc.errors
        elif status_code in (401, 403):
            detail = exc.log_message if isinstance(exc, tornado.web.HTTPError) and exc.log_message else ""
            body["message"] = (f"{self._reason}{f' ({detail})' if detail else ''}: this API needs the Jupyter "
                               f"server's token, sent as 'Authorization: Bearer <token>' (or 'token <token>')")
        elif isinstance(exc, tornado.web.HTTPError):
            body["message"] = exc.log_message or self._reason
        else:
            body["message"] = f"internal server error: {type(exc).__name__}: {exc}" if exc else self._reason
        self.finish(_dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        # The registry's refusals become their HTTP status with the JSON body above.
        if isinstance(e, ApiProblem):
            if self._finished:
                return
            self.log.info("%s %s -> %s: %s", self.request.method, self.request.uri, e.status, e.message)
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def json_body(self) -> Any:
        raw = self.request.body
        if not raw or not raw.strip():
            raise BadRequest("the request body is empty; send the training config as a JSON object",
                             [{"field": "<config>", "value": None, "message": "empty request body"}])
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}",
                             [{"field": "<config>", "value": None, "message": f"not valid JSON: {exc}"}]) from None


class StartHandler(TrainingHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        task, ready = await self.registry.start(self.json_body())
        self.reply({"task_id": task.task_id, "message": "Epoch training started", "config": task.config,
                    "output_dir": str(task.output_dir) if task.output_dir else None,
                    "samples": task.samples, "data_task": ready.get("task")})


class ProgressHandler(TrainingHandler):
    @tornado.web.authenticated
    def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        self.reply({"task_id": task_id, "progress": task.progress_snapshot()})


class HistoryHandler(TrainingHandler):
    @tornado.web.authenticated
    def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        self.reply({"task_id": task_id, "history": task.history})


class ControlHandler(TrainingHandler):
    """POST pause/{id}, resume/{id}, stop/{id}: effective within one batch."""

    def initialize(self, registry: TaskRegistry, action: str = "pause") -> None:  # type: ignore[override]
        super().initialize(registry)
        self.action = action

    @tornado.web.authenticated
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


class TasksHandler(TrainingHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply({"tasks": self.registry.list()})


class TaskHandler(TrainingHandler):
    @tornado.web.authenticated
    def get(self, task_id: str) -> None:
        self.reply({"task_id": task_id, "task": self.registry.get(task_id).details()})

    @tornado.web.authenticated
    def delete(self, task_id: str) -> None:
        self.registry.delete(task_id)
        self.reply({"task_id": task_id, "message": "Task deleted (its model files are kept)"})


class StreamHandler(TrainingHandler):
    """Server-Sent Events: ``data: <json>`` per epoch (``progress``) and per state change
    (``state``), then ``complete`` or ``error``; a ``: keepalive`` comment when idle."""

    _subscription: Optional[Any] = None

    @tornado.web.authenticated
    async def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")   # no proxy buffering in front of Jupyter
        sub = self._subscription = task.subscribe()
        keepalive = self.registry.settings.keepalive_interval
        try:
            await self.flush()     # headers out now, so the client sees the stream open
            while True:
                try:
                    event = await sub.get(keepalive)
                except asyncio.TimeoutError:
                    self.write(": keepalive\n\n")
                    await self.flush()
                    continue
                if event is None:
                    break
                self.write(f"data: {_dumps(event)}\n\n")
                await self.flush()
                if event["type"] in ("complete", "error"):
                    break
        except StreamClosedError:
            pass
        finally:
            sub.close()

    def on_connection_close(self) -> None:
        # Unsubscribe as soon as the client goes, not at the next event or keepalive.
        if self._subscription is not None:
            self._subscription.close()
        super().on_connection_close()


def handlers(registry: TaskRegistry) -> list[tuple[str, type, dict[str, Any]]]:
    """URL patterns relative to the server's base_url (ExtensionApp joins them with it)."""
    from .evaluation import EvaluationHandler    # its own module; it builds on TrainingHandler above

    kw = {"registry": registry}
    return [
        (f"/{API_PREFIX}/start", StartHandler, kw),
        (f"/{API_PREFIX}/progress/{TASK_ID}", ProgressHandler, kw),
        (f"/{API_PREFIX}/history/{TASK_ID}", HistoryHandler, kw),
        (f"/{API_PREFIX}/stream-progress/{TASK_ID}", StreamHandler, kw),
        (f"/{API_PREFIX}/pause/{TASK_ID}", ControlHandler, {**kw, "action": "pause"}),
        (f"/{API_PREFIX}/resume/{TASK_ID}", ControlHandler, {**kw, "action": "resume"}),
        (f"/{API_PREFIX}/stop/{TASK_ID}", ControlHandler, {**kw, "action": "stop"}),
        (f"/{API_PREFIX}/tasks", TasksHandler, kw),
        (f"/{API_PREFIX}/tasks/{TASK_ID}", TaskHandler, kw),
        (f"/{API_PREFIX}/evaluation/{TASK_ID}", EvaluationHandler, kw),
    ]
