"""What a DataFrame column holds, and one clear problem (with the fix) for a column that cannot be used.

Shared by training (:func:`trainer.data.prepare_data`) and prediction
(:meth:`trainer.data.Preprocessor.transform`), so both name the same problem the same way instead
of letting pandas or numpy fail with ``unhashable type`` or a silent cast.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from . import values as data_values

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# The model computes in float32: a value beyond its range becomes inf once the data is a tensor.
FLOAT32_MAX = float(np.finfo(np.float32).max)

_NUMBER_KINDS = {"integer", "floating", "mixed-integer-float", "decimal", "boolean"}
_TIME_KINDS = {"datetime", "datetime64", "date", "time", "period"}
_SPAN_KINDS = {"timedelta", "timedelta64"}
_CONTAINERS = (list, dict, set, frozenset, tuple, np.ndarray, pd.Series, pd.DataFrame)


class ColumnProblem(ValueError):
    """One column that cannot be used as it is; ``str(problem)`` says why and what would fix it."""

    def __init__(self, column: Any, message: str):
        self.column = column
        super().__init__(message)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _short(value: Any) -> str:
    text = repr(_plain(value))
    return text if len(text) <= 40 else text[:37] + "..."


def _eg(value: Any, row: Any) -> str:
    """An example of a bad value and where it is; only where it is while values are hidden."""
    return f"e.g. in row {row!r}" if data_values.hidden() else f"e.g. {_short(value)} in row {row!r}"


def _like(value: Any, row: Any) -> str:
    return f"like the one in row {row!r}" if data_values.hidden() else f"like {_short(value)} (row {row!r})"


def _first(col: pd.Series, mask: np.ndarray) -> tuple[Any, Any]:
    """The first value where ``mask`` holds and its row label."""
    pos = int(np.argmax(mask))
    return col.iloc[pos], _plain(col.index[pos])


def _container_problem(col: pd.Series, name: Any, mask: np.ndarray) -> ColumnProblem:
    value, row = _first(col, mask)
    if isinstance(value, dict):
        fix = f"pd.json_normalize(df[{name!r}].tolist()).set_index(df.index)"
    else:
        fix = f"pd.DataFrame(df[{name!r}].tolist(), index=df.index).add_prefix({str(name) + '_'!r})"
    return ColumnProblem(name, f"column {name!r} holds {type(value).__name__} values ({_eg(value, row)}); "
                               f"a column must hold one number or one category per row: expand it into "
                               f"columns of their own first, e.g. {fix}")


def _time_problem(name: Any, what: str, role: str) -> ColumnProblem:
    if what == "span":
        return ColumnProblem(name, f"column {name!r} holds time spans (timedelta), which cannot be used as a {role}; "
                                   f"convert it to numbers, e.g. df[{name!r}].dt.total_seconds()")
    return ColumnProblem(name, f"column {name!r} holds dates or times (datetime), which cannot be used as a {role}; "
                               f"convert it to numbers, e.g. df[{name!r}].astype('int64') // 10**9 (seconds), or "
                               f"to parts such as df[{name!r}].dt.dayofweek")


def _complex_problem(name: Any) -> ColumnProblem:
    return ColumnProblem(name, f"column {name!r} holds complex numbers; the model takes real ones: split it into "
                               f"two columns, e.g. df[{str(name) + '_re'!r}] = np.real(df[{name!r}]) and "
                               f"df[{str(name) + '_im'!r}] = np.imag(df[{name!r}]), or use np.abs(df[{name!r}])")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_, complex, np.complexfloating))


def _stray_strings(col: pd.Series, name: Any, parsed: pd.Series, *, majority: bool,
                   role: str) -> Optional[ColumnProblem]:
    """A problem if some present values are not numbers although (with ``majority``: most) are."""
    present = col.notna().to_numpy()
    bad = present & parsed.isna().to_numpy()
    n_bad, n_present = int(bad.sum()), int(present.sum())
    if not n_bad or (majority and n_bad * 2 >= n_present):
        return None
    value, row = _first(col, bad)
    values = "value" if n_bad == 1 else "values"
    if not majority:
        return ColumnProblem(name, f"column {name!r} must hold numbers (the model was trained on numbers), but "
                                   f"{n_bad} {values} are not, {_like(value, row)}; fix them or "
                                   f"make them missing with pd.to_numeric(df[{name!r}], errors='coerce')")
    fix = ("drop those rows, or fix them" if role == "target" else
           f"fix them, or make them missing values with df[{name!r}] = pd.to_numeric(df[{name!r}], errors='coerce') "
           f"and set missing_values='impute'")
    return ColumnProblem(name, f"column {name!r} is numeric except {n_bad} {values} "
                               f"{_like(value, row)}; {fix} (if it holds categories, say so: "
                               f"df[{name!r}] = df[{name!r}].astype('category'))")


def _parse_numbers(col: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(col, errors="coerce")
    except (TypeError, ValueError, OverflowError):
        # Python ints too large even for float64 land here: compare element by element.
        return col.map(lambda v: float(v) if _is_number(v) else np.nan)


def _any_number(col: pd.Series) -> bool:
    """Whether any distinct string parses as a number (a cheap test before checking every row)."""
    distinct = pd.Series(col.dropna().unique(), dtype=object)
    return bool(pd.to_numeric(distinct, errors="coerce").notna().any())


def _refuse_unusable(col: pd.Series, name: Any, inferred: str, role: str) -> None:
    """Raise the problem of an object column whose values no model can take (``inferred`` by pandas)."""
    if inferred == "complex":
        raise _complex_problem(name)
    if inferred in _TIME_KINDS or inferred in _SPAN_KINDS:
        raise _time_problem(name, "span" if inferred in _SPAN_KINDS else "time", role)
    if inferred == "bytes":
        raise ColumnProblem(name, f"column {name!r} holds bytes; decode them to strings first, "
                                  f"e.g. df[{name!r}] = df[{name!r}].str.decode('utf-8')")
    if inferred not in _NUMBER_KINDS and inferred not in ("string", "empty"):
        values = col.to_numpy(dtype=object)
        containers = np.fromiter((isinstance(v, _CONTAINERS) for v in values), bool, len(values))
        if containers.any():
            raise _container_problem(col, name, containers)


def _object_kind(col: pd.Series, name: Any, role: str) -> str:
    """The kind of an object or string column, from what its values are."""
    inferred = pdt.infer_dtype(col, skipna=True)
    if inferred in _NUMBER_KINDS:
        return NUMERIC
    if inferred == "empty":
        return CATEGORICAL               # every value missing: the caller reports that
    _refuse_unusable(col, name, inferred, role)
    if inferred == "string" and not _any_number(col):
        return CATEGORICAL
    # Numbers mixed with strings (a numeric column with stray text) or strings alone.
    problem = _stray_strings(col, name, _parse_numbers(col), majority=True, role=role)
    if problem is not None:
        raise problem
    if inferred == "string":
        return CATEGORICAL
    kinds = {}
    for pos, v in enumerate(col.to_numpy(dtype=object)):
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            kinds.setdefault(type(v).__name__, (v, _plain(col.index[pos])))
    shown = ", ".join(f"{t} ({_eg(v, row)})" for t, (v, row) in list(kinds.items())[:3])
    raise ColumnProblem(name, f"column {name!r} mixes values of types {shown}; give it one type: "
                              f"df[{name!r}].astype(str) if it holds categories, or "
                              f"pd.to_numeric(df[{name!r}], errors='coerce') if it holds numbers")


def column_kind(col: pd.Series, name: Any, role: str = "feature") -> str:
    """``NUMERIC`` or ``CATEGORICAL``; a :class:`ColumnProblem` for a column no model can take."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if len(cats) and pdt.infer_dtype(cats, skipna=True) not in ("string", "integer", "floating", "boolean",
                                                                     "mixed-integer-float", "mixed-integer", "mixed"):
            raise ColumnProblem(name, f"column {name!r} is a category of {cats.dtype} values, which cannot be saved "
                                      f"with the model; make them strings: df[{name!r}] = df[{name!r}].astype(str)")
        return CATEGORICAL
    if pdt.is_bool_dtype(dtype):
        return NUMERIC
    if pdt.is_complex_dtype(dtype):
        raise _complex_problem(name)
    if pdt.is_numeric_dtype(dtype):
        return NUMERIC
    if pdt.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        raise _time_problem(name, "time", role)
    if pdt.is_timedelta64_dtype(dtype):
        raise _time_problem(name, "span", role)
    if pdt.is_object_dtype(dtype) or pdt.is_string_dtype(dtype):
        return _object_kind(col, name, role)
    raise ColumnProblem(name, f"column {name!r} has type {dtype}, which cannot be used as a {role}; "
                              f"convert it to numbers or strings, or drop it")


