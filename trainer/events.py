"""The event interface that the panel, the HTTP API and the console subscribe to.

A run emits ``(event, data)`` pairs on the thread that drives it (the event loop's thread for
``start()``). Events and their data:

- ``train_begin``  {"total_epochs", "start_epoch"}
- ``epoch_begin``  {"epoch", "learning_rate"}
- ``batch_end``    {"epoch", "batch", "num_batches", "loss"}: once per time slice of batches,
  not every batch (``batch`` is how many batches of the epoch are done)
- ``epoch_end``    {"metrics": the history entry, "improved": bool}
- ``state_change`` {"old", "new", "reason"}
- ``train_end``    {"state", "best_metrics", "reason"}

An observer that raises is logged and recorded in ``run.observer_errors``; it never stops the run.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Protocol, Union

log = logging.getLogger("trainer")

EVENTS = ("train_begin", "epoch_begin", "batch_end", "epoch_end", "state_change", "train_end")


class Callback:
    """Subclass and override ``on_<event>(run, data)`` for the events you want."""

    def on_event(self, run: Any, event: str, data: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{event}", None)
        if handler is not None:
            handler(run, data)


class EventFunction(Protocol):
    def __call__(self, event: str, data: dict[str, Any]) -> None: ...


Observer = Union[Callback, Callable[[str, dict], None]]


class EventBus:
    """Fan-out of events to observers, isolating each observer's failures."""

    def __init__(self, owner: Any):
        self._owner = owner
        self._observers: list[Observer] = []
        self.errors: list[str] = []

    def add(self, observer: Observer) -> Callable[[], None]:
        """Subscribe; returns a function that unsubscribes."""
        self._observers.append(observer)
        return lambda: self.remove(observer)

    def remove(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for obs in list(self._observers):
            try:
                if isinstance(obs, Callback):
                    obs.on_event(self._owner, event, data)
                else:
                    obs(event, data)
            except Exception as exc:  # an observer must never kill the run
                msg = f"observer {obs!r} failed on {event}: {type(exc).__name__}: {exc}"
                if len(self.errors) < 100:
                    self.errors.append(msg)
                log.warning(msg, exc_info=True)
