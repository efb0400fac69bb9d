"""Changing a live task's settings: ``POST update/{task_id}`` with a JSON object of the fields to
change (``trainer.steering.CHANGEABLE``).

The worker's run checks the change with the same schema as at start and applies it between two
batches; its ``config_change`` event reaches the task before the reply (one pipe, in order), so
the answer's progress already holds it. A refused change changes nothing.
"""
from __future__ import annotations

import asyncio
from typing import Any

from trainer.checkpoints import CheckpointError, saved_config
from trainer.steering import CHANGEABLE, changeable_text

from .errors import BadRequest, Conflict, WorkerProblem
from .generation import WorkerGone
from .tasks import Task


def check_body(body: Any) -> dict[str, Any]:
    """The fields to change; 400 for a body that is not a non-empty JSON object."""
    if not isinstance(body, dict) or not body:
        what = "an empty object" if isinstance(body, dict) else f"JSON {type(body).__name__}"
        message = (f"send the fields to change as a JSON object (got {what}), e.g. {{\"learning_rate\": 0.001}}; "
                   f"fields that can change: {changeable_text()}")
        raise BadRequest(message, [{"field": "<changes>", "value": None, "message": message}])
    return body


async def update(task: Task, body: Any, timeout: float) -> dict[str, Any]:
    """Apply ``body``'s changes to ``task``'s run; returns the ``config_change`` event's data.
    BadRequest (400) names a field that cannot change or a bad value; Conflict (409) when the task
    is not running or paused; WorkerProblem (504) when the worker does not answer in time."""
    changes = check_body(body)
    async with task.lock:
        task.check("update")
        gen = task.gen
        assert gen is not None
        try:
            reply_future = gen.request("update", changes=changes)
        except WorkerGone:
            raise Conflict(f"cannot update: the task has already ended ({task.state})") from None
    try:
        reply = await asyncio.wait_for(reply_future, timeout)
    except asyncio.TimeoutError:
        raise WorkerProblem(f"the worker did not answer the update within {timeout:g} s; it may be hung: "
                            f"POST stop/{task.task_id} ends it", status=504) from None
    except WorkerGone:
        await gen.wait_exit(5.0)
        raise Conflict(f"cannot update: the task has already ended ({task.state})") from None
    if reply.get("ok"):
        return dict(reply["event"])
    message = reply.get("message") or "the change was refused"
    if reply.get("errors") is not None:
        raise BadRequest(message, reply["errors"])
    if reply.get("conflict"):
        raise Conflict(message)
    raise WorkerProblem(message)


def settings_at_checkpoint(task: Task) -> dict[str, Any]:
    """The steerable settings of the run in ``task``'s newest checkpoint: a resume goes back to
    that checkpoint, so to the settings it had then (a change made after it is undone, like the
    batches trained after it). Empty when there is no readable checkpoint (the worker says why)."""
    if task.output_dir is None:
        return {}
    try:
        saved = saved_config(task.output_dir)
    except (CheckpointError, OSError, ValueError, KeyError):
        return {}
    return {name: saved[name] for name in CHANGEABLE if name in saved}
