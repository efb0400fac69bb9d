"""Resuming a run from its checkpoint, as a pure step: checkpoint in, config and state out.

:func:`plan_resume` reads the newest usable checkpoint in ``output_path`` and checks what was asked
against it (config changes, the model, whether anything is left to train, the DataFrame's columns).
The :class:`ResumePlan` it returns holds the effective config, the run's saved
:class:`~trainer.state.RunState` and the backend's saved state; the epoch loop applies it
(``LocalRun(plan.config, df, resume=plan)``) after checking that the DataFrame prepares to exactly
what the run trained on (:meth:`ResumePlan.check_data`).

What may change when resuming is only what cannot change the results (:data:`CHANGEABLE`);
``device`` is among them, but a run resumed on another device matches the uninterrupted one only
up to that device's floating-point differences.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import pandas as pd

from . import data_values
from .atomic import json_default
from .backends import backend_module
from .checkpoints import (Checkpoint, CheckpointError, ResumeMismatch, checkpoint_dir, data_fingerprint,
                          describe_differences, load_best, load_latest)
from .config import TrainingConfig
from .data import PreparedData
from .state import FINAL_VALUES, RunState, TrainingState
from .steering import initial_config

log = logging.getLogger("trainer")

# Config fields a resumed run may change: none of them changes what is computed.
CHANGEABLE = ("name", "epochs", "device", "data_path", "output_path", "checkpoints", "checkpoint_every_epochs",
              "checkpoint_every_batches", "checkpoint_every_seconds", "checkpoint_keep", "loggers", "mlflow_tracking_uri")
_HINT = ("Only " + ", ".join(CHANGEABLE) + " may change when resuming; to train with other settings, "
         "start a new run with another output_path.")


@dataclass
class ResumePlan:
    """A checked checkpoint, ready for the loop to continue from."""

    checkpoint: Checkpoint
    config: TrainingConfig
    best_weights: Optional[bytes]     # the best epoch's encoded weights, when they are restored at the end
    # Nothing is left to train but the run never saved its artifacts (killed while writing them):
    # the resumed run only writes them and ends as the checkpoint says it ended.
    finishes: bool = False

    @property
    def position(self) -> tuple[int, int]:
        """(epochs done, batches done in the next epoch)."""
        return self.checkpoint.position

    @property
    def backend_state(self) -> dict[str, bytes]:
        return self.checkpoint.members

    @property
    def custom_model(self) -> bool:
        return bool(self.checkpoint.state.get("custom_model"))

    def run_state(self, task: str) -> RunState:
        """The run's state as the checkpoint left it, for a run of :attr:`config`."""
        return RunState.from_dict(self.checkpoint.state, self.config, task)

    def check_data(self, data: PreparedData) -> None:
        """The DataFrame must prepare to exactly what the run trained on; ResumeMismatch if not."""
        saved_state = self.checkpoint.state
        pre = data.preprocessor.to_dict()
        diffs = describe_differences(_jsonable(saved_state["preprocessing"]), _jsonable(pre),
                                     given_name="the DataFrame gives")
        if data_values.hidden():
            diffs = [_without_values(d) for d in diffs]
        saved = saved_state["data"]
        rows = {"rows": int(len(data.x)), "train": int(len(data.train_index)), "validation": int(len(data.val_index))}
        diffs += describe_differences({k: saved[k] for k in rows}, rows, list(rows), given_name="the DataFrame gives")
        if not diffs and data_fingerprint(data.x, data.y, data.train_index, data.val_index) != saved["sha256"]:
            diffs.append({"field": "values", "checkpoint": saved["sha256"][:12], "given": None,
                          "message": "same columns, rows and statistics, but other values or another row order"})
        if diffs:
            raise ResumeMismatch("data", diffs, "Resume with the DataFrame the run was started with, unchanged.")

    def ending(self, state: RunState) -> tuple[TrainingState, str]:
        """How a run that :attr:`finishes` ends: as its final checkpoint says, else as the loop
        would have said (``state`` is :meth:`run_state`'s answer)."""
        saved = self.checkpoint.state
        if saved.get("final_state") in FINAL_VALUES and saved.get("reason"):
            return TrainingState(saved["final_state"]), str(saved["reason"])
        assert state.early_stopping is not None
        if state.early_stopping.stopped_epoch is not None:
            return TrainingState.EARLY_STOPPED, "early stopping: " + state.early_stopping.reason()
        return TrainingState.COMPLETED, f"finished all {state.total_epochs} epochs"

    def describe(self) -> str:
        epoch, batch = self.position
        return f"{self.checkpoint.path.name} (epoch {epoch} done" + (
            f", {batch} batches into epoch {epoch + 1})" if batch else ")")


