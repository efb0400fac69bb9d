"""The base of every handler of the API: authentication, authorization, strict-JSON answers and
errors, and log lines that never show the token."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import tornado.web
from jupyter_server.base.handlers import APIHandler

from .errors import ApiProblem
from .jsonio import dumps, parse_body
from .registry import TaskRegistry

try:   # jupyter_server's own scrubbing, so the API's log lines hide what its access log hides
    from jupyter_server.log import _scrub_uri as scrub_uri
except ImportError:  # pragma: no cover - a future jupyter_server without it
    def scrub_uri(uri: str, extra_param_keys: Any = None) -> str:
        path, sep, query = uri.partition("?")
        return path + (sep + "[secret]" if query else "")

TASK_ID = r"(?P<task_id>[^/]+)"
# What a deployment's Jupyter Authorizer is asked about: action 'read' for GET requests (tasks,
# progress, history, streams, evaluation, the OpenAPI document), 'write' for the rest (start,
# pause, resume, stop, delete).
AUTH_RESOURCE = "epoch_training"


# Bodies up to this size are parsed on the event loop; larger ones in a thread, so that reading one
# never holds up the other clients' requests.
INLINE_PARSE_BYTES = 16 * 1024
app_log = logging.getLogger("tornado.application")


class TrainingHandler(APIHandler):
    """Common parts: the registry, JSON replies and JSON errors."""

    registry: TaskRegistry
    auth_resource = AUTH_RESOURCE   # read by jupyter_server's @authorized

    def initialize(self, registry: TaskRegistry) -> None:
        self.registry = registry
        self.redactor = registry.redactor

    def dumps(self, obj: Any) -> str:
        return dumps(obj, self.redactor.text)

    def reply(self, payload: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(self.dumps({"success": True, **payload}))

    def _request_summary(self) -> str:
        # tornado's version shows request.uri, and with it a ?token=... query string.
        return f"{self.request.method} {scrub_uri(self.request.uri or '')} ({self.request.remote_ip})"

    def log_exception(self, typ: Any, value: Optional[BaseException], tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)      # through _request_summary above
        else:   # tornado would also log repr(self.request), which holds the full URI
            app_log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.clear_header("Content-Disposition")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any] = {"success": False}
        if isinstance(exc, ApiProblem):
            body["message"] = exc.message
            if exc.errors:
                body["errors"] = exc.errors
        elif status_code == 403 and isinstance(exc, tornado.web.HTTPError) and AUTH_RESOURCE in (exc.log_message or ""):
            # @authorized's refusal: the token was fine, the server's Authorizer said no.
            body["message"] = (f"{self._reason}: {exc.log_message} This server's Authorizer decides what each "
                               f"user may do ('read' for GET requests, 'write' for the others)")
        elif status_code in (401, 403):
            detail = exc.log_message if isinstance(exc, tornado.web.HTTPError) and exc.log_message else ""
            body["message"] = (f"{self._reason}{f' ({detail})' if detail else ''}: this API needs the Jupyter "
                               f"server's token, sent as 'Authorization: Bearer <token>' (or 'token <token>')")
        elif isinstance(exc, tornado.web.HTTPError):
            body["message"] = exc.log_message or self._reason
        else:
            body["message"] = f"internal server error: {type(exc).__name__}: {exc}" if exc else self._reason
        self.finish(self.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        # The registry's refusals become their HTTP status with the JSON body above.
        if isinstance(e, ApiProblem):
            if self._finished:
                return
            self.log.info("%s -> %s: %s", self._request_summary(), e.status, self.redactor.text(e.message))
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    async def json_body(self) -> Any:
        """The request body as checked JSON (413 when over the size limit, 400 when not JSON)."""
        raw = self.request.body
        if len(raw) <= INLINE_PARSE_BYTES:
            return parse_body(raw)
        return await asyncio.to_thread(parse_body, raw)
