"""Where a streamed table's rows come from, as numbered blocks of rows read one at a time.

A block is the unit of reading and of the shuffle: a Parquet row group, a fixed-size block of a
CSV/TSV file (the same rows on every read, see ``text_reader``), or a slice of a DataFrame.
:meth:`Source.read` returns one block's columns as a DataFrame, :meth:`Source.read_slices` the same
rows a slice at a time; :meth:`Source.scan` walks the table in file order. Parquet blocks are read in any order at the cost of one row group; a text file is
read forwards only, so reading an earlier block starts the file again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from .table_files import open_file
from .table_info import TableInfo, describe_table
from .text_reader import text_batches

FRAME_BLOCK_ROWS = 65536
# Rows decoded at a time within a Parquet row group, so a large row group never exists decoded
# whole as Arrow and pandas copies at once.
SLICE_ROWS = 131072


class Source:
    """Blocks of a table. ``block_rows`` is known up front (Parquet, DataFrame) or after
    :meth:`count_rows` (CSV/TSV)."""

    columns: list[str]
    block_rows: Optional[list[int]] = None
    random_access = True           # whether reading blocks out of order is cheap

    def read(self, block: int, columns: list[str]) -> pd.DataFrame:
        raise NotImplementedError

    def scan(self, columns: list[str]) -> Iterator[tuple[int, pd.DataFrame]]:
        """The whole table in file order as ``(first row, slice of rows)``."""
        lo = 0
        for k in range(len(self.count_rows())):
            for part in self.read_slices(k, columns):
                yield lo, part
                lo += len(part)

    def read_slices(self, block: int, columns: list[str]) -> Iterator[pd.DataFrame]:
        """Block ``block`` in consecutive slices of rows (one slice where the format has none)."""
        yield self.read(block, columns)

    def count_rows(self) -> list[int]:
        assert self.block_rows is not None
        return self.block_rows

    @property
    def starts(self) -> np.ndarray:
        """Each block's first row (and the row count last)."""
        return np.concatenate([[0], np.cumsum(self.count_rows(), dtype=np.int64)])

    def describe(self) -> dict[str, Any]:
        """What identifies the table in a checkpoint (file names and sizes; no contents)."""
        return {}


class FrameSource(Source):
    """A DataFrame in memory, in slices of ``block_rows`` rows (the in-memory table as a stream)."""

    def __init__(self, df: pd.DataFrame, block_rows: int = FRAME_BLOCK_ROWS):
        self.df = df
        self.columns = [str(c) for c in df.columns]
        n = len(df)
        self.block_rows = [min(block_rows, n - lo) for lo in range(0, n, block_rows)]
        self._size = block_rows

    def read(self, block: int, columns: list[str]) -> pd.DataFrame:
        lo = block * self._size
        return self.df.iloc[lo:lo + self._size][columns]


class ParquetSource(Source):
    """Parquet files, one block per row group, read with pyarrow."""

    def __init__(self, info: TableInfo):
        import pyarrow.parquet as pq

        self.info = info
        self.columns = list(info.schema)
        self._files = [pq.ParquetFile(open_file(f, info.root, f)) for f in info.files]
        self._where = [(i, g) for i, n in enumerate(info.row_groups) for g in range(n)]
        self.block_rows = [self._files[i].metadata.row_group(g).num_rows for i, g in self._where]

    def read(self, block: int, columns: list[str]) -> pd.DataFrame:
        i, g = self._where[block]
        return self._files[i].read_row_group(g, columns=columns).to_pandas()

    def read_slices(self, block: int, columns: list[str]) -> Iterator[pd.DataFrame]:
        i, g = self._where[block]
        for batch in self._files[i].iter_batches(SLICE_ROWS, row_groups=[g], columns=columns):
            yield batch.to_pandas()

    def describe(self) -> dict[str, Any]:
        return {"files": [Path(f).name for f in self.info.files], "bytes": self.info.size_bytes,
                "blocks": len(self.block_rows)}


class TextSource(Source):
    """A CSV/TSV file, read forwards in fixed-size blocks."""

    random_access = False

    def __init__(self, info: TableInfo, path: Any = None):
        self.info = info
        self.columns = list(info.schema)
        self._path = path if path is not None else info.files[0]
        self._cursor: Optional[tuple[int, Iterator[Any], list[str]]] = None   # (next block, batches, columns)

    def _batches(self, columns: list[str]) -> Iterator[Any]:
        return text_batches(self._path, Path(self.info.files[0]), self.info.kind, self.info.compression, columns,
                            self.info.root)

    def count_rows(self) -> list[int]:
        if self.block_rows is None:
            first = self.columns[:1]
            self.block_rows = [b.num_rows for b in self._batches(first)]
        return self.block_rows

    def scan(self, columns: list[str]) -> Iterator[tuple[int, pd.DataFrame]]:
        lo = 0
        for batch in self._batches(columns):
            yield lo, batch.to_pandas()
            lo += batch.num_rows

    def read(self, block: int, columns: list[str]) -> pd.DataFrame:
        cursor = self._cursor
        if cursor is None or cursor[0] > block or cursor[2] != columns:
            cursor = (0, self._batches(columns), columns)
        k, batches, _ = cursor
        while True:
            batch = next(batches)
            k += 1
            if k - 1 == block:
                self._cursor = (k, batches, columns)
                return batch.to_pandas()

    def describe(self) -> dict[str, Any]:
        return {"files": [Path(self.info.files[0]).name], "bytes": self.info.size_bytes}


def open_source(data: Any) -> Source:
    """The source for a DataFrame, a :class:`TableInfo` or a table path."""
    if isinstance(data, pd.DataFrame):
        return FrameSource(data)
    info = data if isinstance(data, TableInfo) else describe_table(data)
    return ParquetSource(info) if info.kind == "parquet" else TextSource(info)
