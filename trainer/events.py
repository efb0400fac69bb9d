"""The events a run emits, and the observer interface that the panel, the HTTP API and the console use.

A run emits ``(event, data)`` pairs on the thread that drives it (the event loop's thread for
``start()``). Each event's data is a plain, JSON-safe dict, typed below, carrying everything a
follower needs to keep its own copy of the run's state (see :class:`trainer.state.RunState`,
which changes only by applying these events, in the run itself and in any follower):

- ``state_change`` :class:`StateChange`: the lifecycle moved (pending, running, paused, and the
  final states); ``elapsed`` is the run's active training time so far.
- ``train_begin``  :class:`TrainBegin`: training starts (or continues from a checkpoint).
- ``epoch_begin``  :class:`EpochBegin`: an epoch starts (``batch`` > 0 when resuming mid-epoch).
- ``batch_end``    :class:`BatchEnd`: once per time slice of batches, not every batch.
- ``epoch_end``    :class:`EpochEnd`: the epoch's history entry, whether it improved, the best epoch.
- ``train_end``    :class:`TrainEnd`: the run ended; its state, reason and where its files are.
- ``logger_error`` :class:`LoggerError`: a tracking logger failed; the run goes on without it.

An observer that raises is logged and recorded in ``run.observer_errors``; it never stops the run.
When what it raises names a ``logger`` (``trainer.loggers.LoggerFailure``), the run also emits
``logger_error`` once the event in progress has reached every observer.
An observer that writes somewhere slow (a tracking logger) may also define ``finish(run, data)``:
the run calls it off the event loop just before it announces its final state (``data`` holds
``state``, ``reason``, ``best_metrics`` and ``artifacts_path``), and waits for it, so whoever
hears the final state finds everything written without the event loop having been held up.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, TypedDict, Union

from .metrics import EpochMetrics

log = logging.getLogger("trainer")


class StateChange(TypedDict):
    old: str
    new: str
    reason: Optional[str]
    error: Optional[str]
    elapsed: float


class TrainBegin(TypedDict):
    total_epochs: int
    start_epoch: int
    task: str
    device: str


class EpochBegin(TypedDict):
    epoch: int
    learning_rate: float
    batch: int
    num_batches: int


class BatchEnd(TypedDict):
    epoch: int
    batch: int
    num_batches: int
    loss: float


class EpochEnd(TypedDict):
    metrics: EpochMetrics
    improved: bool
    best_epoch: Optional[int]


class TrainEnd(TypedDict):
    state: str
    reason: Optional[str]
    error: Optional[str]
    best_metrics: dict[str, Any]
    artifacts_path: Optional[str]
    last_checkpoint: Optional[str]


class LoggerError(TypedDict):
    logger: str       # the logger's title, e.g. "TensorBoard"
    message: str      # what failed and what to do


EventData = Union[StateChange, TrainBegin, EpochBegin, BatchEnd, EpochEnd, TrainEnd, LoggerError]


class Callback:
    """Subclass and override ``on_<event>(run, data)`` for the events you want."""

    def on_event(self, run: Any, event: str, data: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{event}", None)
        if handler is not None:
            handler(run, data)


Observer = Union[Callback, Callable[[str, dict], None]]


MAX_ERRORS = 100       # observer errors kept and logged per run


class EventBus:
    """Fan-out of events to observers, isolating each observer's failures."""

    def __init__(self, owner: Any):
        self._owner = owner
        self._observers: list[Observer] = []
        self.errors: list[str] = []
        self._suppressing = False
        self._logger_errors: list[LoggerError] = []     # to announce once the event in progress is out

    def add(self, observer: Observer) -> Callable[[], None]:
        """Subscribe; returns a function that unsubscribes."""
        self._observers.append(observer)
        return lambda: self.remove(observer)

    def remove(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def record_error(self, message: str, exc_info: bool = False) -> None:
        """Note an observer's failure: kept for ``observer_errors`` and logged, the first
        :data:`MAX_ERRORS`; then one line says the rest are suppressed, and nothing more."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)
            log.warning(message, exc_info=exc_info)
        elif not self._suppressing:
            # A failing batch observer fails several times a second: past the cap, silence.
            self._suppressing = True
            log.warning("%d observer errors recorded (see observer_errors); further observer errors of this run "
                        "are suppressed", MAX_ERRORS)

    def finish(self, data: dict[str, Any]) -> None:
        """Call every observer's ``finish(run, data)``, if it has one (off the event loop: it may block)."""
        for obs in list(self._observers):
            finish = getattr(obs, "finish", None)
            if finish is None:
                continue
            try:
                finish(self._owner, data)
            except Exception as exc:
                self._failed(obs, "finishing", exc)
        # Its logger errors go out with the next event, on the thread that drives the run.

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self._announce_logger_errors()
        for obs in list(self._observers):
            try:
                if isinstance(obs, Callback):
                    obs.on_event(self._owner, event, data)
                else:
                    obs(event, data)
            except Exception as exc:  # an observer must never kill the run
                self._failed(obs, f"on {event}", exc)
        self._announce_logger_errors()

    def _failed(self, obs: Observer, what: str, exc: Exception) -> None:
        logger = getattr(exc, "logger", None)
        # A logger's failure is expected and says what to do: no traceback for it.
        self.record_error(f"observer {obs!r} failed {what}: {type(exc).__name__}: {exc}", exc_info=logger is None)
        if logger is not None:
            self._logger_errors.append({"logger": str(logger), "message": str(exc)})

    def _announce_logger_errors(self) -> None:
        """Emit ``logger_error`` for each logger failure noted, applied first to the owner's state
        (``run_state``), as every event is."""
        while self._logger_errors:
            data = self._logger_errors.pop(0)
            state = getattr(self._owner, "run_state", None)
            if state is not None:
                state.apply("logger_error", data)
            self.emit("logger_error", dict(data))
