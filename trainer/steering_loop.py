"""The epoch loop's end of steering: changes waiting for the next batch boundary, applied there.

``run.update(**changes)`` on a run trained in this process hands its checked changes to
:class:`LoopSteering`; the loop calls :meth:`LoopSteering.apply_due` at every batch boundary (before
each slice of batches, and between two epochs), where the change is applied to the config, the
schedule, early stopping, the checkpoint cadence and the backend, and recorded with a
``config_change`` event. A run built with ``replay=`` applies a recorded run's changes at the same
positions. See :mod:`trainer.steering` for what each field's change means.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from .config import ConfigError
from .state import StateError
from .steering import REBASING, change_event, check_changes, new_values, rebase_at

if TYPE_CHECKING:
    from .loop import LocalRun

log = logging.getLogger("trainer")

# How long update() waits for the loop to reach a batch boundary (one batch, or evaluating an epoch).
UPDATE_WAIT = 120.0

ReplaySource = Union[str, Path, Sequence[Mapping[str, Any]], Any]


class LoopSteering:
    """One run's waiting changes and changes to replay (see the module docstring)."""

    def __init__(self, run: "LocalRun", replay: Sequence[Mapping[str, Any]] = ()):
        self._run = run
        self._lock = threading.Lock()
        self._waiting: list[tuple[dict[str, Any], concurrent.futures.Future]] = []
        self._closed: Optional[str] = None
        self._replay = [dict(e) for e in replay]
        self.parked = False     # the loop waits in a pause, nothing in flight (set on the loop's thread)
        if self._replay:
            _check_replay(run, self._replay)

    # ------------------------------------------------------------------ from any thread
    @property
    def pending(self) -> bool:
        return bool(self._waiting)

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply checked ``changes`` at the next batch boundary and return the event's data. On the
        run's own event loop (a notebook cell beside ``start()``) waiting would stall the run: there
        it applies at once while paused, and otherwise returns ``{"changes", "pending": True}``."""
        run = self._run
        _check_model(run, changes)
        if run._on_own_loop():
            if self.parked:
                return self.apply(changes, run.current_epoch + 1, run.batch)
            self._submit(changes)
            run.backend.interrupt()
            return {"changes": {k: {"old": getattr(run.config, k), "new": v} for k, v in changes.items()},
                    "pending": True}
        future = self._submit(changes)
        run.backend.interrupt()
        run._wake_up()
        try:
            return future.result(UPDATE_WAIT)
        except concurrent.futures.TimeoutError:
            if self._withdraw(future):
                raise StateError(f"cannot update: the run did not reach the end of a batch within {UPDATE_WAIT:g} s; "
                                 f"nothing was changed, try again") from None
            return future.result()

    def _submit(self, changes: dict[str, Any]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise StateError(f"cannot update: {self._closed}")
            self._waiting.append((changes, future))
        return future

    def _withdraw(self, future: concurrent.futures.Future) -> bool:
        with self._lock:
            for item in self._waiting:
                if item[1] is future:
                    self._waiting.remove(item)
                    return True
        return False

    def close(self, reason: str) -> None:
        """No more changes: the loop has left its epochs; whoever waits hears ``reason``."""
        with self._lock:
            self._closed, waiting = reason, self._waiting
            self._waiting = []
        for _, future in waiting:
            future.set_exception(StateError(f"cannot update: {reason}"))

    # ------------------------------------------------------------------ on the loop's thread
    def slice_end(self, epoch: int, batch: int, end: int) -> int:
        """Where a slice from ``batch`` of ``epoch`` must end so a change to replay lands on its batch."""
        if self._replay and int(self._replay[0]["epoch"]) == epoch and batch < int(self._replay[0]["batch"]) < end:
            return int(self._replay[0]["batch"])
        return end

    def apply_due(self, epoch: int, batch: int) -> None:
        """Apply what is due after ``batch`` batches of 1-based ``epoch``: the recorded changes to
        replay at this position, then the waiting ones in order."""
        while self._replay and _position(self._replay[0]) <= (epoch, batch):
            event = self._replay.pop(0)
            if _position(event) < (epoch, batch):
                log.warning("replay: the change at epoch %s batch %s was never reached (this run's epochs have other "
                            "batch counts); not applied: %s", event["epoch"], event["batch"], new_values(event))
                continue
            self.apply(new_values(event), epoch, batch)
        while self._waiting:
            with self._lock:
                changes, future = self._waiting.pop(0)
            try:
                future.set_result(self.apply(changes, epoch, batch))
            except (ConfigError, StateError) as exc:
                future.set_exception(exc)

    def apply(self, changes: dict[str, Any], epoch: int, batch: int) -> dict[str, Any]:
        """Apply ``changes`` after ``batch`` batches of ``epoch`` and record them; the event's data."""
        run = self._run
        st = run.run_state
        between = batch >= st.num_batches > 0       # after the epoch's last batch, before the next epoch
        changes = check_changes(run.config, changes, epochs_done=epoch)
        # Once the epoch has ended its batches are in steps_done already: not counted twice.
        step = st.steps_done if between and st.current_epoch >= epoch else st.step
        event = change_event(run.config, changes, epoch, batch, step)
        if not changes:
            return event
        old, new = run.config, run.config.replace(**changes)
        if "dropout_rate" in changes:
            run.backend.set_dropout(new.dropout_rate)
        run.config = new
        if REBASING & set(changes):
            assert st.schedule is not None
            base, origin = rebase_at(new, changes, epoch, between, st.learning_rate or old.learning_rate)
            if "learning_rate" in changes:       # from the next batch
                run.backend.set_learning_rate(base)
            st.schedule.rebase(new, base, origin)
        es = st.early_stopping
        if es is not None:
            es.patience, es.min_delta, es.enabled = new.early_stopping_patience, new.min_delta, new.early_stopping
        ckpt = run._checkpoints
        if ckpt is not None:
            ckpt.every_epochs, ckpt.every_batches = new.checkpoint_every_epochs, new.checkpoint_every_batches
            ckpt.every_seconds, ckpt.writer.keep = new.checkpoint_every_seconds, new.checkpoint_keep
        run._emit("config_change", event)
        return event


