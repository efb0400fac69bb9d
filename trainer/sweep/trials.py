"""One trial of a sweep: a normal run in ``<output_path>/trial-<n>/`` with the trial's settings.

A :class:`Trial` is what the sweep shows of it: its number and parameters, its state (``waiting``,
``running``, ``paused``, ``completed``, ``pruned``, ``failed``, ``stopped``), its run handle while
this process trains it, its best value of the sweep's metric and its epochs. What ends a trial is
stored with the Optuna trial (user attributes ``state``, ``reason``, ``best_metric``, ``epochs``)
so :meth:`trainer.sweep.Sweep.load` shows the same table later.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Optional

from ..config import MAX_NAME, TrainingConfig
from ..run_records import read_run
from ..state import TrainingState

TRIAL_STATES = ("waiting", "running", "paused", "completed", "pruned", "failed", "stopped")
ENDED = ("completed", "pruned", "failed", "stopped")


def trial_folder(sweep_folder: Path, number: int) -> Path:
    return sweep_folder / f"trial-{number}"


def trial_config(base: TrainingConfig, params: dict[str, Any], folder: Path, number: int,
                 seed: Optional[int]) -> TrainingConfig:
    """The config of trial ``number``: the base config with the trial's parameters, its own folder,
    a name saying which trial it is, and (for a seeded sweep without a config seed) its own seed."""
    name = f"{base.name} · trial {number}"[:MAX_NAME]
    changes: dict[str, Any] = {**params, "output_path": str(folder), "name": name}
    if base.seed is None and seed is not None:
        changes["seed"] = (seed + number) % 2**32
    return base.replace(**changes)


def best_value(history: Iterable[dict[str, Any]], metric: str, direction: str) -> Optional[float]:
    """The best value of ``metric`` over the epochs of ``history`` (None before a usable one)."""
    values = [float(e[metric]) for e in history if isinstance(e.get(metric), (int, float))
              and math.isfinite(float(e[metric]))]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


def final_state(run_state: TrainingState, prune_requested: bool, stop_requested: bool) -> str:
    """The trial's state for how its run ended and what the sweep asked of it."""
    if run_state in (TrainingState.COMPLETED, TrainingState.EARLY_STOPPED):
        return "completed"
    if run_state == TrainingState.FAILED:
        return "failed"
    if prune_requested:
        return "pruned"
    return "stopped"


class Trial:
    """One trial of a sweep (see the module docstring). Read its attributes; the sweep changes them."""

    def __init__(self, number: int, params: dict[str, Any], path: Path, metric: str, direction: str):
        self.number = number
        self.params = params
        self.path = path
        self.run: Any = None              # the trial's run handle, from its start in this process
        self.reason: Optional[str] = None
        self._metric, self._direction = metric, direction
        self._ended: Optional[str] = None
        self._saved_best: Optional[float] = None
        self._saved_epochs = 0
        self._starting = False
        self._stop_asked = False          # stop_trial(n): the user ended it, the sweep goes on

    @property
    def state(self) -> str:
        """``waiting``, ``running``, ``paused`` or how it ended (``completed``, ``pruned``, ``failed``, ``stopped``)."""
        if self._ended is not None:
            return self._ended
        if self.run is not None:
            return "paused" if self.run.pause_requested else "running"
        return "running" if self._starting else "waiting"

    @property
    def history(self) -> list[dict[str, Any]]:
        """The trial's epochs (its run's history; for a trial of a loaded sweep, its saved history)."""
        if self.run is not None:
            return list(self.run.history)
        try:
            return read_run(self.path).history
        except (OSError, ValueError):
            return []

    @property
    def best_metric(self) -> Optional[float]:
        """The best value of the sweep's metric over the trial's epochs so far."""
        if self.run is not None:
            return best_value(self.run.history, self._metric, self._direction)
        return self._saved_best

    @property
    def epochs_done(self) -> int:
        return self.run.current_epoch if self.run is not None else self._saved_epochs

    def _end(self, state: str, reason: Optional[str]) -> None:
        self._ended, self.reason = state, reason

    def _restore(self, attrs: dict[str, Any]) -> None:
        """What the study stored of an ended (or interrupted) trial."""
        self._saved_best = attrs.get("best_metric")
        self._saved_epochs = int(attrs.get("epochs") or 0)
        self.reason = attrs.get("reason")
        if attrs.get("state") in ENDED:
            self._ended = attrs["state"]

    def record(self) -> dict[str, Any]:
        """What the study stores of the trial as it ends."""
        return {"state": self.state, "reason": self.reason, "best_metric": self.best_metric,
                "epochs": self.epochs_done}

    def to_dict(self) -> dict[str, Any]:
        """The trial as JSON values (what an API answers)."""
        return {"number": self.number, "params": self.params, "state": self.state, "reason": self.reason,
                "best_metric": self.best_metric, "epochs_done": self.epochs_done, "path": str(self.path)}

    def row(self) -> dict[str, Any]:
        """The trial's row of the sweep's table."""
        return {"number": self.number, **self.params, self._metric: self.best_metric,
                "epochs": self.epochs_done, "state": self.state}

    def __repr__(self) -> str:
        best = "-" if self.best_metric is None else f"{self.best_metric:.4g}"
        return f"<Trial {self.number} {self.state} {self._metric}={best} epochs={self.epochs_done} {self.params}>"