def plan_resume(output_path: Union[str, Path], data: pd.DataFrame, *,
                config: Union[TrainingConfig, dict[str, Any], None] = None, custom_model: bool = False,
                **changes: Any) -> ResumePlan:
    """Check a resume of the run checkpointed in ``output_path`` on ``data`` (see
    :meth:`trainer.Trainer.from_checkpoint`). Raises CheckpointError when there is nothing usable
    (a corrupt newest checkpoint is skipped with a RuntimeWarning) and ResumeMismatch listing what differs."""
    if not isinstance(output_path, (str, Path)) or not str(output_path).strip():
        raise CheckpointError(f"output_path must be the folder of the run to resume, got {output_path!r}")
    directory = checkpoint_dir(output_path)
    best: dict[Path, Checkpoint] = {}

    def accept(ckpt: Checkpoint) -> None:
        _check_backend_state(ckpt)
        # A checkpoint whose best weights are unreadable cannot continue exactly: fall back.
        if ckpt.state["config"].get("restore_best_weights") and ckpt.best_epoch is not None:
            best[ckpt.path] = load_best(directory, ckpt.best_epoch)

    ckpt = load_latest(directory, accept)
    effective = _effective_config(ckpt, output_path, config, changes)
    _check_model(ckpt, custom_model)
    finishes = _finished_unsaved(ckpt, effective)
    if not finishes:
        _check_can_continue(ckpt, effective)
    _check_columns(ckpt, data)
    weights = best[ckpt.path].members.get("weights") if ckpt.path in best else None
    if ckpt.path in best and weights is None:
        raise CheckpointError(f"the best weights of epoch {ckpt.best_epoch} are missing from their file")
    return ResumePlan(ckpt, effective, weights, finishes)


def _effective_config(ckpt: Checkpoint, output_path: Union[str, Path], given: Any,
                      changes: dict[str, Any]) -> TrainingConfig:
    """The checkpoint's config with the run's seed, this output_path and the allowed changes."""
    saved = dict(ckpt.state["config"])
    seed = ckpt.state["seed"]
    wanted: dict[str, Any] = {}
    if given is not None:
        given_config = given if isinstance(given, TrainingConfig) else TrainingConfig.from_dict(given)
        given_dict = given_config.to_dict()
        if given_dict.get("seed") is None:       # an unseeded config asks for no particular seed
            given_dict["seed"] = seed
        fixed = [k for k in saved if k not in CHANGEABLE]
        diffs = describe_differences({**saved, "seed": seed}, given_dict, fixed, given_name="the given config")
        steered = ckpt.state.get("config_changes") or []
        if diffs and steered:
            # A steered run (trainer.steering) may also be resumed with the config it started with;
            # what steering changed keeps its steered value.
            first = initial_config(saved, steered)
            if not describe_differences({**first, "seed": seed}, given_dict, fixed, given_name="the given config"):
                diffs = []
                given_dict.update({k: saved[k] for e in steered for k in e["changes"] if k in saved})
        if diffs:
            raise ResumeMismatch("config", diffs, _HINT)
        wanted.update({k: given_dict[k] for k in CHANGEABLE if k in given_dict})
    refused = [{"field": k, "checkpoint": saved.get(k), "given": v,
                "message": f"cannot change when resuming (checkpoint has {saved.get(k)!r}, given {v!r})"}
               for k, v in changes.items() if k not in CHANGEABLE and k in saved and saved.get(k) != v]
    if refused:
        raise ResumeMismatch("config", refused, _HINT)
    wanted.update(changes)
    wanted["output_path"] = str(output_path)
    return TrainingConfig.from_dict({**saved, "seed": seed, **wanted})


