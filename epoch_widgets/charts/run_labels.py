"""Naming runs by what sets them apart: of the settings that differ between runs, each run's own
values, short for legends and lists ("lr 0.01, bs 64") and in full for their tooltips ("Learning
rate 0.01; Batch size 64"). The panel's faded previous run, its Runs tab and ``compare_runs`` all
name runs here, so a run is called the same everywhere."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Mapping, Sequence

from trainer.config import FIELD_SPECS, SEQUENCE_MODELS, TrainingConfig
from trainer.run_records import DEFAULT_NAME, NOT_COMPARED, RunRecord

# Short names, most telling first (a label shows the first few that differ); "" shows the value
# alone ("mlp", "adam"). Fields not listed keep their own names, after these.
SHORT_NAMES = {
    "model_type": "", "learning_rate": "lr", "batch_size": "bs", "optimizer": "", "hidden_units": "layers",
    "learning_rate_scheduler": "schedule", "epochs": "epochs", "dropout_rate": "dropout", "seed": "seed",
    "backend": "", "data_path": "data", "feature_columns": "features", "target_column": "target",
    "validation_split": "val split", "sequence_length": "window", "early_stopping": "early stop",
    "early_stopping_patience": "patience", "restore_best_weights": "best weights", "step_size": "step",
    "patience": "plateau wait", "mixed_precision": "mixed precision", "cuda_graphs": "CUDA graphs",
}
_SKIPPED = frozenset(NOT_COMPARED) | {"algorithm_type"}


@dataclass(frozen=True)
class RunLabel:
    """What sets one run apart: ``short`` for a legend, ``full`` for its tooltip ("" when nothing does)."""

    short: str
    full: str


def difference_labels(configs: Sequence[Mapping[str, Any]], limit: int = 3) -> list[RunLabel]:
    """For each config (a ``TrainingConfig.to_dict()``, or a saved ``config.json``), its values of
    the settings that differ between ``configs``; ``short`` names at most ``limit`` of them."""
    differing = [name for name in _ordered(configs) if len({_key(c.get(name)) for c in configs}) > 1]
    labels = []
    for config in configs:
        own = [name for name in differing if _applies(name, config)]
        short = [_short(name, config.get(name)) for name in own[:limit]]
        if len(own) > limit:
            short.append(f"+{len(own) - limit} more")
        labels.append(RunLabel(", ".join(short), "; ".join(f"{_label(n)} {_value(n, config.get(n))}" for n in own)))
    return labels


def run_names(records: Sequence[RunRecord]) -> list[RunLabel]:
    """What to call each run: its own name (given, or its folder's) with what sets it apart
    ("mlp1 (lr 0.01)"), or only what sets it apart for a run with neither ("lr 0.01", not "run 2");
    ``full`` starts with the run's label ("run 2: Learning rate 0.01")."""
    names = []
    for record, differs in zip(records, difference_labels([r.config for r in records])):
        if _unnamed(record) and differs.short:
            names.append(RunLabel(differs.short, f"{record.label}: {differs.full}"))
        elif differs.short:
            names.append(RunLabel(f"{record.label} ({differs.short})", f"{record.label}: {differs.full}"))
        else:
            names.append(RunLabel(record.label, record.label))
    return names


def _unnamed(record: RunRecord) -> bool:
    """Whether nobody named the run: no folder, and the schema's default name or the one the panel
    makes up from the model and the start time ("mlp 2026-12-07 16:43:12"), which says less than
    what sets the run apart."""
    if record.path is not None:
        return False
    name = str(record.config.get("name") or DEFAULT_NAME)
    made_up = rf"{re.escape(str(record.config.get('model_type')))} \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d"
    return name == DEFAULT_NAME or re.fullmatch(made_up, name) is not None


def _ordered(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    names = [n for n in SHORT_NAMES if n not in _SKIPPED]
    for config in configs:
        names += [n for n in config if n not in names and n not in _SKIPPED]
    return names


def _applies(name: str, config: Mapping[str, Any]) -> bool:
    """Whether ``name`` changes what ``config`` computes: a scheduler's parameters only under that
    scheduler, the window length only for sequence models."""
    spec = FIELD_SPECS.get(name)
    if spec is not None and spec.scheduler is not None:
        return config.get("learning_rate_scheduler") == spec.scheduler
    if name == "sequence_length":
        return config.get("model_type") in SEQUENCE_MODELS
    return True


def _short(name: str, value: Any) -> str:
    short = SHORT_NAMES.get(name, name)
    text = _value(name, value, sep="-")
    return f"{short} {text}" if short else text


def _label(name: str) -> str:
    info = TrainingConfig.model_fields.get(name)
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("label") or name.replace("_", " ").capitalize())


def _value(name: str, value: Any, sep: str = ", ") -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return sep.join(str(v) for v in value) or "none"
    if name == "data_path":
        return PurePath(str(value)).name
    return str(value)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
