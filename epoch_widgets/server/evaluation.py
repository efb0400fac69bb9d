"""``GET evaluation/{task_id}``: the figures a finished task's run wrote to ``evaluation.json``."""
from __future__ import annotations

import json
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from trainer.confined import ConfinementError, open_confined

from .errors import Conflict
from .base_handler import TrainingHandler
from .tasks import Task

FILE_NAME = "evaluation.json"    # trainer.evaluation.FILE_NAME, without importing the trainer here


def read_evaluation(task: Task) -> dict[str, Any]:
    """The task's ``evaluation.json``; Conflict (409) saying why when there is none to give."""
    if not task.done:
        raise Conflict(f"task {task.task_id} is still {task.state}; its evaluation is written when the run ends "
                       f"(stream-progress/{task.task_id} says when)")
    if task.output_dir is None:
        raise Conflict(f"task {task.task_id} was started without output_path, so nothing of it was saved; "
                       f"start it with an output_path to get its evaluation")
    try:
        evaluation = _read_json(task, FILE_NAME)
    except FileNotFoundError:
        raise Conflict(f"task {task.task_id} ({task.state}) has no evaluation: {_why_missing(task)}") from None
    except ConfinementError as exc:
        # A link, a folder or any other non-file where the run wrote its evaluation.
        raise Conflict(_unreadable(task, f"{exc}; the server does not follow symbolic links")) from None
    except OSError as exc:
        raise Conflict(_unreadable(task, f"{exc.strerror or exc}")) from None
    except ValueError as exc:
        raise Conflict(_unreadable(task, f"it is not JSON ({exc})")) from None
    if not isinstance(evaluation, dict):
        raise Conflict(_unreadable(task, f"it holds a JSON {type(evaluation).__name__}, not an object"))
    return evaluation


def _read_json(task: Task, name: str) -> Any:
    """A file of the task's output folder, opened without following links (the folder's files
    may have been swapped for links since the run wrote them)."""
    assert task.output_dir is not None
    with open_confined(task.settings.models_dir, task.output_dir / name) as fh:
        return json.loads(fh.read())


def _unreadable(task: Task, why: str) -> str:
    return (f"task {task.task_id}'s evaluation is unreadable: {FILE_NAME} in its output folder is not the file "
            f"its run wrote ({why}); start the run again to write a new one")


def _why_missing(task: Task) -> str:
    assert task.output_dir is not None
    try:
        note = _read_json(task, "metadata.json").get("evaluation") or {}
    except (OSError, ValueError, AttributeError):
        return "its run wrote no artifacts (it ended before saving them)"
    if note.get("skipped"):
        return note["skipped"]
    if note.get("error"):
        return f"evaluating it failed ({note['error']})"
    return "its run saved none"


class EvaluationHandler(TrainingHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        if task.done:
            self.registry.check_not_replaced(task, "evaluation")
        self.reply({"task_id": task_id, "evaluation": read_evaluation(task)})