def _check_backend_state(ckpt: Checkpoint) -> None:
    """CheckpointError (so an older checkpoint is tried) when the backend's state in ``ckpt`` does
    not load: intact as a zip, its contents can still be bad."""
    name = ckpt.state.get("backend") or ckpt.state["config"].get("backend", "torch")
    module = backend_module(name)       # BackendUnavailable (not installed) is no fault of the file
    try:
        module.check_checkpoint_state(ckpt.members)
    except Exception as exc:
        raise CheckpointError(f"{ckpt.path.name}: its {name} state does not load ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None


def _finished_unsaved(ckpt: Checkpoint, config: TrainingConfig) -> bool:
    """Whether the run has nothing left to train (all epochs done, or early-stopped) while its
    output_path lacks ``metadata.json``, which saving writes last."""
    epoch, batch = ckpt.position
    state = ckpt.state
    es = state["early_stopping"]
    early_stopped = es.get("stopped_epoch") is not None and es.get("enabled", True)
    if not (early_stopped or (batch == 0 and epoch == config.epochs)):
        return False
    assert config.output_path is not None
    return not (Path(config.output_path).expanduser() / "metadata.json").is_file()


def _check_can_continue(ckpt: Checkpoint, config: TrainingConfig) -> None:
    epoch, batch = ckpt.position
    state = ckpt.state
    es = state["early_stopping"]
    if es.get("stopped_epoch") is not None and es.get("enabled", True):
        raise CheckpointError(f"the run early-stopped after epoch {es['stopped_epoch']} (no improvement of val_loss "
                              f"for {es.get('patience')} epochs): there is nothing to continue; start a new run")
    if config.epochs < epoch + (1 if batch else 0):
        done = f"{epoch} epochs" + (f" and {batch} batches of epoch {epoch + 1}" if batch else "")
        raise ResumeMismatch("config", [{"field": "epochs", "checkpoint": state["config"]["epochs"],
                                         "given": config.epochs,
                                         "message": f"the checkpoint has already done {done}; pass epochs > {epoch}"}])
    if epoch >= config.epochs:
        raise CheckpointError(f"the run already finished all {epoch} epochs; to train further pass a larger "
                              f"epochs, e.g. Trainer.from_checkpoint(output_path, df, epochs={epoch + 10})")


def _check_columns(ckpt: Checkpoint, data: pd.DataFrame) -> None:
    if not isinstance(data, pd.DataFrame):
        raise CheckpointError(f"resuming needs the training data as a pandas DataFrame, got {type(data).__name__}")
    pre = ckpt.state["preprocessing"]
    needed = [*pre["feature_columns"], pre["target_column"]]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ResumeMismatch("data", [{"field": "columns", "checkpoint": needed, "given": list(data.columns),
                                       "message": f"the DataFrame lacks {missing}, which the run trained on "
                                                  f"(features {pre['feature_columns']}, target {pre['target_column']!r})"}],
                             "Resume with the DataFrame the run was started with.")


def _check_model(ckpt: Checkpoint, custom_model: bool) -> None:
    custom = ckpt.state.get("custom_model")
    if custom and not custom_model:
        raise CheckpointError("the run trained a model of your own: pass a fresh instance of it, "
                              "Trainer.from_checkpoint(output_path, df, model=YourModel(...))")
    if not custom and custom_model:
        raise CheckpointError(f"the run trained the built-in {ckpt.state['config']['model_type']!r} model; "
                              f"resume without model=")


# Preprocessing fields computed from the data's values (the others hold column names and settings).
_VALUE_FIELDS = ("means", "stds", "medians", "categorical", "classes", "target_mean", "target_std")


def _without_values(diff: dict[str, Any]) -> dict[str, Any]:
    """A preprocessing difference told by counts and column names only (see trainer.data_values)."""
    field, saved, given = diff["field"], diff["checkpoint"], diff["given"]
    if field not in _VALUE_FIELDS:
        return diff
    if field == "classes" and isinstance(saved, list) and isinstance(given, list):
        message = (f"checkpoint has {len(saved)} classes, the DataFrame gives {len(given)}" if len(saved) != len(given)
                   else f"other class labels ({len(given)} of them; the labels are not shown)")
    elif field == "categorical" and isinstance(saved, dict) and isinstance(given, dict):
        columns = sorted((c for c in set(saved) | set(given) if saved.get(c) != given.get(c)), key=str)
        message = f"other categories in columns {columns} (the categories are not shown)"
    else:
        message = "other values computed from the data (the values are not shown)"
    return {"field": field, "checkpoint": None, "given": None, "message": message}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    # The checkpoint's copy went through JSON (tuples became lists, numpy scalars plain numbers).
    return json.loads(json.dumps(d, default=json_default, allow_nan=True))
