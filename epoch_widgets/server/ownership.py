"""Which task's run a models folder holds: the server writes the owning task's run id there.

A task that starts (not resumes) a run in its output folder claims the folder; a task started
later with ``"overwrite": true`` in the same folder claims it in turn. A task whose run id no
longer matches the folder's has been replaced: the files there are another run's, so the task
must not show them as its own (its history is its own record and stays).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from trainer.atomic import atomic_write_json
from trainer.confined import open_confined

log = logging.getLogger("epoch_widgets.server")

FILE_NAME = ".epoch_widgets_task.json"


def claim(folder: Path, task_id: str, run_id: str) -> None:
    """Record that ``folder`` now holds task ``task_id``'s run ``run_id`` (a failure is logged:
    the run itself is fine, only the replaced-task check loses its evidence)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)     # a run without checkpoints creates it only at its end
        atomic_write_json(folder / FILE_NAME, {"task_id": task_id, "run_id": run_id})
    except OSError as exc:
        log.warning("task %s: could not record its run in %s: %s", task_id, folder, exc)


def holder(folder: Path, models_dir: Path) -> Optional[dict[str, Any]]:
    """The claim in ``folder`` ({"task_id", "run_id"}); None when there is no readable one. Read
    without following links below ``models_dir``: a link planted there must not choose the answer."""
    try:
        with open_confined(models_dir, folder / FILE_NAME) as fh:
            found = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not (isinstance(found, dict) and isinstance(found.get("run_id"), str)
            and isinstance(found.get("task_id"), str)):
        return None
    return found
