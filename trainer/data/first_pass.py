"""Fitting the preprocessor on a streamed table: the checks, split and statistics of
:func:`trainer.data.prepare_data`, computed a block at a time.

Pass one reads every needed column in file order: column kinds, missing and infinite values,
the classes, the categories of the training rows, a fingerprint of the values. Then each numeric
column's training values are gathered, a few columns per pass as the memory budget allows (a
Parquet pass reads only those columns), and the mean, standard deviation and median are computed
from them as :func:`~trainer.data.preprocessor.column_statistics` computes them: the very numbers
the in-memory path computes for the same table, not an approximation.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from ..config import ConfigError, TrainingConfig
from . import values as data_values
from .columns import NUMERIC, ColumnProblem, category_problem, column_kind, numeric_values
from .prepare import MAX_CATEGORIES, infer_task, resolve_columns
from .preprocessor import Preprocessor, json_scalar
from .sources import Source
from .split import Split

#: ``progress(phase, rows_done, rows_total)``: phase "statistics" for pass one, "scaling" for the others.
Progress = Callable[[str, int, int], None]
MAX_CLASSES = 100_000        # beyond this a target is no set of classes (and would not fit a budget)
STATS_SHARE = 4              # the statistics passes gather at most a quarter of the budget


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


class _Pass:
    """What pass one gathers."""

    def __init__(self, features: list[str]):
        self.kinds: dict[str, str] = {}
        self.missing = dict.fromkeys(features, 0)
        self.infinite = dict.fromkeys(features, 0)
        self.categories: dict[str, set] = {}
        self.classes: set = set()
        self.target_missing = 0
        self.target_dtype: Any = None
        self.target_inf = 0
        self.digest = hashlib.sha256()


def fit_stream(config: TrainingConfig, source: Source, seed: int, budget_bytes: int,
               progress: Optional[Progress] = None) -> tuple[Preprocessor, Split, str]:
    """``(preprocessor, split, fingerprint)`` for ``source``; ConfigError on bad data, naming
    every problem at once as :func:`~trainer.data.prepare_data` does."""
    features, target = resolve_columns(config, pd.DataFrame(columns=source.columns))
    block_rows = source.count_rows()
    n_rows = int(sum(block_rows))
    if n_rows == 0:
        raise ConfigError.single("data", 0, "the table has no rows")
    split = Split.of(config, n_rows, seed)
    tell = progress or (lambda *_: None)
    errors: list[dict[str, Any]] = []
    seen = _first_pass(config, source, features, target, split, tell, errors)
    _release_arrow_memory()
    if errors:
        raise ConfigError(errors)
    task = config.task
    if task == "auto":
        # The distinct values with the column's type tell what the whole column would.
        dtype = seen.target_dtype
        task = infer_task(config, pd.Series(list(seen.classes), dtype=dtype if dtype.kind in "iufb" else object))
    numeric = [c for c in features if seen.kinds[c] == NUMERIC]
    categorical = [c for c in features if seen.kinds[c] != NUMERIC]
    pre = Preprocessor(feature_columns=features, target_column=target, task=task, numeric=numeric,
                       impute=config.missing_values == "impute", sequence_length=split.window)
    _check_values(config, seen, features, target, task, n_rows, errors)
    for c in categorical:
        cats = sorted(seen.categories.get(c, set()), key=str)
        if len(cats) > MAX_CATEGORIES:
            errors.append({"field": "feature_columns", "value": c,
                           "message": f"column {c!r} has more than {MAX_CATEGORIES} distinct values, too many to "
                                      f"one-hot encode; drop it or encode it yourself"})
        pre.categorical[c] = cats
    if task == "classification":
        classes = sorted(seen.classes, key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            errors.append({"field": "target_column", "value": target,
                           "message": f"classification needs at least 2 classes, {target!r} has "
                                      + (f"{len(classes)}" if data_values.hidden() else f"{classes}")})
        pre.classes = classes
    if errors:
        raise ConfigError(errors)
    stats = _statistics(source, numeric, target if task == "regression" else None, split, budget_bytes, tell)
    for c in numeric:
        mean, std, median = stats[c]
        pre.means.append(mean if np.isfinite(mean) else 0.0)
        pre.stds.append(std if np.isfinite(std) and std > 0 else 1.0)
        pre.medians.append(median if np.isfinite(median) else 0.0)
    if task == "regression":
        pre.target_mean, std, _ = stats[target]
        pre.target_std = std if np.isfinite(std) and std > 0 else 1.0
    return pre, split, seen.digest.hexdigest()


def _first_pass(config: TrainingConfig, source: Source, features: list[str], target: str, split: Split,
                tell: Progress, errors: list[dict[str, Any]]) -> _Pass:
    seen = _Pass(features)
    starts = source.starts
    broken: set[str] = set()
    for lo, df in source.scan(features + [target]):
        df.index = pd.RangeIndex(lo, lo + len(df))      # messages name the row of the table
        seen.digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
        train_rows = split.train_rows(lo, lo + len(df)) - lo
        for c in features:
            if c in broken:
                continue
            col = df[c]
            try:
                if c not in seen.kinds:
                    seen.kinds[c] = column_kind(col, c)
                if seen.kinds[c] == NUMERIC:
                    values = numeric_values(col, c)
                    if values.dtype.kind == "f":
                        seen.missing[c] += int(np.isnan(values).sum())
                        seen.infinite[c] += int(np.isinf(values).sum())
                else:
                    problem = category_problem(col, c)
                    if problem is not None:
                        raise problem
                    seen.missing[c] += int(col.isna().sum())
                    found = seen.categories.setdefault(c, set())
                    found.update(json_scalar(v) for v in col.iloc[train_rows].dropna().unique())
                    if len(found) > MAX_CATEGORIES:
                        found.clear()
                        found.update(range(MAX_CATEGORIES + 1))     # counted as too many; values no longer needed
            except ColumnProblem as exc:
                errors.append({"field": "feature_columns", "value": c, "message": str(exc)})
                broken.add(c)
        _target_block(config, df[target], target, seen, errors, broken)
        tell("statistics", lo + len(df), int(starts[-1]))
    return seen


def _target_block(config: TrainingConfig, y: pd.Series, target: str, seen: _Pass,
                  errors: list[dict[str, Any]], broken: set[str]) -> None:
    if target in broken:
        return
    try:
        kind = column_kind(y, target, role="target")
    except ColumnProblem as exc:
        errors.append({"field": "target_column", "value": target, "message": str(exc)})
        broken.add(target)
        return
    if seen.target_dtype is None:
        seen.target_dtype = y.dtype if isinstance(y.dtype, np.dtype) else np.dtype(object)
    seen.target_missing += int(y.isna().sum())
    if kind == NUMERIC and y.dtype.kind == "f":
        seen.target_inf += int(np.isinf(y.to_numpy()).sum())
    floats = config.task == "auto" and y.dtype.kind == "f"       # a regression target: no classes to find
    if config.task != "regression" and not floats and len(seen.classes) <= MAX_CLASSES:
        seen.classes.update(json_scalar(v) for v in y.dropna().unique())


def _check_values(config: TrainingConfig, seen: _Pass, features: list[str], target: str, task: str, n_rows: int,
                  errors: list[dict[str, Any]]) -> None:
    if seen.target_missing:
        n = seen.target_missing
        errors.append({"field": "target_column", "value": target,
                       "message": f"{_rows(n)} {'has' if n == 1 else 'have'} no target value; drop them first"})
    if task == "classification" and len(seen.classes) > MAX_CLASSES:
        errors.append({"field": "task", "value": config.task,
                       "message": f"{target!r} has more than {MAX_CLASSES} distinct values, too many classes; "
                                  f"use task='regression' for a numeric target"})
    if task == "regression" and seen.target_inf:
        errors.append({"field": "target_column", "value": target,
                       "message": f"{_rows(seen.target_inf)} have an infinite target; drop or fix them"})
    if task == "regression" and seen.target_dtype is not None and seen.target_dtype.kind not in "fiub":
        errors.append({"field": "task", "value": config.task,
                       "message": f"regression needs a numeric target, but {target!r} holds {seen.target_dtype}; "
                                  f"use task='classification'"})
    empty = [c for c in features if seen.missing[c] == n_rows]
    for c in empty:
        errors.append({"field": "feature_columns", "value": c,
                       "message": f"column {c!r} has no values (all {_rows(n_rows)} are missing); drop it"})
    infinite = {c: n for c, n in seen.infinite.items() if n}
    if infinite:
        listed = ", ".join(f"{c!r} ({n})" for c, n in infinite.items())
        errors.append({"field": "feature_columns", "value": list(infinite),
                       "message": f"infinite values in feature columns {listed}; replace them with missing "
                                  f"values and set missing_values='impute'"})
    missing = {c: n for c, n in seen.missing.items() if n and c not in empty}
    if missing and config.missing_values == "error":
        listed = ", ".join(f"{c!r} ({n})" for c, n in missing.items())
        errors.append({"field": "missing_values", "value": "error",
                       "message": f"missing values in feature columns {listed}; set missing_values='impute' or "
                                  f"clean the data"})


def _statistics(source: Source, numeric: list[str], target: Optional[str], split: Split, budget_bytes: int,
                tell: Progress) -> dict[str, tuple[float, float, float]]:
    """Mean, std and median of each numeric column's statistics rows (and the target's training
    rows), gathering as many columns per pass as a quarter of the budget holds."""
    starts = source.starts
    n_feature_rows, n_target_rows = split.n_stat_rows, split.n_train
    per_column = 8 * max(n_feature_rows, 1)       # the gathered float64 values (and one temporary column)
    per_pass = max(1, int((budget_bytes // STATS_SHARE - per_column) // per_column))
    wanted = [(c, False) for c in numeric] + ([(target, True)] if target else [])
    out: dict[str, tuple[float, float, float]] = {}
    for g in range(0, len(wanted), per_pass):
        group = wanted[g:g + per_pass]
        gathered = [np.empty(n_target_rows if is_target else n_feature_rows, dtype=np.float64)
                    for _, is_target in group]
        filled = [0] * len(group)
        for lo, df in source.scan(list(dict.fromkeys(c for c, _ in group))):
            feature_rows = split.stat_rows(lo, lo + len(df)) - lo
            target_rows = split.train_rows(lo, lo + len(df)) - lo
            for j, (c, is_target) in enumerate(group):
                rows = target_rows if is_target else feature_rows
                values = numeric_values(df[c], c, role="target" if is_target else "feature")[rows]
                gathered[j][filled[j]:filled[j] + len(values)] = values
                filled[j] += len(values)
            tell("scaling", lo + len(df), int(starts[-1]))
        for (c, _), values in zip(group, gathered):
            out[c] = _statistics_in_place(values)
        del gathered
        _release_arrow_memory()
    return out


def _statistics_in_place(values: np.ndarray) -> tuple[float, float, float]:
    """:func:`~trainer.data.preprocessor.column_statistics` of ``values`` (float64, consumed), the
    same operations in the same order, so the same numbers, with one temporary column instead of three."""
    present = ~np.isnan(values)
    if not present.all():
        values = values[present]
    del present
    n = len(values)
    if not n:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    deviation = np.subtract(values, mean)
    np.square(deviation, out=deviation)
    std = float(np.sqrt(deviation.mean()))
    del deviation
    k = n // 2
    values.partition(k)
    median = float(values[k]) if n % 2 else (float(values[:k].max()) + float(values[k])) / 2
    return mean, std, median


def _release_arrow_memory() -> None:
    # Arrow's allocator keeps freed pages for reuse; between passes they are better given back.
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
