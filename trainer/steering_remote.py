"""The driver's end of steering a run whose batches are computed elsewhere: the ranks of a
multi-process run (``trainer.distributed.launcher``) or a Ray actor (``trainer.ray_executor``).

``run.update(**changes)`` numbers the checked change, hands it to the far end and waits for its
answer: the applied ``config_change`` event, or a refusal. As with a run in this process, on the
event loop that follows the run it cannot wait without holding that loop up, so there it returns
``{"changes", "pending": True}`` and the event follows.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, Optional

from .config import ConfigError, TrainingConfig
from .state import StateError
from .steering_loop import UPDATE_WAIT


class RemoteSteering:
    """Numbered changes waiting for the far end's answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, concurrent.futures.Future] = {}
        self._closed: Optional[str] = None

    def post(self, config: TrainingConfig, changes: dict[str, Any], send: Callable[[], int],
             on_loop: bool) -> dict[str, Any]:
        """``send()`` ``changes`` to the far end (under this lock, so they go in order), which
        returns the number its answer will carry; return the applied event's data (see the module
        docstring; ``on_loop``: the caller runs on the loop following the run)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise StateError(f"cannot update: {self._closed}")
            seq = send()
            self._waiting[seq] = future
        if on_loop:
            return {"changes": {k: {"old": getattr(config, k), "new": v} for k, v in changes.items()}, "pending": True}
        try:
            return future.result(UPDATE_WAIT)
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._waiting.pop(seq, None)
            raise StateError(f"cannot update: no answer within {UPDATE_WAIT:g} s from where the run trains; the "
                             f"change may still apply (see run.config_changes)") from None

    def answer(self, seq: int, event: Optional[dict[str, Any]] = None, *, message: str = "",
               errors: Optional[list[dict[str, Any]]] = None) -> None:
        """The far end's answer to change ``seq``: its event, or a refusal (with ``errors``: a bad
        change, ConfigError; without: StateError)."""
        with self._lock:
            future = self._waiting.pop(seq, None)
        if future is None or future.done():
            return
        if event is not None:
            future.set_result(event)
        elif errors:
            future.set_exception(ConfigError(errors))
        else:
            future.set_exception(StateError(f"cannot update: {message}"))

    def close(self, reason: str) -> None:
        """The run has ended: refuse new changes, and whoever still waits hears ``reason``."""
        with self._lock:
            self._closed, waiting = reason, self._waiting
            self._waiting = {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(StateError(f"cannot update: {reason}"))
