"""Reading runs back for comparison: saved run folders and in-memory runs as :class:`RunRecord`,
their per-epoch metrics as one long DataFrame, and a table of what differs between them.

A saved run is a folder holding ``config.json`` and ``history.json`` (``metadata.json`` too when
the run finished writing); :func:`find_runs` finds them under a folder. Nothing here needs a
framework or a widget: it works in a fresh process from the files alone.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import pandas as pd

from .config import TrainingConfig

RUN_FILES = ("config.json", "history.json")
METRIC_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "train_mae", "val_mae",
               "learning_rate", "time_per_epoch")
BEST_KEYS = ("loss", "accuracy", "mae", "epoch")
# Fields that never change what a run computes (its name, where it saves, checkpoints, tracking):
# a difference there is no explanation for different curves. The name is the run's label anyway.
NOT_COMPARED = ("name", "output_path", "checkpoints", "checkpoint_every_epochs", "checkpoint_every_batches",
                 "checkpoint_every_seconds", "checkpoint_keep", "loggers", "mlflow_tracking_uri")
# MLflow stores: their artifact copies of runs are not runs of their own.
_NOT_SEARCHED = ("mlruns", "mlartifacts")
DEFAULT_NAME = TrainingConfig.model_fields["name"].default    # a run left unnamed

RunLike = Union[str, Path, "RunRecord", Any]


@dataclass
class RunRecord:
    """One run as the comparison sees it."""

    label: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    state: str
    best_metrics: dict[str, Any] = field(default_factory=dict)
    reason: Optional[str] = None
    path: Optional[Path] = None
    modified: float = 0.0        # when it was saved (or read), for newest-first order
    run: Any = None              # the in-memory Trainer it came from, if any
    # What steering changed while it trained (``config_change`` data, trainer.steering); [] if nothing.
    config_changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def task(self) -> str:
        """"classification" or "regression", from the metrics the run recorded."""
        keys = set().union(*(entry.keys() for entry in self.history)) if self.history else set()
        if "val_mae" in keys:
            return "regression"
        if "val_accuracy" in keys:
            return "classification"
        return str(self.config.get("task", "auto"))

    @property
    def epochs_done(self) -> int:
        return len(self.history)


def is_run_folder(path: Union[str, Path]) -> bool:
    path = Path(path)
    return all((path / name).is_file() for name in RUN_FILES)


def read_run(path: Union[str, Path]) -> RunRecord:
    """The run saved in ``path``; FileNotFoundError or ValueError saying what is missing or broken."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"no run folder at {str(path)!r}")
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{str(path)!r} is not a saved run: {', '.join(missing)} missing (a run writes "
                                f"them to its output_path when it ends)")
    try:
        config = json.loads((path / "config.json").read_text())
        saved = json.loads((path / "history.json").read_text())
        meta_file = path / "metadata.json"
        metadata = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} holds a damaged run file: {exc}") from None
    if not isinstance(config, dict) or not isinstance(saved, dict):
        raise ValueError(f"{str(path)!r}: config.json and history.json must hold JSON objects")
    history = [dict(entry) for entry in saved.get("history", [])]
    return RunRecord(label=_label(config, path), config=config, history=history,
                     state=str(saved.get("state") or metadata.get("state") or "unknown"),
                     best_metrics=dict(saved.get("best_metrics") or metadata.get("best_metrics") or {}),
                     reason=saved.get("reason"), path=path, modified=(path / "history.json").stat().st_mtime,
                     config_changes=_changes(saved.get("config_changes")))


def record_of(run: Any) -> RunRecord:
    """An in-memory run (a :class:`trainer.Trainer`) as it stands now."""
    config = run.config.to_saved_dict()
    path = Path(config["output_path"]).expanduser() if config.get("output_path") else None
    state = run.state
    finished = getattr(run, "finished_at", None) or getattr(run, "started_at", None) or 0.0
    return RunRecord(label=_label(config, path), config=config, history=[dict(e) for e in run.history],
                     state=str(getattr(state, "value", state)), best_metrics=dict(run.best_metrics),
                     reason=getattr(run, "reason", None), path=path, modified=float(finished), run=run,
                     config_changes=_changes(getattr(run, "config_changes", None)))


