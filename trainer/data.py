"""Turning a DataFrame into model-ready arrays: checks, split, scaling, encoding, windows.

Framework-free (numpy and pandas only) so both backends share it. Statistics (means, standard
deviations, medians, categories) come from the training split only; the fitted
:class:`Preprocessor` is saved with the model and applied unchanged at prediction time.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from .config import ConfigError, TrainingConfig

MAX_CATEGORIES = 50        # beyond this one-hot encoding is no longer a sensible default
MAX_AUTO_CLASSES = 20      # integer targets with at most this many values count as classes


def _json_scalar(v: Any) -> Any:
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
        """Raw feature columns -> float32 matrix (rows x encoded features)."""
        missing = [c for c in self.feature_columns if c not in df.columns]
        if missing:
            raise ValueError(f"the data lacks feature columns {missing}; the model was trained on {self.feature_columns}")
        parts = []
        if self.numeric:
            num = df[self.numeric].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            inf = np.isinf(num).any(axis=0)
            if inf.any():
                cols = [c for c, bad in zip(self.numeric, inf) if bad]
                raise ValueError(f"infinite values in columns {cols}; replace them before predicting")
            nan = np.isnan(num)
            if nan.any():
                if not self.impute:
                    cols = [c for c, bad in zip(self.numeric, nan.any(axis=0)) if bad]
                    raise ValueError(f"missing or non-numeric values in columns {cols}; train with missing_values='impute' or clean them")
                num = np.where(nan, np.asarray(self.medians), num)
            parts.append((num - np.asarray(self.means)) / np.asarray(self.stds))
        for col, cats in self.categorical.items():
            values = df[col].astype(object)
            if values.isna().any() and not self.impute:
                raise ValueError(f"missing values in column {col!r}; train with missing_values='impute' or clean them")
            # Unknown or missing categories encode as all zeros rather than failing prediction.
            onehot = np.stack([(values == c).to_numpy() for c in cats], axis=1).astype(np.float64)
            parts.append(onehot)
        out = np.concatenate(parts, axis=1) if parts else np.zeros((len(df), 0))
        return out.astype(np.float32)

    # ---------------------------------------------------------------- target
    def encode_target(self, s: pd.Series) -> np.ndarray:
        if self.task == "classification":
            index = {c: i for i, c in enumerate(self.classes)}
            codes = s.map(lambda v: index.get(_json_scalar(v), -1)).to_numpy(dtype=np.int64)
            if (codes < 0).any():
                unknown = sorted({str(v) for v in s[codes < 0]})[:5]
                raise ValueError(f"target values {unknown} are not among the known classes {self.classes}")
            return codes
        y = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        return ((y - self.target_mean) / self.target_std).astype(np.float32)

    def decode_target(self, out: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return np.asarray(self.classes, dtype=object)[out].astype(_classes_dtype(self.classes))
        return out * self.target_std + self.target_mean

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        return cls(**d)


def _classes_dtype(classes: list[Any]) -> Any:
    if all(isinstance(c, bool) for c in classes):
        return bool
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return np.int64
    return object


@dataclass
class PreparedData:
    """Encoded arrays plus which samples train and which validate.

    A sample is a row for ``mlp``; for sequence models sample ``i`` is the window of rows
    ``i-L+1 .. i`` labelled with row ``i``'s target.
    """

    x: np.ndarray               # (rows, n_features) float32, already scaled
    y: np.ndarray               # (rows,) int64 class codes or float32 scaled targets
    train_index: np.ndarray     # sample ids (row ids of a sample's last row)
    val_index: np.ndarray
    preprocessor: Preprocessor

    @property
    def task(self) -> str:
        return self.preprocessor.task

    @property
    def window(self) -> Optional[int]:
        return self.preprocessor.sequence_length


# ---------------------------------------------------------------------- checks

def _column_error(field: str, name: str, df: pd.DataFrame) -> dict[str, Any]:
    close = difflib.get_close_matches(name, [str(c) for c in df.columns], n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; the DataFrame has {list(df.columns)[:20]}"
    return {"field": field, "value": name, "message": f"column {name!r} is not in the data{hint}"}


def resolve_columns(config: TrainingConfig, df: pd.DataFrame) -> tuple[list[str], str]:
    """Check the configured columns exist; return (features, target)."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError.single("data", type(df).__name__, "expected a pandas DataFrame")
    errors = []
    target = config.target_column
    if target is None:
        errors.append({"field": "target_column", "value": None, "message": "required: name the column to predict"})
    elif target not in df.columns:
        errors.append(_column_error("target_column", target, df))
    features = list(config.feature_columns) or [c for c in df.columns if c != target]
    for c in features:
        if c not in df.columns:
            errors.append(_column_error("feature_columns", c, df))
    if not features:
        errors.append({"field": "feature_columns", "value": [], "message": "no feature columns: the data has only the target"})
    if errors:
        raise ConfigError(errors)
    return features, target


def _count_infinite(col: pd.Series) -> int:
    return int(np.isinf(col.to_numpy(dtype=np.float64, na_value=np.nan)).sum())


