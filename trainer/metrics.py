"""The metrics of an epoch: their names, their order in a history entry, and how sums become them.

Every backend sums a loss and a score (correct predictions, or absolute errors in the scaled
target's units) over the samples it sees and hands the sums to :func:`split_metrics`; the history
entry's keys and order, and the best-epoch summary, are defined here once.
"""
from __future__ import annotations

import math
from typing import Any, Optional, TypedDict

CLASSIFICATION = "classification"
REGRESSION = "regression"


class EpochMetrics(TypedDict, total=False):
    """One history entry: one finished epoch (``train_accuracy``/``val_accuracy`` for
    classification, ``train_mae``/``val_mae`` in the target's units for regression)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    train_mae: float
    val_loss: float
    val_accuracy: float
    val_mae: float
    learning_rate: float
    time_per_epoch: float


# The order of a history entry's keys (history.csv columns, tables).
HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "train_mae", "val_loss", "val_accuracy", "val_mae",
                "learning_rate", "time_per_epoch")


def score_name(task: str) -> str:
    """The per-sample score a task reports: ``accuracy`` for classes, ``mae`` for values."""
    return "accuracy" if task == CLASSIFICATION else "mae"


def split_metrics(split: str, loss_sum: float, score_sum: float, count: int, task: str,
                  target_std: float = 1.0) -> dict[str, float]:
    """``{"<split>_loss", "<split>_accuracy" | "<split>_mae"}`` from sums over ``count`` samples.

    ``score_sum`` counts correct predictions (classification) or sums absolute errors of the
    standardised target (regression), which ``target_std`` turns back into the target's units.
    """
    n = max(count, 1)
    score = score_sum / n
    if task != CLASSIFICATION:
        score *= target_std
    return {f"{split}_loss": loss_sum / n, f"{split}_{score_name(task)}": score}


def history_entry(epoch: int, metrics: dict[str, float], learning_rate: float,
                  time_per_epoch: float) -> EpochMetrics:
    """The history entry of one epoch, keys in :data:`HISTORY_KEYS` order."""
    values: dict[str, Any] = {"epoch": epoch, **metrics, "learning_rate": learning_rate,
                              "time_per_epoch": time_per_epoch}
    return {k: values[k] for k in HISTORY_KEYS if k in values}  # type: ignore[return-value]


def best_summary(history: list[EpochMetrics], best_epoch: Optional[int], task: str) -> dict[str, Any]:
    """``{"loss", "accuracy" | "mae", "epoch"}`` of the best epoch (by val_loss); {} before one."""
    if best_epoch is None or not 1 <= best_epoch <= len(history):
        return {}
    entry = history[best_epoch - 1]
    key = score_name(task)
    return {"loss": entry["val_loss"], key: entry.get(f"val_{key}", math.nan), "epoch": best_epoch}
