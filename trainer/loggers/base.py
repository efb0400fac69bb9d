"""What every tracking logger shares: a worker thread, so writes never hold up the epoch loop,
and failures reported through the run's observer errors instead of stopping the run.

The run calls the hooks on the thread that drives it (the event loop's thread). They only copy the
public event data and queue it; the logger's own thread does the writing. The run calls
``finish`` off its event loop before it announces its final state, and that waits for the
logger's thread to finish (at most :attr:`BackgroundLogger.flush_timeout` seconds), so when
``fit()`` returns, ``await run.wait()`` does, or an observer hears the final state, everything has
been written, and the event loop (a notebook's kernel) was never held up for it.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..events import Callback
from ..state import FINAL_VALUES   # the final states as the events spell them
from ..redaction import redact_text

log = logging.getLogger("trainer")


class LoggerFailure(RuntimeError):
    """A logger could not write; the run goes on without it. The message says what to do;
    ``logger`` names the logger (the run reports it as a ``logger_error`` event)."""

    def __init__(self, message: str, logger: Optional[str] = None):
        super().__init__(message)
        self.logger = logger


@dataclass
class RunStart:
    """What a logger learns at ``train_begin``: a copy, safe to read on its own thread."""

    config: dict[str, Any]
    output_path: Optional[Path]
    start_epoch: int
    total_epochs: int
    history: list[dict[str, Any]]
    started_at: float = field(default_factory=time.time)

    @property
    def resumed(self) -> bool:
        # A run resumed within its first epoch counts as fresh: it has logged nothing yet.
        return self.start_epoch > 0 or bool(self.history)


@dataclass
class RunEnd:
    """What a logger learns at ``train_end``."""

    state: str
    reason: Optional[str]
    best_metrics: dict[str, Any]
    epochs_done: int
    artifacts_path: Optional[Path]


def _start_of(run: Any, data: dict[str, Any]) -> RunStart:
    config = run.config
    output = Path(config.output_path).expanduser() if config.output_path else None
    history = [dict(entry) for entry in run.history]
    # What a logger records as params and tags: credentials stay only where the logger connects.
    return RunStart(config=config.to_saved_dict(), output_path=output, start_epoch=int(data.get("start_epoch", 0)),
                    total_epochs=int(data.get("total_epochs", config.epochs)), history=history)


def _artifacts_of(run: Any) -> Optional[Path]:
    artifacts = getattr(run, "artifacts_path", None)
    return Path(artifacts) if artifacts else None


def _end_of(run: Any, data: dict[str, Any]) -> RunEnd:
    artifacts = data.get("artifacts_path")
    return RunEnd(state=str(data.get("state")), reason=data.get("reason"),
                  best_metrics=dict(data.get("best_metrics") or {}), epochs_done=len(run.history),
                  artifacts_path=Path(artifacts) if artifacts else _artifacts_of(run))


class BackgroundLogger(Callback):
    """A logger whose writes happen on its own thread, once per epoch (never per batch).

    Subclasses implement ``open(start)``, ``log_epoch(entry)`` (and ``log_epochs(entries)`` to write
    several queued epochs in one go) and ``close(end)``, which run on that thread in order, and may
    implement ``abort()`` to release what ``open`` took after a failure.
    The first failure stops the logger for the rest of the run and is reported once.
    """

    title = "logger"
    flush_timeout = 60.0   # seconds train_end waits for the writes still queued

    def __init__(self) -> None:
        self._queue: "queue.Queue[Optional[tuple[Callable[[Any], None], Any, str]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._stopped = False
        self._finished = False
        # Seconds this thread spent writing each epoch (what one epoch's logging costs).
        self.epoch_seconds: list[float] = []
        # Seconds from the thread's start to the failure that stopped the logger, if one did.
        self.failed_after: Optional[float] = None
        self._started = 0.0

    def __repr__(self) -> str:
        return f"<{self.title} logger>"

    # ------------------------------------------------------------------ subclass interface
    def open(self, start: RunStart) -> None:
        raise NotImplementedError

    def log_epoch(self, entry: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self, end: RunEnd) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Release what ``open`` took after a failure (best effort)."""

    def log_config_change(self, change: dict[str, Any]) -> None:
        """One change steering applied (``config_change`` data, ``trainer.steering``)."""

    # ------------------------------------------------------------------ hooks (the run's thread)
    def on_train_begin(self, run: Any, data: dict[str, Any]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=f"{self.title}-logger", daemon=True)
            self._started = time.monotonic()
            self._thread.start()
        self._submit(self.open, _start_of(run, data), "starting")
        self._raise_pending()

    def on_epoch_end(self, run: Any, data: dict[str, Any]) -> None:
        self._submit(self._timed_epochs, [dict(data["metrics"])], "logging an epoch")
        self._raise_pending()

    def on_config_change(self, run: Any, data: dict[str, Any]) -> None:
        change = {**data, "changes": {k: dict(v) for k, v in data["changes"].items()}}
        self._submit(self.log_config_change, change, "logging a config change")
        self._raise_pending()

    def finish(self, run: Any, data: dict[str, Any]) -> None:
        """Called by the run off its event loop just before it announces its final state: the
        writes still queued are done (waiting at most ``flush_timeout``) before anyone hears it."""
        self._finish(_end_of(run, data))

    def on_state_change(self, run: Any, data: dict[str, Any]) -> None:
        # A run driven without finish(): finishing here still means whoever hears the final state
        # finds the tracking written.
        if data.get("new") in FINAL_VALUES:
            self._finish(RunEnd(state=str(data["new"]), reason=data.get("reason"),
                                best_metrics=dict(run.best_metrics), epochs_done=len(run.history),
                                artifacts_path=_artifacts_of(run)))

    def on_train_end(self, run: Any, data: dict[str, Any]) -> None:
        self._finish(_end_of(run, data))

    def _finish(self, end: RunEnd) -> None:
        thread = self._thread
        if thread is None or self._finished:   # never opened (ended before train_begin), or done
            return
        self._finished = True
        self._submit(self.close, end, "finishing")
        self._queue.put(None)
        thread.join(self.flush_timeout)
        if thread.is_alive():
            with self._lock:
                self._stopped = True     # whatever is still queued is dropped
                self._pending.append(
                    f"{self.title} was still writing {self.flush_timeout:g} s after the run ended "
                    f"({self._where()}); what it had not written is dropped")
        self._raise_pending()

    # ------------------------------------------------------------------ the logger's thread
    def _submit(self, fn: Callable[[Any], None], arg: Any, what: str) -> None:
        if not self._stopped:
            self._queue.put((fn, arg, what))

    def _timed_epochs(self, entries: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        self.log_epochs(entries)
        per_epoch = (time.perf_counter() - started) / len(entries)
        self.epoch_seconds.extend([per_epoch] * len(entries))

    def log_epochs(self, entries: list[dict[str, Any]]) -> None:
        """Several epochs queued while the last write ran; subclasses may write them in one go."""
        for entry in entries:
            self.log_epoch(entry)

    def _work(self) -> None:
        carried: list[Any] = []       # an item taken from the queue while gathering epochs
        while True:
            item = carried.pop() if carried else self._queue.get()
            if item is None:
                return
            if self._stopped:
                continue
            fn, arg, what = item
            if fn == self._timed_epochs:
                # Epochs that queued up while the last write ran (fast epochs, a slow server) go
                # out together, so the backlog never grows faster than it drains.
                while not carried:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is not None and nxt[0] == self._timed_epochs:
                        arg = arg + nxt[1]
                    else:
                        carried.append(nxt)
            try:
                fn(arg)
            except Exception as exc:     # reported on the run's thread; the run goes on
                log.debug("%s failed while %s", self.title, what, exc_info=True)
                self._fail(f"{self.title} logging failed while {what}: {_describe(exc)}; {self._advice(exc)}"
                           f"the run goes on without {self.title}")

    def _fail(self, message: str) -> None:
        message = redact_text(message)      # a library's error may repeat a URI with its password
        with self._lock:
            self.failed_after = time.monotonic() - self._started
            self._stopped = True
            self._pending.append(message)
        try:
            self.abort()
        except Exception:
            log.debug("%s: abort failed", self.title, exc_info=True)

    def _advice(self, exc: Exception) -> str:
        """What the user can do about ``exc``, ending in "; " (or nothing)."""
        return ""

    def _where(self) -> str:
        return "its destination may be slow or unreachable"

    def _raise_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            raise LoggerFailure("; ".join(pending), self.title)


class UnavailableLogger(Callback):
    """Stands in for a logger that could not be created; reports why when the run begins."""

    def __init__(self, title: str, message: str):
        self.title = title
        self.message = message

    def __repr__(self) -> str:
        return f"<{self.title} logger (unavailable)>"

    def on_train_begin(self, run: Any, data: dict[str, Any]) -> None:
        raise LoggerFailure(self.message, self.title)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 400:
        first = first[:400] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