def infer_task(config: TrainingConfig, y: pd.Series) -> str:
    if config.task != "auto":
        return config.task
    if (pd.api.types.is_bool_dtype(y) or isinstance(y.dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(y) or pd.api.types.is_string_dtype(y)):
        return "classification"
    if pd.api.types.is_integer_dtype(y) and y.nunique() <= MAX_AUTO_CLASSES:
        return "classification"
    return "regression"


def _split(config: TrainingConfig, n_samples: int, first_sample: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(first_sample, first_sample + n_samples)
    n_val = max(1, int(round(n_samples * config.validation_split)))
    if n_samples - n_val < 1:
        raise ConfigError.single("validation_split", config.validation_split,
                                 f"leaves no training samples out of {n_samples}; lower it or add data")
    if config.is_sequence_model:
        # Time order matters: validate on the most recent windows, never shuffle across time.
        return ids[:-n_val], ids[-n_val:]
    perm = np.random.default_rng(seed).permutation(ids)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def prepare_data(config: TrainingConfig, df: pd.DataFrame, seed: int = 0) -> PreparedData:
    """Validate ``df`` against ``config`` and encode it. Raises :class:`ConfigError` on bad data."""
    features, target = resolve_columns(config, df)
    errors: list[dict[str, Any]] = []
    y_raw = df[target]
    if y_raw.isna().any():
        errors.append({"field": "target_column", "value": target,
                       "message": f"{int(y_raw.isna().sum())} rows have no target value; drop them first (df.dropna(subset=[{target!r}]))"})
    task = infer_task(config, y_raw)
    if task == "regression" and not pd.api.types.is_numeric_dtype(y_raw):
        errors.append({"field": "task", "value": config.task,
                       "message": f"regression needs a numeric target, but {target!r} holds {y_raw.dtype}; use task='classification'"})

    window = config.sequence_length if config.is_sequence_model else None
    n_rows = len(df)
    first_sample = (window - 1) if window else 0
    n_samples = n_rows - first_sample
    if n_samples < 2:
        errors.append({"field": "sequence_length" if window else "data", "value": window or n_rows,
                       "message": f"the data has {n_rows} rows, too few for training" + (f" windows of {window} rows" if window else "")})
    numeric, categorical, missing, infinite = [], [], {}, {}
    for c in features:
        col = df[c]
        n_missing = int(col.isna().sum())
        if n_missing:
            missing[c] = n_missing
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            numeric.append(c)
            # An infinity would make the scaling statistics and every loss NaN.
            n_inf = _count_infinite(col)
            if n_inf:
                infinite[c] = n_inf
        elif (isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(col)
              or pd.api.types.is_string_dtype(col)):
            categorical.append(c)
        else:
            errors.append({"field": "feature_columns", "value": c,
                           "message": f"column {c!r} has type {col.dtype}, which cannot be used as a feature; convert it to numbers or drop it"})
    if infinite:
        listed = ", ".join(f"{c!r} ({n})" for c, n in infinite.items())
        errors.append({"field": "feature_columns", "value": list(infinite),
                       "message": f"infinite values in feature columns {listed}; replace them, e.g. "
                                  f"df.replace([np.inf, -np.inf], np.nan) with missing_values='impute'"})
    if task == "regression" and pd.api.types.is_numeric_dtype(y_raw) and _count_infinite(y_raw):
        errors.append({"field": "target_column", "value": target,
                       "message": f"{_count_infinite(y_raw)} rows have an infinite target; drop or fix them"})
    if missing and config.missing_values == "error":
        listed = ", ".join(f"{c!r} ({n})" for c, n in missing.items())
        errors.append({"field": "missing_values", "value": "error",
                       "message": f"missing values in feature columns {listed}; set missing_values='impute' or clean the data"})
    if errors:
        raise ConfigError(errors)

    train_index, val_index = _split(config, n_samples, first_sample, seed)
    # Rows whose statistics may be used: the training samples' rows (for windows, every row up
    # to the last training sample's end).
    stat_rows = np.arange(0, train_index.max() + 1) if window else train_index
    train_df = df.iloc[stat_rows]

    pre = Preprocessor(feature_columns=features, target_column=target, task=task, numeric=numeric,
                       impute=config.missing_values == "impute", sequence_length=window)
    if numeric:
        num = train_df[numeric].astype(np.float64)
        means = num.mean()
        stds = num.std(ddof=0)
        medians = num.median()
        # A column missing in all training rows has no statistics; fall back to neutral values.
        pre.means = [float(v) if np.isfinite(v) else 0.0 for v in means]
        pre.stds = [float(v) if np.isfinite(v) and v > 0 else 1.0 for v in stds]
        pre.medians = [float(v) if np.isfinite(v) else 0.0 for v in medians]
    for c in categorical:
        cats = sorted({_json_scalar(v) for v in train_df[c].dropna().unique()}, key=str)
        if len(cats) > MAX_CATEGORIES:
            errors.append({"field": "feature_columns", "value": c,
                           "message": f"column {c!r} has {len(cats)} distinct values, too many to one-hot encode (at most {MAX_CATEGORIES}); drop it or encode it yourself"})
        pre.categorical[c] = cats
    if task == "classification":
        classes = sorted({_json_scalar(v) for v in y_raw.unique()}, key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            errors.append({"field": "target_column", "value": target,
                           "message": f"classification needs at least 2 classes, {target!r} has {classes}"})
        pre.classes = classes
    else:
        yt = pd.to_numeric(y_raw.iloc[train_index], errors="coerce").astype(np.float64)
        pre.target_mean = float(yt.mean())
        std = float(yt.std(ddof=0))
        pre.target_std = std if np.isfinite(std) and std > 0 else 1.0
    if errors:
        raise ConfigError(errors)

    x = pre.transform(df)
    y = np.array(pre.encode_target(y_raw))   # a writable copy: torch refuses read-only arrays
    return PreparedData(x=x, y=y, train_index=train_index, val_index=val_index, preprocessor=pre)


def windows(x: np.ndarray, window: int) -> np.ndarray:
    """Read-only view (rows-window+1, window, features) over ``x``; sample i ends at row i+window-1."""
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1)
