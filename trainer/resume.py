"""Checkpointing a running :class:`~trainer.run.Trainer` and resuming one from its checkpoint.

:class:`RunCheckpoints` decides when a run writes a checkpoint (``checkpoint_every_*``) and
captures everything the loop and the backend need to continue exactly. :func:`resume_run` reads
the newest usable checkpoint, checks the config and the DataFrame against it, and returns a
Trainer positioned where the checkpoint left off. This module reads and sets the Trainer's private
loop state; it is the loop's checkpoint half, kept apart from the loop itself.

What may change when resuming is only what cannot change the results (:data:`CHANGEABLE`);
``device`` is among them, but a run resumed on another device matches the uninterrupted one only
up to that device's floating-point differences.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Union

import pandas as pd

from .atomic import _json_default
from .checkpoints import (Checkpoint, CheckpointError, CheckpointWriter, ResumeMismatch, checkpoint_dir,
                          data_fingerprint, describe_differences, load_best, load_latest,
                          refuse_foreign_checkpoints)
from .config import TrainingConfig

if TYPE_CHECKING:
    from .events import Observer
    from .run import Trainer

log = logging.getLogger("trainer")

# Config fields a resumed run may change: none of them changes what is computed.
CHANGEABLE = ("name", "epochs", "device", "data_path", "output_path", "checkpoints", "checkpoint_every_epochs",
              "checkpoint_every_batches", "checkpoint_every_seconds", "checkpoint_keep")
_HINT = ("Only " + ", ".join(CHANGEABLE) + " may change when resuming; to train with other settings, "
         "start a new run with another output_path.")


# ---------------------------------------------------------------------- writing

class RunCheckpoints:
    """When and what one run checkpoints. ``write`` runs off the event loop, between slices."""

    def __init__(self, run: "Trainer", writer: CheckpointWriter):
        self.run = run
        self.writer = writer
        config = run.config
        self.every_epochs = config.checkpoint_every_epochs
        self.every_batches = config.checkpoint_every_batches
        self.every_seconds = config.checkpoint_every_seconds
        self.last_path: Optional[Path] = None
        self.written = 0
        self._last_time = time.monotonic()
        self._fingerprint: Optional[str] = None

    @classmethod
    def open(cls, run: "Trainer") -> Optional["RunCheckpoints"]:
        """The run's checkpointing, or None without ``output_path`` or with ``checkpoints=False``.
        A resumed run continues its checkpoints; a fresh one replaces an earlier run's only when
        constructed with ``overwrite=True`` (refused otherwise, also if they appeared since)."""
        config = run.config
        if not config.output_path:
            return None
        writer = CheckpointWriter(checkpoint_dir(config.output_path), config.checkpoint_keep)
        if run._resume_from is not None:
            if not config.checkpoints:
                return None
            writer.continue_from(run._resume_from)
            return cls(run, writer)
        refuse_foreign_checkpoints(config.output_path, run._overwrite)
        # Also without checkpoints of its own: a folder never mixes two runs' files.
        removed = writer.start_fresh()
        if removed:
            log.info("output_path %s: replaced %d checkpoint file(s) of an earlier run (overwrite=True)",
                     config.output_path, removed)
        return cls(run, writer) if config.checkpoints else None

    # ------------------------------------------------------------------ cadence
    def slice_end(self, batch: int, num_batches: int) -> int:
        """Where the next slice must end so a batch-cadence checkpoint lands on its batch."""
        if self.every_batches is None:
            return num_batches
        return min(num_batches, (batch // self.every_batches + 1) * self.every_batches)

    def due_mid_epoch(self, batch: int, num_batches: int) -> bool:
        if not 0 < batch < num_batches:
            return False
        return bool(self.every_batches and batch % self.every_batches == 0) or self._time_due()

    def due_epoch_end(self, epoch: int) -> bool:
        return epoch % self.every_epochs == 0 or self._time_due()

    def _time_due(self) -> bool:
        return self.every_seconds is not None and time.monotonic() - self._last_time >= self.every_seconds

    # ------------------------------------------------------------------ files
    def write_best(self, snapshot: Any) -> Path:
        """The weights of the epoch that just improved, kept apart from the rotation."""
        run = self.run
        epoch = run.current_epoch
        state = {"kind": "best", "epoch": epoch, "metrics": run.history[-1], "seed": run.seed,
                 "config": run.config.to_dict()}
        with self._failing_clearly():
            return self.writer.write_best(epoch, state, {"weights": run.backend.encode_weights(snapshot)})

    def write(self, final_state: Optional[str] = None, reason: Optional[str] = None) -> Path:
        """A checkpoint at the run's position: mid-epoch when batches of the next epoch are done."""
        run = self.run
        mid = 0 < run.batch < run.num_batches
        state = self._state(mid, final_state, reason)
        with self._failing_clearly():
            members = run.backend.checkpoint_state()
            self.last_path = self.writer.write(state["epoch"], state["batch"], run.early_stopping.best_epoch,
                                               state, members)
        self.written += 1
        self._last_time = time.monotonic()
        return self.last_path

    @contextlib.contextmanager
    def _failing_clearly(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise CheckpointError(f"could not write a checkpoint to {str(self.writer.directory)!r} ({exc}); "
                                  f"free disk space or fix the folder's permissions, then resume from the "
                                  f"last checkpoint; or train with checkpoints=False") from exc

    def _state(self, mid: bool, final_state: Optional[str], reason: Optional[str]) -> dict[str, Any]:
        run = self.run
        data = run.data
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(data.x, data.y, data.train_index, data.val_index)
        state: dict[str, Any] = {
            "epoch": run.current_epoch, "batch": run.batch if mid else 0,
            "num_batches": run.num_batches if mid else 0,
            "epoch_totals": run.backend.epoch_totals() if mid else None,
            # Active seconds of the partial epoch, so its time_per_epoch goes on where it left off.
            "elapsed": (time.perf_counter() - run._epoch_started - run._paused_seconds) if mid else 0.0,
            "seed": run.seed, "backend": run.config.backend, "config": run.config.to_dict(),
            "preprocessing": data.preprocessor.to_dict(),
            "data": {"rows": int(len(data.x)), "train": int(len(data.train_index)),
                     "validation": int(len(data.val_index)), "sha256": self._fingerprint},
            "history": run.history, "early_stopping": run.early_stopping.state_dict(),
            "schedule": run.schedule.state_dict(),
            "custom_model": bool(getattr(run.backend, "custom_model", False)),
            "final_state": final_state, "reason": reason, "written_at": time.time(),
        }
        return state


def continue_epoch(run: "Trainer") -> float:
    """At the first epoch of a run resumed mid-epoch: put back the batch position and the partial
    sums (after ``begin_epoch``) and return the epoch's active seconds so far; else 0."""
    ckpt = run._resume_from
    if ckpt is None:
        return 0.0
    run._resume_from = None
    epoch, batch = ckpt.position
    if batch == 0 or epoch != run.current_epoch:
        return 0.0
    if run.num_batches != ckpt.state["num_batches"]:
        raise CheckpointError(f"the checkpoint stopped at batch {batch} of {ckpt.state['num_batches']}, but the "
                              f"epoch now has {run.num_batches} batches")
    run.batch = batch
    run.backend.restore_epoch_totals(ckpt.state["epoch_totals"])
    return float(ckpt.state["elapsed"])


# ---------------------------------------------------------------------- resuming

def resume_run(cls: type["Trainer"], output_path: Union[str, Path], data: pd.DataFrame, *,
               config: Union[TrainingConfig, dict[str, Any], None] = None, model: Any = None,
               callbacks: Iterable["Observer"] = (), **changes: Any) -> "Trainer":
    """See :meth:`trainer.Trainer.from_checkpoint`."""
    if not isinstance(output_path, (str, Path)) or not str(output_path).strip():
        raise CheckpointError(f"output_path must be the folder of the run to resume, got {output_path!r}")
    directory = checkpoint_dir(output_path)
    best: dict[Path, Checkpoint] = {}

    def accept(ckpt: Checkpoint) -> None:
        # A checkpoint whose best weights are unreadable cannot continue exactly: fall back.
        saved = ckpt.state["config"]
        if saved.get("restore_best_weights") and ckpt.best_epoch is not None:
            best[ckpt.path] = load_best(directory, ckpt.best_epoch)

    ckpt = load_latest(directory, accept)
    effective = _effective_config(ckpt, output_path, config, changes)
    _check_model(ckpt, model)
    _check_can_continue(ckpt, effective)
    _check_columns(ckpt, data)
    # The checkpoints in output_path are this run's own: it continues them.
    run = cls(effective, data, model=model, callbacks=callbacks, overwrite=True)
    _check_data(ckpt, run)
    snapshot = None
    if ckpt.path in best:
        try:
            snapshot = run.backend.decode_weights(best[ckpt.path].members["weights"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"the best weights of epoch {ckpt.best_epoch} do not fit this model: {exc}") from None
    try:
        run.backend.load_checkpoint_state(ckpt.members)
    except ValueError as exc:
        raise CheckpointError(f"{ckpt.path.name}: {exc}") from None
    _restore_loop_state(run, ckpt, snapshot)
    epoch, batch = ckpt.position
    log.info("resuming %s from %s (epoch %d done%s)", output_path, ckpt.path.name, epoch,
             f", {batch} batches into epoch {epoch + 1}" if batch else "")
    return run


def _restore_loop_state(run: "Trainer", ckpt: Checkpoint, best_snapshot: Any) -> None:
    state = ckpt.state
    run.history = [dict(entry) for entry in state["history"]]
    run.current_epoch = int(state["epoch"])
    run.batch = int(state["batch"])
    run.num_batches = int(state["num_batches"])
    run.early_stopping.load_state_dict(state["early_stopping"])
    run.schedule.load_state_dict(state["schedule"])
    run._best_snapshot = best_snapshot
    run._resume_from = ckpt


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
                              f"epochs, e.g. Trainer.resume(output_path, df, epochs={epoch + 10})")


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


def _check_model(ckpt: Checkpoint, model: Any) -> None:
    custom = ckpt.state.get("custom_model")
    if custom and model is None:
        raise CheckpointError("the run trained a model of your own: pass a fresh instance of it, "
                              "Trainer.resume(output_path, df, model=YourModel(...))")
    if not custom and model is not None:
        raise CheckpointError(f"the run trained the built-in {ckpt.state['config']['model_type']!r} model; "
                              f"resume without model=")


def _check_data(ckpt: Checkpoint, run: "Trainer") -> None:
    """The DataFrame must prepare to exactly what the run trained on."""
    saved_pre = ckpt.state["preprocessing"]
    pre = run.data.preprocessor.to_dict()
    diffs = describe_differences(_jsonable(saved_pre), _jsonable(pre), given_name="the DataFrame gives")
    saved = ckpt.state["data"]
    data = run.data
    rows = {"rows": int(len(data.x)), "train": int(len(data.train_index)), "validation": int(len(data.val_index))}
    diffs += describe_differences({k: saved[k] for k in rows}, rows, list(rows), given_name="the DataFrame gives")
    if not diffs and data_fingerprint(data.x, data.y, data.train_index, data.val_index) != saved["sha256"]:
        diffs.append({"field": "values", "checkpoint": saved["sha256"][:12], "given": None,
                      "message": "same columns, rows and statistics, but other values or another row order"})
    if diffs:
        raise ResumeMismatch("data", diffs, "Resume with the DataFrame the run was started with, unchanged.")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    # The checkpoint's copy went through JSON (tuples became lists, numpy scalars plain numbers).
    return json.loads(json.dumps(d, default=_json_default, allow_nan=True))
