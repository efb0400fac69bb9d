"""The one entry from what a user gives (a DataFrame, or the path of a table) to what a backend
reads: :class:`~trainer.data.PreparedData` in memory, or :class:`~trainer.data.streamed.StreamedData`.

``streaming`` decides: ``False`` reads a file whole (``table_files.read_info``); ``True`` streams a file, or a
DataFrame in slices; ``"auto"`` streams a file whose in-memory preparation would need more than
``memory_budget_mb`` (the whole table as pandas reads it plus the float32 arrays), and keeps a
DataFrame in memory (it is there already).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import pandas as pd

from ..config import ConfigError, TrainingConfig
from .first_pass import Progress, fit_stream
from .prepare import PreparedData, prepare_data
from .sources import FrameSource, Source, open_source
from .streamed import StreamedData
from .table_info import TableInfo, check_columns, describe_table
from .table_files import read_info

MIB = 1 << 20
# Bytes per value a table read whole takes: pandas' float64/int64 column plus the float32 array
# prepared from it.
IN_MEMORY_BYTES_PER_VALUE = 12
# A CSV/TSV file's parsed size per byte of text, roughly (numbers as text take about as many
# bytes as their float64 values).
TEXT_EXPANSION = 1.5
# Shares of the budget: the shuffle buffer (and the one read ahead) take a sixteenth each (with
# the rows being read and encoded, and the pool of freed memory the allocator keeps, about an eighth).
BUFFER_SHARE = 16


_PROGRESS: ContextVar[Optional[Progress]] = ContextVar("trainer_first_pass_progress", default=None)


@contextmanager
def first_pass_progress(progress: Progress) -> Iterator[None]:
    """Runs built inside the block report their first passes over a streamed table to
    ``progress(phase, rows_done, rows_total)`` (phase ``"statistics"``, then ``"scaling"``), from
    the thread building the run; e.g. ``with first_pass_progress(bar): run = Trainer(config, path)``."""
    token = _PROGRESS.set(progress)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def in_memory_bytes(info: TableInfo) -> int:
    """About what reading ``info`` whole and preparing it takes."""
    if info.rows is not None:
        return info.rows * len(info.schema) * IN_MEMORY_BYTES_PER_VALUE
    factor = 3 if info.compression else 1      # compressed text expands
    return int(info.size_bytes * factor * TEXT_EXPANSION * IN_MEMORY_BYTES_PER_VALUE / 8)


def should_stream(config: TrainingConfig, data: Any, info: Optional[TableInfo] = None) -> bool:
    if isinstance(data, pd.DataFrame):
        return config.streaming is True
    if config.streaming != "auto":
        return bool(config.streaming)
    info = info or describe_table(data)
    return in_memory_bytes(info) > config.memory_budget_mb * MIB


def _refuse_unsupported(config: TrainingConfig) -> None:
    if config.backend != "torch":
        raise ConfigError.single("streaming", config.streaming,
                                 "streamed data trains with backend='torch' only (tensorflow reads the table into "
                                 "memory); set backend='torch', or streaming=False for a table that fits in memory")
    if config.devices != 1:
        raise ConfigError.single("streaming", config.streaming,
                                 "streamed data trains on one device; set devices=1, or streaming=False for a table "
                                 "that fits in memory")


def prepare_input(config: TrainingConfig, data: Union[pd.DataFrame, str, Path], seed: int,
                  progress: Optional[Progress] = None) -> Union[PreparedData, StreamedData]:
    """Prepare ``data`` in memory or as a stream (see the module docstring)."""
    if isinstance(data, Source):            # built by the caller (Ray Data on a Ray actor): streamed
        source: Any = data
    elif isinstance(data, (str, Path, TableInfo)):
        info = data if isinstance(data, TableInfo) else describe_table(data)
        if not should_stream(config, data, info):
            return prepare_data(config, read_info(info), seed=seed)
        target = config.target_column
        features = config.feature_columns or [c for c in info.schema if c != target]
        # Before the first pass, which cannot hash a list or struct value: a clear error instead
        # (a missing column is named by the first pass itself).
        check_columns(info, [c for c in [*features, target] if c in info.schema], {target: "target_column"})
        source = open_source(info)
    elif isinstance(data, pd.DataFrame) and config.streaming is True:
        source = FrameSource(data)
    else:
        return prepare_data(config, data, seed=seed)
    _refuse_unsupported(config)
    budget = config.memory_budget_mb * MIB
    pre, split, fingerprint = fit_stream(config, source, seed, budget, progress or _PROGRESS.get())
    sample_bytes = max(1, pre.n_features * 4)
    buffer_rows = max(1024, budget // BUFFER_SHARE // sample_bytes)
    return StreamedData(source, pre, split, fingerprint, seed, int(buffer_rows))
