"""The numbers behind the curves: one run's per-epoch columns, downsampling, the LR preview and
integer epoch ticks. No widgets here."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

import trainer
from trainer.schedules import LRSchedule
from trainer.steering import steered_epochs, steered_preview

MAX_POINTS = 500
_PREVIEW_EXACT_LIMIT = 20_000   # schedules up to this many epochs are previewed epoch by epoch


def downsample_indices(n: int, series: Sequence[np.ndarray], max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices (sorted, first and last included) keeping each series' min and max per bucket,
    at most ``max_points`` in all."""
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // (2 * max(1, len(series))))
    size = math.ceil(n / buckets)
    buckets = math.ceil(n / size)
    keep = [np.array([0, n - 1])]
    rows = np.arange(buckets) * size
    for values in series:
        # NaN (missing values and the padding of the last bucket) never wins a min or a max.
        padded = np.full(buckets * size, np.nan)
        padded[:n] = values
        grid = padded.reshape(buckets, size)
        missing = np.isnan(grid)
        keep.append(rows + np.argmin(np.where(missing, np.inf, grid), axis=1))
        keep.append(rows + np.argmax(np.where(missing, -np.inf, grid), axis=1))
    idx = np.unique(np.concatenate(keep))
    return idx[idx < n]


def lr_preview(config: trainer.TrainingConfig, max_points: int = MAX_POINTS,
               changes: Sequence[dict[str, Any]] = (), num_batches: Optional[dict[int, int]] = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """(epoch numbers, rates) of the schedule as known before training, downsampled; with
    ``changes`` (a steered run's ``config_change`` data) the schedule as they rebased it
    (``num_batches``: an epoch's batch count, where known)."""
    epochs = steered_epochs(config, changes)
    schedule = LRSchedule(config)

    def rates_at(idx: np.ndarray) -> np.ndarray:
        if changes:
            return np.asarray(steered_preview(config, changes, num_batches, idx.tolist()), dtype=float)
        return np.array([schedule.lr(int(e)) for e in idx], dtype=float)

    if epochs <= _PREVIEW_EXACT_LIMIT:
        rates = rates_at(np.arange(epochs))
        idx = downsample_indices(epochs, [rates], max_points)
        return idx + 1.0, rates[idx]
    # Too long to walk epoch by epoch on every keystroke: sample the closed-form schedule.
    idx = np.unique(np.linspace(0, epochs - 1, max_points).round().astype(int))
    return idx + 1.0, rates_at(idx)


_NICE_STEPS = (1, 2, 5)


def epoch_ticks(low: int, high: int, most: int = 8) -> list[int]:
    """Whole-epoch tick values from ``low`` to ``high``: every epoch when few, else a 1-2-5 step."""
    if high <= low:
        return [low]
    span = high - low
    step, scale = 1, 1
    while span / step > most - 1:
        for nice in _NICE_STEPS:
            step = nice * scale
            if span / step <= most - 1:
                break
        else:
            scale *= 10
            continue
        break
    first = math.ceil(low / step) * step
    ticks = list(range(first, high + 1, step))
    if low not in ticks and (not ticks or ticks[0] - low > step / 2):
        ticks.insert(0, low)
    return ticks


class Series:
    """One run's per-epoch values in growing numpy columns (no per-refresh list conversion)."""

    COLUMNS = ("epoch", "train_loss", "val_loss", "train_metric", "val_metric", "lr")

    def __init__(self, classification: bool = True) -> None:
        self.classification = classification
        self._data = np.empty((len(self.COLUMNS), 64))
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append_entry(self, entry: dict[str, Any]) -> None:
        """Add one history entry (the trainer's keys)."""
        key = "accuracy" if self.classification else "mae"
        self.append(entry["epoch"], entry["train_loss"], entry["val_loss"], entry.get(f"train_{key}", math.nan),
                    entry.get(f"val_{key}", math.nan), entry["learning_rate"])

    def append(self, *values: float) -> None:
        if self._n == self._data.shape[1]:
            self._data = np.concatenate([self._data, np.empty_like(self._data)], axis=1)
        self._data[:, self._n] = values
        self._n += 1

    def column(self, name: str) -> np.ndarray:
        return self._data[self.COLUMNS.index(name), :self._n]

    @property
    def val_loss(self) -> np.ndarray:
        return self.column("val_loss")

    @property
    def val_metric(self) -> np.ndarray:
        return self.column("val_metric")

    @property
    def train_metric(self) -> np.ndarray:
        return self.column("train_metric")

    def last_epoch(self) -> int:
        return int(self.column("epoch")[-1]) if self._n else 0

    def best(self, name: str, higher_is_better: bool = False) -> Optional[tuple[float, int]]:
        """(best value, its epoch) of a column, ignoring NaN; None when it has no value yet."""
        values = self.column(name)
        if not len(values) or np.all(np.isnan(values)):
            return None
        i = int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))
        return float(values[i]), int(self.column("epoch")[i])

    def last(self, name: str) -> Optional[float]:
        values = self.column(name)
        return float(values[-1]) if len(values) and not math.isnan(values[-1]) else None

    def arrays(self, max_points: int) -> dict[str, np.ndarray]:
        """Downsampled copies sharing one set of epochs (so train and val travel in one mark)."""
        idx = downsample_indices(self._n, [self.column(c) for c in ("train_loss", "val_loss", "val_metric")],
                                 max_points)
        return {name: self.column(name)[idx] for name in self.COLUMNS}
