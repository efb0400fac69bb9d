"""``GET evaluation/{task_id}``: the figures a finished task's run wrote to ``evaluation.json``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import tornado.web

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
    path = task.output_dir / FILE_NAME
    try:
        text = _read_no_symlink(path)
    except FileNotFoundError:
        raise Conflict(f"task {task.task_id} ({task.state}) has no evaluation: {_why_missing(task)}") from None
    except OSError as exc:
        raise Conflict(_unreadable(task, "it is a symbolic link, which the server does not follow"
                                   if path.is_symlink() else f"{exc.strerror or exc}")) from None
    try:
        evaluation = json.loads(text)
    except ValueError as exc:
        raise Conflict(_unreadable(task, f"it is not JSON ({exc})")) from None
    if not isinstance(evaluation, dict):
        raise Conflict(_unreadable(task, f"it holds a JSON {type(evaluation).__name__}, not an object"))
    return evaluation


def _read_no_symlink(path: Path) -> str:
    # O_NOFOLLOW: a link planted in the run's folder must not expose a file outside it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        return f.read()


def _unreadable(task: Task, why: str) -> str:
    return (f"task {task.task_id}'s evaluation is unreadable: {FILE_NAME} in its output folder is not the file "
            f"its run wrote ({why}); start the run again to write a new one")


def _why_missing(task: Task) -> str:
    assert task.output_dir is not None
    try:
        note = json.loads((task.output_dir / "metadata.json").read_text()).get("evaluation") or {}
    except (OSError, ValueError):
        return "its run wrote no artifacts (it ended before saving them)"
    if note.get("skipped"):
        return note["skipped"]
    if note.get("error"):
        return f"evaluating it failed ({note['error']})"
    return "its run saved none"


class EvaluationHandler(TrainingHandler):
    @tornado.web.authenticated
    def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        self.reply({"task_id": task_id, "evaluation": read_evaluation(task)})