def find_runs(folder: Union[str, Path]) -> list[Path]:
    """Saved run folders under ``folder`` (itself included), newest first. A run's own subfolders
    (checkpoints, tensorboard) and MLflow stores (``mlruns``) are not searched; folders that are
    not runs are skipped."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {str(root)!r} to look for runs in")
    found: list[Path] = []
    for here, dirs, _files in os.walk(root):
        path = Path(here)
        if is_run_folder(path):
            found.append(path)
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _NOT_SEARCHED)
    found.sort(key=lambda p: (p / "history.json").stat().st_mtime, reverse=True)
    return found


def load_runs(items: Union[RunLike, Iterable[RunLike]]) -> list[RunRecord]:
    """Records for run folders, folders holding runs, in-memory runs or records, in that order
    (each folder's runs newest first), with unique labels."""
    if isinstance(items, (str, Path, RunRecord)) or hasattr(items, "history"):
        items = [items]
    records: list[RunRecord] = []
    for item in items:
        if isinstance(item, RunRecord):
            records.append(item)
        elif isinstance(item, (str, Path)):
            path = Path(item).expanduser()
            if is_run_folder(path):
                records.append(read_run(path))
            else:
                runs = find_runs(path)
                if not runs:
                    raise FileNotFoundError(f"no saved runs under {str(path)!r} (a run folder holds config.json "
                                            f"and history.json)")
                records += [read_run(p) for p in runs]
        elif hasattr(item, "history") and hasattr(item, "config"):
            records.append(record_of(item))
        else:
            raise TypeError(f"cannot compare {type(item).__name__}: give run folders, a folder of runs, "
                            f"trainer.Trainer runs or RunRecords")
    return unique_labels(records)


def unique_labels(records: list[RunRecord]) -> list[RunRecord]:
    seen: dict[str, int] = {}
    for record in records:
        base = record.label
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            record.label = f"{base} ({seen[base]})"
    return records


def metrics_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run, epoch and metric: columns ``run``, ``epoch``, ``metric``, ``value``."""
    rows = [(r.label, int(entry["epoch"]), key, float(entry[key]))
            for r in records for entry in r.history for key in METRIC_KEYS
            if key in entry and entry[key] is not None]
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "value"])


def config_differences(records: list[RunRecord]) -> pd.DataFrame:
    """The config fields whose values differ between the runs (one row per run, by label)."""
    fields: list[str] = []
    for record in records:
        fields += [k for k in record.config if k not in fields and k not in NOT_COMPARED]
    differing = [f for f in fields if len({_key(r.config.get(f)) for r in records}) > 1]
    table = pd.DataFrame([{f: _shown(r.config.get(f)) for f in differing} for r in records],
                         index=pd.Index([r.label for r in records], name="run"), columns=differing)
    return table


def comparison_table(records: list[RunRecord]) -> pd.DataFrame:
    """Per run: state, ``epochs_done``, the best metrics (``best_loss``, ``best_accuracy`` or
    ``best_mae``, ``best_epoch``), ``steered`` (the changes made while it trained, when any run
    had some) and the config fields that differ between the runs."""
    summary = pd.DataFrame([{"state": r.state, "epochs_done": r.epochs_done,
                             **{f"best_{k}": r.best_metrics.get(k) for k in BEST_KEYS},
                             "steered": describe_changes(r.config_changes) or None} for r in records],
                           index=pd.Index([r.label for r in records], name="run"))
    summary = summary.dropna(axis=1, how="all")
    return summary.join(config_differences(records))


def describe_change(change: dict[str, Any]) -> str:
    """One applied change in words: ``epoch 3, batch 12: learning_rate 0.01 → 0.005``."""
    fields = change.get("changes") or {}
    what = ", ".join(f"{name} {_value(v.get('old'))} \u2192 {_value(v.get('new'))}" for name, v in fields.items()
                     if isinstance(v, dict))
    where = f"epoch {change.get('epoch', '?')}"
    if change.get("batch"):
        where += f", batch {change['batch']}"
    return f"{where}: {what}"


def describe_changes(changes: Iterable[dict[str, Any]]) -> str:
    """Every applied change of a run, in order, separated by ``; `` ('' for a run never steered)."""
    return "; ".join(describe_change(c) for c in changes)


def _changes(value: Any) -> list[dict[str, Any]]:
    # Files a run wrote are read as they are: anything but a list of change dicts counts as none.
    return [dict(c) for c in value if isinstance(c, dict)] if isinstance(value, list) else []


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _shown(value) if isinstance(value, (list, tuple)) else str(value)


def _label(config: dict[str, Any], path: Optional[Path]) -> str:
    name = config.get("name")
    if name and name != DEFAULT_NAME:
        return str(name)
    return path.name if path is not None and path.name else "run"


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _shown(value: Any) -> Any:
    return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value