def numeric_values(col: pd.Series, name: Any, role: str = "feature") -> np.ndarray:
    """The column's values as a numpy number array (NaN where missing) for scaling.

    A column of numpy numbers comes back as the DataFrame's own array (no copy: the caller must
    not write to it); anything else as a new float64 array. Refuses what cannot become a number
    (text, lists, dates, complex numbers) and finite values beyond float32's range; infinities
    are left for the caller to count.
    """
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        values = col.to_numpy()
    elif pdt.is_numeric_dtype(dtype) and not pdt.is_complex_dtype(dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)      # nullable, Arrow and sparse numbers
    else:
        if pdt.is_object_dtype(dtype) or pdt.is_string_dtype(dtype):
            _refuse_unusable(col, name, pdt.infer_dtype(col, skipna=True), role)
        elif not isinstance(dtype, pd.CategoricalDtype):
            column_kind(col, name, role)         # raises the problem of dates, complex numbers, ...
        parsed = _parse_numbers(col)
        problem = _stray_strings(col, name, parsed, majority=False, role=role)
        if problem is not None:
            raise problem
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    if values.dtype.kind == "f" and values.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            big = np.abs(values) > FLOAT32_MAX
        big &= np.isfinite(values)
        if big.any():
            pos = int(np.argmax(np.where(big, np.abs(values), 0)))
            top = float(values[pos])
            if data_values.hidden():
                raise ColumnProblem(name, f"column {name!r} has values (e.g. in row {_plain(col.index[pos])!r}) beyond "
                                          f"the float32 range (about ±3.4e38) the model computes in; rescale it first")
            raise ColumnProblem(name, f"column {name!r} has values up to {top:.3g} (row {_plain(col.index[pos])!r}), beyond "
                                      f"the float32 range (about ±3.4e38) the model computes in; rescale it first, "
                                      f"e.g. df[{name!r}] / 1e{int(np.log10(abs(top)))} or np.log10 of it")
    return values


