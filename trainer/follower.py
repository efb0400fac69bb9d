"""Following a run: a copy of its state kept by applying its events, here or across a pipe.

The panel follows a run in the kernel; the HTTP API's task follows the run in its worker process
through ``event`` messages (``trainer.protocol``); the multi-process launcher follows rank 0 the
same way. All three hold a :class:`RunFollower`, so a run's state is rebuilt in one way only:
:meth:`trainer.state.RunState.apply`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from . import protocol
from .state import RunState, StateError

log = logging.getLogger("trainer")

Listener = Callable[[str, dict[str, Any]], None]


class RunFollower:
    """A :class:`RunState` kept in step with a run's events; listeners hear each event after it
    has been applied (so they read the new state)."""

    def __init__(self, state: RunState):
        self.state = state
        self._listeners: list[Listener] = []
        self._unsubscribe: Optional[Callable[[], None]] = None

    @classmethod
    def of(cls, run: Any) -> "RunFollower":
        """Follow ``run`` (a :class:`trainer.Trainer`) in this process, from its state now on.
        Call on the thread that drives the run, so no event falls between the copy and the
        subscription; ``detach()`` ends it."""
        follower = cls(RunState.from_snapshot(run.run_state.snapshot()))
        follower._unsubscribe = run.add_callback(follower.apply)
        return follower

    def detach(self) -> None:
        """Stop following the run given to :meth:`of`."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, data)`` after each applied event; returns the unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def apply(self, event: str, data: dict[str, Any]) -> None:
        if event == "state_change" and data.get("new") == self.state.state.value:
            return      # e.g. rank 0 starting a run its launcher already shows as running
        try:
            self.state.apply(event, data)
        except StateError as exc:
            # A follower trusts the run's order; an impossible step means a message was lost.
            log.warning("ignoring %s event that does not fit the followed state: %s", event, exc)
            return
        for listener in list(self._listeners):
            listener(event, data)

    def receive(self, message: protocol.Message) -> bool:
        """Apply an ``event`` message; False for any other kind (the caller's business)."""
        if message.get("kind") != protocol.EVENT:
            return False
        self.apply(message["event"], message.get("data") or {})
        return True
