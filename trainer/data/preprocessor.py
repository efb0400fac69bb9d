"""The fitted feature and target transforms of a run: standardised numbers, one-hot categories, class
codes. Fitted on the training split by :func:`trainer.data.prepare_data`, saved with the model
(:meth:`Preprocessor.to_dict`) and applied unchanged at prediction time."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from .columns import ColumnProblem, category_problem, check_prediction_frame, numeric_values


def json_scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class Preprocessor:
    """Fitted feature and target transforms; JSON-serialisable via :meth:`to_dict`."""

    feature_columns: list[str]
    target_column: str
    task: str                                   # "classification" | "regression"
    numeric: list[str] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)   # used when impute is on
    categorical: dict[str, list[Any]] = field(default_factory=dict)
    impute: bool = False
    classes: list[Any] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    sequence_length: Optional[int] = None

    # ---------------------------------------------------------------- features
    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categorical.values())

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Raw feature columns -> float32 matrix (rows x encoded features).

        Column by column into one preallocated float32 array, so the only full-size allocation is
        the result. A column that cannot be used raises ValueError naming it and the fix.
        """
        check_prediction_frame(df, self.feature_columns)
        out = np.empty((len(df), self.n_features), dtype=np.float32)
        problems: list[str] = []
        infinite, missing = [], []
        native: list[tuple[int, np.ndarray, Optional[float]]] = []
        for j, c in enumerate(self.numeric):
            col = df[c]
            try:
                values = numeric_values(col, c)
            except ColumnProblem as exc:
                problems.append(str(exc))
                continue
            fill = None
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                if np.isinf(values).any():
                    infinite.append(c)
                    continue
                if not self.impute:
                    missing.append(c)
                    continue
                fill = self.medians[j]
            if values.dtype.kind in "fiub" and isinstance(col.dtype, np.dtype):
                native.append((j, values, fill))     # the DataFrame's own array: scaled in row blocks below
            else:
                # Converted from a nullable, Arrow or object column: already a copy, scaled right away
                # so that at most one such copy exists at a time.
                nan = np.isnan(values) if fill is not None else None
                _scale_into(out[:, j], values, self.means[j], self.stds[j], nan, fill or 0.0)
        if native and not problems and not infinite and not missing:
            _scale_blocks(out, native, self.means, self.stds)
        offset = len(self.numeric)
        for c, cats in self.categorical.items():
            col = df[c]
            block = out[:, offset:offset + len(cats)]
            offset += len(cats)
            problem = category_problem(col, c)
            if problem is not None:
                problems.append(str(problem))
                continue
            if not self.impute and col.isna().any():
                missing.append(c)
                continue
            # Unknown or missing categories encode as all zeros rather than failing prediction.
            codes = _codes(col, cats)
            block[...] = 0
            rows = np.flatnonzero(codes >= 0)
            block[rows, codes[rows]] = 1
        if infinite:
            problems.append(f"infinite values in columns {infinite}; replace them before predicting")
        if missing:
            problems.append(f"missing values in columns {missing}; train with missing_values='impute' or clean them")
        if problems:
            raise ValueError("; ".join(problems))
        return out

    # ---------------------------------------------------------------- target
    def encode_target(self, s: pd.Series) -> np.ndarray:
        """Class codes (int64) or the scaled target (float32), each a new writable array."""
        if self.task == "classification":
            codes = _codes(s, self.classes).astype(np.int64)
            if (codes < 0).any():
                unknown = sorted({str(v) for v in s[codes < 0]})[:5]
                raise ValueError(f"target values {unknown} are not among the known classes {self.classes}")
            return codes
        y = numeric_values(s, s.name, role="target")
        out = np.empty(len(y), dtype=np.float32)
        _scale_into(out, y, self.target_mean, self.target_std, None, 0.0)
        return out

    def decode_target(self, out: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return np.asarray(self.classes, dtype=object)[out].astype(classes_dtype(self.classes))
        return out * self.target_std + self.target_mean

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        return cls(**d)


def _codes(col: pd.Series, categories: list[Any]) -> np.ndarray:
    """Position of each value in ``categories``, -1 for missing or unknown values."""
    # Factorising first hashes each row once and reuses a category column's own codes.
    codes, uniques = pd.factorize(col)
    lookup = pd.Index(categories).get_indexer(uniques) if len(categories) else np.full(len(uniques), -1)
    return np.append(lookup, -1)[codes]


def classes_dtype(classes: list[Any]) -> Any:
    """The dtype that holds ``classes`` as the user gave them (bool, int64, else object)."""
    if all(isinstance(c, bool) for c in classes):
        return bool
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return np.int64
    return object


def _scale_into(out: np.ndarray, values: np.ndarray, mean: float, std: float,
               missing: Optional[np.ndarray], fill: float) -> None:
    """``out[:] = (values - mean) / std`` computed in float64 and stored as ``out``'s dtype.

    One column at a time: the float64 temporaries are a column long, never the whole matrix, and
    ``values`` (possibly the user's own array) is never written to.
    """
    scaled = np.subtract(values, mean, dtype=np.float64)
    if missing is not None and missing.any():
        scaled[missing] = fill - mean
    scaled /= std
    out[...] = scaled


# Rows per block when scaling: a block of float64 temporaries stays in the CPU's cache, and
# writing whole rows of the float32 result beats writing it one strided column at a time (5x).
_BLOCK_ROWS = 16384


def _scale_blocks(out: np.ndarray, columns: list[tuple[int, np.ndarray, Optional[float]]],
                  means: list[float], stds: list[float]) -> None:
    """Scale ``(position, values, fill for NaN or None)`` columns into ``out``, a block of rows at a time."""
    positions = [j for j, _, _ in columns]
    contiguous = positions == list(range(positions[0], positions[0] + len(positions)))
    target: Any = slice(positions[0], positions[0] + len(positions)) if contiguous else positions
    mean = np.array([[means[j]] for j in positions])
    std = np.array([[stds[j]] for j in positions])
    # One contiguous float64 row per column: filled, scaled, then written transposed as float32.
    buffer = np.empty((len(columns), min(_BLOCK_ROWS, len(out))), dtype=np.float64)
    for lo in range(0, len(out), _BLOCK_ROWS):
        hi = min(lo + _BLOCK_ROWS, len(out))
        block = buffer[:, :hi - lo]
        for k, (_, values, fill) in enumerate(columns):
            part = values[lo:hi]
            block[k] = part
            if fill is not None:
                block[k, np.isnan(part)] = fill
        block -= mean
        block /= std
        out[lo:hi, target] = block.T


def column_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, standard deviation (ddof 0) and median of the present values; NaN when none are."""
    values = values.astype(np.float64)          # a copy of one column's training rows, reordered below
    present = ~np.isnan(values)
    if not present.all():
        values = values[present]
    n = len(values)
    if not n:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    std = float(np.sqrt(np.square(values - mean).mean()))
    # np.median's value, from one partition instead of two.
    k = n // 2
    values.partition(k)
    median = float(values[k]) if n % 2 else (float(values[:k].max()) + float(values[k])) / 2
    return mean, std, median
