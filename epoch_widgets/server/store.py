"""Task records on disk: one JSON file per task, written by a background thread.

The event loop only hands over a snapshot; the thread writes the newest snapshot of each task
atomically (trainer.atomic), so a burst of epochs costs one write and a crash never leaves half
a file.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Optional

from trainer.atomic import atomic_write_json

from .ids import is_task_id

log = logging.getLogger("epoch_widgets.server")


class TaskStore:
    """Persists task records (config, state, history, errors) under ``directory``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pending: dict[str, Optional[dict[str, Any]]] = {}   # None: delete
        self._cond = threading.Condition()
        self._writing = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="epoch-widgets-store", daemon=True)
        self._thread.start()

    def path(self, task_id: str) -> Path:
        if not is_task_id(task_id):   # ids come from the allocator; never a path from a request
            raise ValueError(f"not a task id: {task_id!r}")
        return self.directory / f"{task_id}.json"

    def load_all(self) -> list[dict[str, Any]]:
        """Every readable record; a damaged file is logged and skipped, never fatal."""
        records = []
        for file in sorted(self.directory.glob("epoch_training_*.json")):
            if not is_task_id(file.stem):
                continue
            try:
                record = json.loads(file.read_text())
                if not isinstance(record, dict) or record.get("task_id") != file.stem:
                    raise ValueError("not a task record")
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable task record %s: %s", file, exc)
                continue
            records.append(record)
        return records

    def save(self, record: dict[str, Any]) -> None:
        """Queue ``record`` (a snapshot the caller no longer mutates) for writing."""
        self.path(record["task_id"])
        with self._cond:
            self._pending[record["task_id"]] = record
            self._cond.notify_all()

    def delete(self, task_id: str) -> None:
        self.path(task_id)
        with self._cond:
            self._pending[task_id] = None
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is on disk."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._writing, timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed and not self._pending:
                    return
                task_id, record = self._pending.popitem()
                self._writing += 1
            try:
                path = self.path(task_id)
                if record is None:
                    path.unlink(missing_ok=True)
                else:
                    atomic_write_json(path, record)
            except Exception:
                log.exception("could not write the record of task %s", task_id)
            finally:
                with self._cond:
                    self._writing -= 1
                    self._cond.notify_all()
