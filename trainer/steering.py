"""Steering a live run: the one list of settings that may change while a run trains, and their checks.

``run.update(**changes)`` (every run handle), the HTTP API's update endpoint and the panel's
"Apply changes" all check a change here: :func:`check_changes` validates the new values with the
same schema as at start (:class:`~trainer.config.TrainingConfig`) and refuses any field not in
:data:`CHANGEABLE`, naming the field and the fields that can change. The epoch loop applies a
checked change between two batches and records it as a ``config_change`` event
(:func:`change_event`).

How a change composes with what the run is doing (also in ``docs/semantics.md``):

- ``learning_rate`` applies from the next batch, and the schedule starts again from it: the epoch
  in progress counts as the schedule's epoch 0 with the new rate as its base rate (``step`` decays
  it every ``step_size`` epochs from there, ``cosine`` anneals it from there, ``plateau`` reduces it
  from there).
- ``learning_rate_scheduler`` and its parameters apply from the next epoch: the new schedule starts
  there, from the rate in use now (or the new ``learning_rate`` given with them).
- ``batch_size`` applies from the next epoch to begin; ``dropout_rate`` from the next batch (every
  dropout layer of the model); early stopping's settings at the next epoch's end; ``epochs`` at once;
  the checkpoint cadence from the next checkpoint decision.
"""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .config import SCHEDULER_PARAMS, ConfigError, TrainingConfig
from .schedules import LRSchedule


@dataclass(frozen=True)
class Changeable:
    """A setting a live run accepts: ``takes_effect`` says when (for docs and the panel's tooltips);
    ``while_running`` False means only while the run is paused."""

    name: str
    takes_effect: str
    while_running: bool = True


def _fields(names: Sequence[str], takes_effect: str) -> dict[str, Changeable]:
    return {n: Changeable(n, takes_effect) for n in names}


SCHEDULE_FIELDS = ("learning_rate_scheduler", *(p for params in SCHEDULER_PARAMS.values() for p in params))
CHECKPOINT_FIELDS = ("checkpoint_every_epochs", "checkpoint_every_batches", "checkpoint_every_seconds",
                     "checkpoint_keep")

CHANGEABLE: dict[str, Changeable] = {
    "learning_rate": Changeable("learning_rate", "from the next batch; the schedule starts again from it"),
    **_fields(SCHEDULE_FIELDS, "from the next epoch; the new schedule starts from the rate in use"),
    "epochs": Changeable("epochs", "at once (no fewer than the epochs done or in progress)"),
    "batch_size": Changeable("batch_size", "from the next epoch to begin"),
    "dropout_rate": Changeable("dropout_rate", "from the next batch (every dropout layer of the model)"),
    **_fields(("early_stopping", "early_stopping_patience", "min_delta"), "at the next epoch's end"),
    **_fields(CHECKPOINT_FIELDS, "from the next checkpoint"),
}

# Fields that, changed, rebase the learning-rate schedule (trainer.schedules.LRSchedule.rebase).
REBASING = frozenset({"learning_rate", *SCHEDULE_FIELDS})


def changeable_text() -> str:
    """The fields that can change, for error messages."""
    return ", ".join(CHANGEABLE)


def check_changes(config: TrainingConfig, changes: Mapping[str, Any], *, epochs_done: int) -> dict[str, Any]:
    """The fields of ``changes`` whose value differs from ``config``'s, validated; ConfigError
    naming the field for a field that cannot change, a bad value, or ``epochs`` below
    ``epochs_done`` (the epochs done, plus one if an epoch is in progress). Changes nothing."""
    if not isinstance(changes, Mapping):
        raise ConfigError.single("<changes>", type(changes).__name__,
                                 f"expected an object of fields to change; fields that can change: {changeable_text()}")
    if not changes:
        raise ConfigError.single("<changes>", {}, f"nothing to change: give at least one of {changeable_text()}")
    for name in changes:
        if name not in CHANGEABLE:
            raise ConfigError.single(str(name), changes[name], _not_changeable(str(name)))
    new = config.replace(**changes)     # the schema's own checks and messages
    if "epochs" in changes and new.epochs < epochs_done:
        raise ConfigError.single("epochs", changes["epochs"],
                                 f"must be at least {epochs_done}: the run has done (or is in) that many epochs")
    return {name: getattr(new, name) for name in changes if getattr(new, name) != getattr(config, name)}


