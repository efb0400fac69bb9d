"""The validation split of a streamed table, as the in-memory path draws it.

A sample is a row (``mlp``) or the window of ``sequence_length`` rows ending at a row (cnn, lstm,
gru), named by that last row. ``mlp``: the first ``n_val`` positions of the seeded permutation
``default_rng(seed).permutation(n_samples)`` validate, exactly the rows
:func:`~trainer.data.prepare_data` holds out for the same seed; the split is kept as one bit per
row. Sequence models: the last ``n_val`` windows validate (time order is kept).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..config import ConfigError, TrainingConfig


@dataclass
class Split:
    n_rows: int
    window: Optional[int]
    n_val: int
    is_val: Optional[np.ndarray]         # per sample, mlp only

    @classmethod
    def of(cls, config: TrainingConfig, n_rows: int, seed: int) -> "Split":
        window = config.sequence_length if config.is_sequence_model else None
        n_samples = n_rows - (window - 1 if window else 0)
        if n_samples < 2:
            raise ConfigError.single("sequence_length" if window else "data", window or n_rows,
                                     f"the data has {n_rows} rows, too few for training"
                                     + (f" windows of {window} rows" if window else
                                        ": it needs at least 2 (one to train on, one to validate)"))
        n_val = max(1, int(round(n_samples * config.validation_split)))
        if n_samples - n_val < 1:
            raise ConfigError.single("validation_split", config.validation_split,
                                     f"leaves no training samples out of {n_samples}; lower it or add data")
        is_val = None
        if window is None:
            is_val = np.zeros(n_samples, dtype=bool)
            is_val[np.random.default_rng(seed).permutation(n_samples)[:n_val]] = True
        return cls(n_rows, window, n_val, is_val)

    @property
    def first_sample(self) -> int:
        return self.window - 1 if self.window else 0

    @property
    def n_samples(self) -> int:
        return self.n_rows - self.first_sample

    @property
    def n_train(self) -> int:
        return self.n_samples - self.n_val

    @property
    def train_end(self) -> int:
        """Sequence models: the row after the last training window's last row."""
        return self.n_rows - self.n_val

    @property
    def n_stat_rows(self) -> int:
        """Rows whose feature statistics are used: the training rows, for windows every row up
        to the last training window's end."""
        return self.n_train if self.window is None else self.train_end

    def _rows(self, lo: int, hi: int, val: bool) -> np.ndarray:
        if self.is_val is not None:
            part = self.is_val[lo:hi]
            return lo + np.flatnonzero(part if val else ~part)
        if val:
            return np.arange(max(lo, self.train_end), hi)
        return np.arange(max(lo, self.first_sample), min(hi, self.train_end))

    def train_rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows in ``[lo, hi)`` whose samples train (ascending)."""
        return self._rows(lo, hi, False)

    def val_rows(self, lo: int, hi: int) -> np.ndarray:
        return self._rows(lo, hi, True)

    def stat_rows(self, lo: int, hi: int) -> np.ndarray:
        if self.window is None:
            return self.train_rows(lo, hi)
        return np.arange(lo, min(hi, self.train_end))

    def train_counts(self, starts: np.ndarray) -> np.ndarray:
        """Training samples per block, for blocks starting at ``starts`` (row count last)."""
        return np.array([len(self.train_rows(int(a), int(b))) for a, b in zip(starts[:-1], starts[1:])],
                        dtype=np.int64)
