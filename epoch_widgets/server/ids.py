"""Task ids of the form ``epoch_training_YYYYMMDD_HHMMSS`` (sweeps: ``sweep_YYYYMMDD_HHMMSS``) that never collide."""
from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Callable, Iterable, Optional

PREFIX = "epoch_training_"
# A second start within the same second gets a numeric suffix (_2, _3, ...), keeping the prefix form.
TASK_ID_RE = re.compile(r"^epoch_training_\d{8}_\d{6}(?:_[1-9]\d*)?$")
SWEEP_PREFIX = "sweep_"
SWEEP_ID_RE = re.compile(r"^sweep_\d{8}_\d{6}(?:_[1-9]\d*)?$")


def is_task_id(text: str) -> bool:
    """Whether ``text`` has the form of an id this server hands out (safe to use as a file name)."""
    return bool(TASK_ID_RE.match(text))


def is_sweep_id(text: str) -> bool:
    """Whether ``text`` has the form of a sweep id (safe to use as a folder name)."""
    return bool(SWEEP_ID_RE.match(text))


class TaskIdAllocator:
    """Hands out unique ids; ``taken`` seeds it with ids already used (e.g. persisted tasks)."""

    def __init__(self, taken: Iterable[str] = (), clock: Optional[Callable[[], datetime]] = None,
                 prefix: str = PREFIX):
        self._prefix = prefix
        self._taken = set(taken)
        self._clock = clock or datetime.now
        self._lock = threading.Lock()

    def allocate(self) -> str:
        base = self._prefix + self._clock().strftime("%Y%m%d_%H%M%S")
        with self._lock:
            candidate, n = base, 1
            while candidate in self._taken:
                n += 1
                candidate = f"{base}_{n}"
            self._taken.add(candidate)
            return candidate

    def release(self, task_id: str) -> None:
        """Give back an id whose task never started (a refused request leaves no trace)."""
        with self._lock:
            self._taken.discard(task_id)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._taken