def _not_changeable(name: str) -> str:
    if name in TrainingConfig.model_fields:
        return (f"cannot change while the run trains (it is fixed when a run starts); fields that can change: "
                f"{changeable_text()}. To train with another {name}, start a new run")
    close = difflib.get_close_matches(name, list(CHANGEABLE), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {hint}fields that can change: {changeable_text()}"


def change_event(config: TrainingConfig, changes: Mapping[str, Any], epoch: int, batch: int,
                 step: int) -> dict[str, Any]:
    """The ``config_change`` event's data for ``changes`` (checked) to ``config`` (before them),
    applied after ``batch`` batches of 1-based ``epoch`` (``batch`` equal to the epoch's batch count:
    after that epoch ended, before the next began), at global batch ``step``."""
    return {"changes": {k: {"old": getattr(config, k), "new": v} for k, v in changes.items()},
            "epoch": epoch, "batch": batch, "step": step, "time": time.time()}


def new_values(event: Mapping[str, Any]) -> dict[str, Any]:
    """``{field: new value}`` of a ``config_change`` event."""
    return {k: v["new"] for k, v in event["changes"].items()}


def initial_config(config: Mapping[str, Any], changes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The config (a dict) a run steered by ``changes`` (its ``config_changes``) started with,
    given the config it has now: each changed field's first ``old`` value."""
    first: dict[str, Any] = {}
    for event in changes:
        for name, change in event["changes"].items():
            first.setdefault(name, change["old"])
    return {**config, **first}


def as_built(config: TrainingConfig, resume: Any) -> TrainingConfig:
    """``config`` as the model of a run resumed with ``resume`` (a ResumePlan, or None) was built:
    steering may have changed its dropout rate since (a rate of 0 builds no dropout layers)."""
    built = built_dropout(config, resume.checkpoint.state.get("config_changes") or []) if resume else None
    return config if built is None else config.replace(dropout_rate=built)


def built_dropout(config: TrainingConfig, changes: Sequence[Mapping[str, Any]]) -> Optional[float]:
    """The dropout rate the run's model was built with, when ``changes`` changed it since (None if not)."""
    for event in changes:
        if "dropout_rate" in event["changes"]:
            return float(event["changes"]["dropout_rate"]["old"])
    return None


def rebase_at(new: TrainingConfig, changed: Any, epoch: int, between: bool, rate_in_use: float) -> tuple[float, int]:
    """(base rate, 0-based epoch it counts from) the schedule restarts on after a change of the
    fields ``changed`` to ``new``, made after a batch of 1-based ``epoch`` (``between``: after its
    last batch, before the next epoch). A new rate applies from the next batch, so the epoch that
    batch belongs to counts from it; a new schedule starts at the next epoch, on the rate in use."""
    if "learning_rate" in changed:
        return new.learning_rate, epoch if between else epoch - 1
    return rate_in_use, epoch


def steered_epochs(config: TrainingConfig, changes: Sequence[Mapping[str, Any]]) -> int:
    """The epochs of a run steered by ``changes``: the last ``epochs`` they set, else ``config``'s."""
    total = config.epochs
    for event in changes:
        if "epochs" in event["changes"]:
            total = int(event["changes"]["epochs"]["new"])
    return total


def steered_preview(config: TrainingConfig, changes: Sequence[Mapping[str, Any]],
                    num_batches: Optional[Mapping[int, int]] = None,
                    epochs: Optional[Sequence[int]] = None) -> list[float]:
    """The rate of each 0-based epoch in ``epochs`` (ascending; default: every epoch of the run as
    steered) of a run steered by ``changes`` (its ``config_changes``; ``config`` is its config now
    or at its start), as far as known before training (plateau: flat from each base rate): every
    change rebases the schedule where the epoch loop did (``steering_loop``). ``num_batches`` maps a
    1-based epoch to its batch count where known: a change at that count was made between that
    epoch and the next; any other change counts as made inside its epoch."""
    first: dict[str, Any] = {}
    for event in changes:
        for name, change in event["changes"].items():
            first.setdefault(name, change["old"])
    current = config.replace(**first)
    schedule = LRSchedule(current)
    counts = num_batches or {}

    def rate(e: int) -> float:      # an epoch in progress when a new schedule was set keeps its rate
        return schedule.lr(e) if e >= schedule.origin else schedule.base_lr

    pending = list(changes)
    rates = []
    for e in epochs if epochs is not None else range(steered_epochs(config, changes)):
        while pending:
            event = pending[0]
            epoch = int(event["epoch"])
            between = epoch in counts and int(event["batch"]) >= counts[epoch] > 0
            if (epoch if between else epoch - 1) > e:
                break
            pending.pop(0)
            fields = event["changes"]
            new = current.replace(**{k: v["new"] for k, v in fields.items()})
            if REBASING & set(fields):
                schedule.rebase(new, *rebase_at(new, fields, epoch, between, rate(epoch - 1)))
            current = new
        rates.append(rate(e))
    return rates