def category_problem(col: pd.Series, name: Any) -> Optional[ColumnProblem]:
    """A problem if the column's values cannot be compared with categories (lists, dicts, ...)."""
    if not pdt.is_object_dtype(col.dtype) or pdt.infer_dtype(col, skipna=True) != "mixed":
        return None
    values = col.to_numpy(dtype=object)
    containers = np.fromiter((isinstance(v, _CONTAINERS) for v in values), bool, len(values))
    return _container_problem(col, name, containers) if containers.any() else None


# ---------------------------------------------------------------------- the frame as a whole

def layout_problem(df: pd.DataFrame) -> Optional[str]:
    """What makes ``df`` unusable as a whole (not a DataFrame, column levels, no columns)."""
    if not isinstance(df, pd.DataFrame):
        return f"expected a pandas DataFrame, got {type(df).__name__}"
    if isinstance(df.columns, pd.MultiIndex):
        return (f"the DataFrame's columns have {df.columns.nlevels} levels (a MultiIndex); flatten them to "
                f"strings first, e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns]")
    if len(df.columns) == 0:
        return "the DataFrame has no columns"
    return None


def duplicated(df: pd.DataFrame, names: list[Any]) -> list[Any]:
    counts = df.columns.value_counts()
    return [c for c in dict.fromkeys(names) if counts.get(c, 0) > 1]


def duplicate_message(name: Any, df: pd.DataFrame) -> str:
    n = int((df.columns == name).sum())
    return (f"column {name!r} appears {n} times in the DataFrame; rename or drop the copies, "
            f"e.g. df = df.loc[:, ~df.columns.duplicated()]")


def check_prediction_frame(df: pd.DataFrame, needed: list[str]) -> None:
    """The prediction-time counterpart of :func:`resolve_columns`; raises ValueError."""
    problem = layout_problem(df)
    if problem:
        raise ValueError(problem)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        renamed = [c for c in df.columns if not isinstance(c, str) and str(c) in missing]
        hint = (f"; its columns {renamed} are not strings: rename them, df.columns = df.columns.astype(str)"
                if renamed else "")
        raise ValueError(f"the data lacks feature columns {missing}; the model was trained on {needed}{hint}")
    twice = duplicated(df, needed)
    if twice:
        raise ValueError(duplicate_message(twice[0], df))
