"""The Ray actor that hosts one run: a :class:`trainer.remote.RunHost` whose messages wait in an
outbox until the driver collects them.

The driver creates it with ``ray.remote(RunActor)`` (``link.py``) and calls ``build`` (the start
message, the DataFrame from Ray's object store, the checkpoint files of a resume), ``train``, then
``poll`` in a loop while ``command`` and ``abandon`` arrive on other threads of the actor. The run
trains with ``output_path`` in a temporary folder of the node; every file written there goes back
to the driver as a message before the event that follows it (``files.py``), and the folder is
removed when the run ends. Nothing here imports ray: the class is plain Python, so it is tested
and pickled like any other.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from .. import protocol
from ..config import ConfigError
from ..data.values import values_hidden
from ..remote import RunHost
from ..state import TrainingState
from .files import FolderMirror, write_files
from .ray_data import cluster_table

log = logging.getLogger("trainer")

FOLDER_PREFIX = "epoch-widgets-run-"
_FOLDER = re.compile(re.escape(FOLDER_PREFIX) + r"(\d+)-")
ORDER_WAIT = 5.0        # how long a command waits for the ones sent before it (Ray may reorder calls)
# Exit codes as the worker process has them: 0 the run ended, 1 it failed, 2 it could not start.
ENDED, FAILED, REFUSED = 0, 1, 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(base: Path) -> None:
    """Remove the folders of actors on this node that were killed before they could clean up."""
    try:
        entries = list(Path(base).iterdir())
    except OSError:
        return
    for entry in entries:
        match = _FOLDER.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _relocate(value: Any, old: str, new: str) -> Any:
    """``value`` with the actor's folder replaced by the driver's output_path in every string."""
    if isinstance(value, str):
        return value.replace(old, new) if old in value else value
    if isinstance(value, dict):
        return {k: _relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocate(v, old, new) for v in value]
    return value


def _mlflow_problem(config: dict[str, Any]) -> Optional[protocol.Message]:
    """MLflow's default store lies beside output_path, here in the node's temporary folder, where it
    would be lost: on a cluster the logger needs a tracking server."""
    loggers = config.get("loggers") or []
    if "mlflow" not in loggers or config.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    message = ("with the Ray executor the mlflow logger needs mlflow_tracking_uri (a tracking server the cluster's "
               "nodes reach); its default local store beside output_path would stay on the node")
    return protocol.refusal(protocol.CONFIG_ERROR, f"loggers: {message}",
                            [{"field": "loggers", "value": loggers, "message": message}])


class _Outbox:
    """Messages for the driver, numbered in the order they were sent. A message is kept until the
    driver acknowledges it (by the number of the last one it got), so a poll whose answer was
    lost on the way is simply asked again: nothing is lost, nothing comes twice."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.count = 0
        self.pending: list[tuple[int, protocol.Message]] = []

    def add(self, messages: list[protocol.Message]) -> None:
        """Queue ``messages`` (hold :attr:`lock`)."""
        for message in messages:
            self.count += 1
            self.pending.append((self.count, message))
        if messages:
            self.lock.notify_all()

    def take(self, after: int, wait: float, ended: Any) -> tuple[list[tuple[int, protocol.Message]], bool]:
        """The messages after number ``after`` (waiting up to ``wait`` seconds for one), and whether
        they are the last (``ended()`` held when they were taken)."""
        with self.lock:
            self.pending = [(n, m) for n, m in self.pending if n > after]
            self.lock.wait_for(lambda: self.pending or ended(), wait)
            return list(self.pending), ended()


