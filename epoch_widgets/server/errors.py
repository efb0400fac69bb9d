"""Errors the task registry raises; the handlers turn each into an HTTP status and a JSON body."""
from __future__ import annotations

from typing import Any, Optional


class ApiProblem(Exception):
    """A request the API refuses: ``status`` is the HTTP status, ``message`` says what to do."""

    status = 500

    def __init__(self, message: str, errors: Optional[list[dict[str, Any]]] = None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class BadRequest(ApiProblem):
    """Invalid config, data or paths (400); ``errors`` lists each problem as field/value/message."""

    status = 400


class BodyTooLarge(ApiProblem):
    """A request body over the API's size limit (413)."""

    status = 413


class TaskNotFound(ApiProblem):
    status = 404


class Conflict(ApiProblem):
    """An action the task's state does not allow (409)."""

    status = 409


class Gone(ApiProblem):
    """What the task made is no longer there: another task's run replaced it (410)."""

    status = 410


class TooManyTasks(ApiProblem):
    status = 429


class WorkerProblem(ApiProblem):
    """The worker process failed to start or answer (500, or 504 when it did not answer in time)."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status