def _position(event: Mapping[str, Any]) -> tuple[int, int]:
    return int(event["epoch"]), int(event["batch"])


def _check_model(run: "LocalRun", changes: Mapping[str, Any]) -> None:
    """ConfigError for a change this run's model or devices cannot take."""
    replicas = int(getattr(run.backend, "replicas", 1))     # a MirroredStrategy's devices
    if changes.get("batch_size", replicas) % replicas:
        raise ConfigError.single("batch_size", changes["batch_size"],
                                 f"with {replicas} devices batch_size is the global batch, split evenly; "
                                 f"{changes['batch_size']} does not divide by {replicas}")
    if "dropout_rate" in changes and run.backend.dropout_layers() == 0:
        raise ConfigError.single("dropout_rate", changes["dropout_rate"],
                                 "the model has no dropout layers to change (a built-in model started with "
                                 "dropout_rate=0 has none); start a run with dropout_rate > 0 to steer it")


def _check_replay(run: "LocalRun", events: Sequence[Mapping[str, Any]]) -> None:
    """ConfigError unless the recorded changes fit ``run``'s config: each field's recorded old value
    is the value this run will have then (so the run must start from the recorded run's first config)."""
    config = run.config
    for event in events:
        for name, change in event["changes"].items():
            if getattr(config, name, None) != change["old"]:
                raise ConfigError.single("replay", name,
                                         f"the recorded run had {name}={change['old']!r} before its change at epoch "
                                         f"{event['epoch']} batch {event['batch']}, but this run would have "
                                         f"{getattr(config, name, None)!r}; start from the recorded run's first config "
                                         f"(trainer.steering.initial_config)")
        config = config.replace(**new_values(event))
    if any("dropout_rate" in e["changes"] for e in events):
        _check_model(run, {"dropout_rate": None})


def recorded_changes(source: ReplaySource) -> list[dict[str, Any]]:
    """The ``config_changes`` of a run (a run handle), of a run's ``output_path`` folder (its
    ``history.json``, else its newest checkpoint), of a ``history.json`` file, or a list of them."""
    if hasattr(source, "config_changes"):
        return [dict(e) for e in source.config_changes]
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_dir() and (path / "history.json").is_file():
            path = path / "history.json"
        if path.is_dir():
            from .checkpoints import checkpoint_dir, load_latest
            return list(load_latest(checkpoint_dir(path)).state.get("config_changes") or [])
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError.single("replay", str(source), f"cannot read the recorded run: {exc}; pass a run, its "
                                                            f"output_path or its history.json") from None
        return list(saved.get("config_changes") or []) if isinstance(saved, dict) else []
    if isinstance(source, (list, tuple)):
        return [dict(e) for e in source]
    raise ConfigError.single("replay", type(source).__name__,
                             "expected a run, a run's output_path or history.json, or a list of config_change events")