class RunActor:
    """One run on a Ray worker, driven through ``trainer.protocol`` messages (see the module
    docstring). Create it with ``max_concurrency`` of at least 4: poll, command, abandon and the
    training overlap."""

    def __init__(self) -> None:
        self._outbox = _Outbox()
        # Held while changes are found and queued, so files and events go out in the order they happened.
        self._sending = threading.RLock()
        self._host = RunHost(self._send)
        self._folder: Optional[Path] = None
        self._mirror: Optional[FolderMirror] = None
        self._rename: Optional[tuple[str, str]] = None
        self._weights = False
        self._ended = threading.Event()
        self.exit_code: Optional[int] = None
        self._command_lock = threading.Condition()
        self._next_seq = 1

    # ------------------------------------------------------------------ called by the driver
    def build(self, spec: protocol.Message, data: Optional[pd.DataFrame], files: Optional[dict[str, bytes]] = None
              ) -> protocol.Message:
        """Build the run ``spec`` (a ``start`` message) asks for on ``data``, or with ``data`` None
        on the table its ``data_path`` names, read here (``ray_data.cluster_table``); ``files``
        (relative path -> bytes) are put into its output folder first (a resume's checkpoints).
        Returns the ``ready`` message or the refusal (both also wait in the outbox)."""
        config = dict(spec["config"])
        problem = _mlflow_problem(config)
        if problem is not None:
            return self._refused(problem)
        if data is None:
            try:
                with values_hidden(spec.get("data_root") is not None):
                    data = cluster_table(config, spec.get("data_root"))
            except ConfigError as exc:
                return self._refused(protocol.refusal(protocol.CONFIG_ERROR, str(exc), exc.errors))
        if config.get("output_path"):
            base = Path(tempfile.gettempdir())
            remove_orphans(base)
            self._folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=base))
            write_files(self._folder, files or {})
            self._rename = (str(self._folder), str(config["output_path"]))
            self._mirror = FolderMirror(self._folder, self._rename, known=(files or {}).keys())
            config["output_path"] = str(self._folder)
        self._weights = bool(spec.get("weights"))
        ready = self._host.build({**spec, "config": config}, data)
        if ready["kind"] != protocol.READY:
            return self._refused(None, ready)
        return self._relocated(ready)

    def train(self) -> None:
        """Start training on a thread of its own (returns at once)."""
        threading.Thread(target=self._train, name="train", daemon=True).start()

    def poll(self, after: int, wait: float) -> dict[str, Any]:
        """The messages after number ``after`` (the last one the driver got; waiting up to ``wait``
        seconds for one) as ``[number, message]`` pairs, and whether they are the last (then
        ``exit_code`` says how the run ended)."""
        if not self._ended.is_set():
            self._send_changes()     # files written between events (a logger's flush)
        messages, ended = self._outbox.take(after, wait, self._ended.is_set)
        return {"messages": messages, "ended": ended, "exit_code": self.exit_code if ended else None}

    def command(self, message: protocol.Message) -> None:
        """Apply a ``command`` message (its reply goes to the outbox), in the order of ``seq``."""
        seq = message.get("seq")
        with self._command_lock:
            if isinstance(seq, int):
                # A threaded actor may start calls out of order; the driver numbers them from 1.
                self._command_lock.wait_for(lambda: seq <= self._next_seq, ORDER_WAIT)
            try:
                self._host.command(message)
            finally:
                if isinstance(seq, int):
                    self._next_seq = max(self._next_seq, seq + 1)
                self._command_lock.notify_all()

    def abandon(self) -> None:
        """The driver is going away: stop the run (its artifacts are still written and sent)."""
        self._host.abandon()

    # ------------------------------------------------------------------ inside
    def _train(self) -> None:
        try:
            state = self._host.train()
            self.exit_code = FAILED if state == TrainingState.FAILED else ENDED
        except Exception:
            log.exception("the run failed outside its loop")
            self.exit_code = FAILED
        # Let a command being answered (typically the stop that ended the run) send its reply first.
        if self._command_lock.acquire(timeout=5):
            self._command_lock.release()
        self._close(self.exit_code)

    def _refused(self, message: Optional[protocol.Message], sent: Optional[protocol.Message] = None) -> protocol.Message:
        if message is not None:
            self._send(message)
        self._close(REFUSED)
        return self._relocated(message or sent or {})

    def _close(self, code: int) -> None:
        with self._sending:
            self._send_changes()
            self._mirror = None
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
            with self._outbox.lock:
                self.exit_code = code
                self._ended.set()
                self._outbox.lock.notify_all()

    def _relocated(self, message: protocol.Message) -> protocol.Message:
        return _relocate(message, *self._rename) if self._rename else message

    def _send_changes(self) -> None:
        with self._sending:
            changes = self._mirror.changes() if self._mirror is not None else []
            with self._outbox.lock:
                self._outbox.add(changes)

    def _send(self, message: protocol.Message) -> None:
        """RunHost's channel (any thread): the files written so far, then the message."""
        is_event = message.get("kind") == protocol.EVENT
        event = message.get("event") if is_event else None
        # The run's final weights, for the driver's copy of the model (predictions, evaluation).
        weights = [self._final_weights()] if event == "train_end" and self._weights else []
        with self._sending:
            # Files are read holding only the sending lock: the driver's polls take messages meanwhile.
            # (batch_end: a few a second, and no file is announced by one.)
            changes = self._mirror.changes() if self._mirror is not None and event != "batch_end" else []
            with self._outbox.lock:
                self._outbox.add(changes + weights)
                self._outbox.add([message if event in ("batch_end", "epoch_end") else self._relocated(message)])

    def _final_weights(self) -> protocol.Message:
        backend = self._host.run.backend if self._host.run is not None else None
        started = time.perf_counter()
        data = backend.encode_weights(backend.snapshot()) if backend is not None else b""
        log.debug("encoded the final weights in %.3f s", time.perf_counter() - started)
        return {"kind": protocol.WEIGHTS, "data": data}
