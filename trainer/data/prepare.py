"""Turning a DataFrame into model-ready arrays: checks, split, scaling, encoding, windows.

Framework-free (numpy and pandas only) so both backends share it. Statistics (means, standard
deviations, medians, categories) come from the training split only; the fitted
:class:`Preprocessor` is saved with the model and applied unchanged at prediction time.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import numpy as np
import pandas as pd

from .columns import (NUMERIC, ColumnProblem, category_problem, column_kind, duplicate_message, duplicated,
                      layout_problem, numeric_values)
from . import values as data_values
from ..config import ConfigError, TrainingConfig
from .preprocessor import Preprocessor, column_statistics, json_scalar

MAX_CATEGORIES = 50        # beyond this one-hot encoding is no longer a sensible default
MAX_AUTO_CLASSES = 20      # integer targets with at most this many values count as classes


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
    streamed: ClassVar[bool] = False

    @property
    def n_rows(self) -> int:
        return len(self.x)

    @property
    def n_train(self) -> int:
        return len(self.train_index)

    @property
    def n_val(self) -> int:
        return len(self.val_index)

    @property
    def task(self) -> str:
        return self.preprocessor.task

    @property
    def window(self) -> Optional[int]:
        return self.preprocessor.sequence_length


# ---------------------------------------------------------------------- checks

def _column_error(field: str, name: str, df: pd.DataFrame) -> dict[str, Any]:
    others = {str(c): c for c in df.columns if not isinstance(c, str)}
    if name in others:
        return {"field": field, "value": name,
                "message": f"column {name!r} is not in the data, but {others[name]!r} (a {type(others[name]).__name__}) "
                           f"is: column names must be strings; rename them, df.columns = df.columns.astype(str)"}
    close = difflib.get_close_matches(name, [str(c) for c in df.columns], n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; the DataFrame has {list(df.columns)[:20]}"
    return {"field": field, "value": name, "message": f"column {name!r} is not in the data{hint}"}


def resolve_columns(config: TrainingConfig, df: pd.DataFrame) -> tuple[list[str], str]:
    """Check the configured columns exist, once each in the DataFrame, under string names; return
    (features, target). (The config itself refuses a feature listed twice or as the target.)

    Column names must be strings: they are saved with the model, named in the config and read
    back from CSV files as strings, so a column ``5`` is refused with the fix
    (``df.columns = df.columns.astype(str)``) rather than matched to ``"5"``. Only the names are
    looked at here (the panel calls this on every change); the values are checked by
    :func:`prepare_data`.
    """
    problem = layout_problem(df)
    if problem:
        raise ConfigError.single("data", type(df).__name__, problem)
    errors = []
    target = config.target_column
    if target is None:
        errors.append({"field": "target_column", "value": None, "message": "required: name the column to predict"})
    elif target not in df.columns:
        errors.append(_column_error("target_column", target, df))
    if config.feature_columns:
        features = list(config.feature_columns)
        for c in features:
            if c not in df.columns:
                errors.append(_column_error("feature_columns", c, df))
    else:
        features = [c for c in df.columns if c != target]
        odd = [c for c in features if not isinstance(c, str)]
        if odd:
            errors.append({"field": "feature_columns", "value": [str(c) for c in odd[:10]],
                           "message": f"the DataFrame has column names that are not strings ({odd[:10]}); column "
                                      f"names must be strings: rename them, df.columns = df.columns.astype(str)"})
    if not features:
        errors.append({"field": "feature_columns", "value": [], "message": "no feature columns: the data has only the target"})
    if not errors:
        for c in duplicated(df, [target] + features):
            errors.append({"field": "target_column" if c == target else "feature_columns", "value": c,
                           "message": duplicate_message(c, df)})
    if errors:
        raise ConfigError(errors)
    return [str(c) for c in features], str(target)


_NUMBERS_IN_OBJECTS = ("integer", "floating", "mixed-integer-float", "decimal")


def infer_task(config: TrainingConfig, y: pd.Series) -> str:
    if config.task != "auto":
        return config.task
    if pd.api.types.is_object_dtype(y) and pd.api.types.infer_dtype(y, skipna=True) in _NUMBERS_IN_OBJECTS:
        y = pd.to_numeric(y, errors="coerce")      # numbers held as Python objects count as numbers
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
    # The first n_val of a seeded permutation validate; both sets in ascending order. A mask
    # instead of sorting each set gives the same arrays in linear time.
    is_val = np.zeros(n_samples, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(n_samples)[:n_val]] = True
    return ids[~is_val], ids[is_val]


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _check_target(config: TrainingConfig, y: pd.Series, target: str, errors: list[dict[str, Any]]) -> Optional[str]:
    """The task for target ``y``, or None (with the reason in ``errors``) if it cannot be learned."""
    try:
        kind = column_kind(y, target, role="target")
    except ColumnProblem as exc:
        errors.append({"field": "target_column", "value": target, "message": str(exc)})
        return None
    n_missing = int(y.isna().sum())
    if n_missing:
        errors.append({"field": "target_column", "value": target,
                       "message": f"{_rows(n_missing)} {'has' if n_missing == 1 else 'have'} no target value; "
                                  f"drop them first (df.dropna(subset=[{target!r}]))"})
        return None
    task = infer_task(config, y)
    if task == "regression" and kind != NUMERIC:
        errors.append({"field": "task", "value": config.task,
                       "message": f"regression needs a numeric target, but {target!r} holds {y.dtype}; use task='classification'"})
        return None
    return task


def prepare_data(config: TrainingConfig, df: pd.DataFrame, seed: int = 0) -> PreparedData:
    """Validate ``df`` against ``config`` and encode it. Raises :class:`ConfigError` on bad data.

    Memory: the encoded float32 matrix is the only allocation the size of the data; everything
    else is done a column at a time.
    """
    features, target = resolve_columns(config, df)
    n_rows = len(df)
    if n_rows == 0:
        raise ConfigError.single("data", 0, "the DataFrame has no rows")
    errors: list[dict[str, Any]] = []
    y_raw = df[target]
    task = _check_target(config, y_raw, target, errors)

    window = config.sequence_length if config.is_sequence_model else None
    first_sample = (window - 1) if window else 0
    n_samples = n_rows - first_sample
    if n_samples < 2:
        errors.append({"field": "sequence_length" if window else "data", "value": window or n_rows,
                       "message": f"the data has {_rows(n_rows)}, too few for training"
                                  + (f" windows of {window} rows" if window else
                                     ": it needs at least 2 (one to train on, one to validate)")})
    numeric, categorical, missing = [], [], {}
    for c in features:
        col = df[c]
        try:
            kind = column_kind(col, c)
        except ColumnProblem as exc:
            errors.append({"field": "feature_columns", "value": c, "message": str(exc)})
            continue
        n_missing = int(col.isna().sum())
        if n_missing == n_rows:
            errors.append({"field": "feature_columns", "value": c,
                           "message": f"column {c!r} has no values (all {_rows(n_rows)} are missing); drop it"})
            continue
        if n_missing:
            missing[c] = n_missing
        (numeric if kind == NUMERIC else categorical).append(c)
    if errors:
        raise ConfigError(errors)

    train_index, val_index = _split(config, n_samples, first_sample, seed)
    # Rows whose statistics may be used: the training samples' rows (for windows, every row up
    # to the last training sample's end).
    stat_rows: Any = slice(0, int(train_index.max()) + 1) if window else train_index
    pre = Preprocessor(feature_columns=features, target_column=target, task=task or "classification",
                       numeric=numeric, impute=config.missing_values == "impute", sequence_length=window)
    infinite = {}
    for c in numeric:
        try:
            values = numeric_values(df[c], c)
        except ColumnProblem as exc:
            errors.append({"field": "feature_columns", "value": c, "message": str(exc)})
            continue
        # An infinity would make the scaling statistics and every loss NaN.
        n_inf = int(np.isinf(values).sum())
        if n_inf:
            infinite[c] = n_inf
            continue
        mean, std, median = column_statistics(values[stat_rows])
        # A column missing in all training rows has no statistics; fall back to neutral values.
        pre.means.append(mean if np.isfinite(mean) else 0.0)
        pre.stds.append(std if np.isfinite(std) and std > 0 else 1.0)
        pre.medians.append(median if np.isfinite(median) else 0.0)
    if infinite:
        listed = ", ".join(f"{c!r} ({n})" for c, n in infinite.items())
        errors.append({"field": "feature_columns", "value": list(infinite),
                       "message": f"infinite values in feature columns {listed}; replace them, e.g. "
                                  f"df.replace([np.inf, -np.inf], np.nan) with missing_values='impute'"})
    for c in categorical:
        col = df[c]
        problem = category_problem(col, c)
        if problem is not None:
            errors.append({"field": "feature_columns", "value": c, "message": str(problem)})
            continue
        cats = sorted({json_scalar(v) for v in col.iloc[stat_rows].dropna().unique()}, key=str)
        if len(cats) > MAX_CATEGORIES:
            errors.append({"field": "feature_columns", "value": c,
                           "message": f"column {c!r} has {len(cats)} distinct values, too many to one-hot encode "
                                      f"(at most {MAX_CATEGORIES}); drop it or encode it yourself"
                                      + _looks_numeric_hint(col, c)})
        pre.categorical[c] = cats
    if task == "classification":
        classes = sorted({json_scalar(v) for v in y_raw.unique()}, key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            errors.append({"field": "target_column", "value": target,
                           "message": f"classification needs at least 2 classes, {target!r} has "
                                      + (f"{len(classes)}" if data_values.hidden() else f"{classes}")})
        pre.classes = classes
    elif task == "regression":
        try:
            y_values = numeric_values(y_raw, target, role="target")
        except ColumnProblem as exc:
            errors.append({"field": "target_column", "value": target, "message": str(exc)})
        else:
            n_inf = int(np.isinf(y_values).sum())
            if n_inf:
                errors.append({"field": "target_column", "value": target,
                               "message": f"{_rows(n_inf)} {'has' if n_inf == 1 else 'have'} an infinite target; drop or fix them"})
            else:
                pre.target_mean, std, _ = column_statistics(y_values[train_index])
                pre.target_std = std if np.isfinite(std) and std > 0 else 1.0
    if missing and config.missing_values == "error":
        listed = ", ".join(f"{c!r} ({n})" for c, n in missing.items())
        errors.append({"field": "missing_values", "value": "error",
                       "message": f"missing values in feature columns {listed}; set missing_values='impute' or clean the data"})
    if errors:
        raise ConfigError(errors)

    x = pre.transform(df)
    y = pre.encode_target(y_raw)
    return PreparedData(x=x, y=y, train_index=train_index, val_index=val_index, preprocessor=pre)


def _looks_numeric_hint(col: pd.Series, name: str) -> str:
    parsed = pd.to_numeric(col, errors="coerce")
    if parsed.notna().sum() * 2 > col.notna().sum():
        return (f"; most of its values are numbers written as text: convert it, "
                f"df[{name!r}] = pd.to_numeric(df[{name!r}], errors='coerce')")
    return ""


def windows(x: np.ndarray, window: int) -> np.ndarray:
    """Read-only view (rows-window+1, window, features) over ``x``; sample i ends at row i+window-1."""
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1)
