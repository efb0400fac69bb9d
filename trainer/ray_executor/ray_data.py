"""Reading a Parquet table's row groups with Ray Data, on the cluster, for a run on a Ray actor.

A streamed table is read a block at a time, a block being one Parquet row group (the unit of the
split and of the shuffle, see ``trainer.data``). :func:`stream_blocks` hands Ray Data the blocks
to read in the order the run asks for them (file order for a pass over the table, the epoch's
permutation for training): ``ray.data.from_items`` of ``(block, file, row group)`` and
``map_batches`` reading each, with ``preserve_order``, so Ray's read tasks run wherever the
cluster has room, a few blocks ahead of the run, and the run receives exactly the blocks a local
stream reads, in the same order. The rows never pass through the driver or the API server; the
files must be readable at the same path on the cluster's nodes (a shared filesystem).

Read tasks reserve no CPU of their own: the run's actor holds the CPUs reserved for the task, and
a read task that waited for a CPU held by that same actor would never start.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np

from ..data.sources import ParquetSource

if TYPE_CHECKING:
    from ..data.table_info import TableInfo

BLOCK = "__epoch_widgets_block__"      # the column that tells which block a row came from
PREFETCH = 2                           # blocks read ahead of the one the run trains on
READERS = 2                            # read tasks at once (each a worker process that imports pyarrow)


def _read(batch: dict[str, np.ndarray], files: Sequence[str], columns: Optional[list[str]],
          root: Optional[str]) -> Any:
    """Ray Data's map function: the row groups ``batch`` names, marked with their block numbers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..confined import open_confined

    tables = []
    for k, i, g in zip(batch["block"], batch["file"], batch["group"]):
        path = files[int(i)]
        source = open_confined(root, path) if root is not None else path
        with pq.ParquetFile(source) as parquet:
            table = parquet.read_row_group(int(g), columns=columns)
        tables.append(table.append_column(BLOCK, pa.array(np.full(table.num_rows, int(k), dtype=np.int64))))
    return pa.concat_tables(tables)


def stream_blocks(files: Sequence[str], where: Sequence[tuple[int, int]], order: Sequence[int],
                  columns: Optional[list[str]] = None, root: Optional[str] = None,
                  prefetch: int = PREFETCH) -> Iterator[tuple[int, Any]]:
    """``(block, pyarrow.Table)`` for each block of ``order``, in that order, read by Ray Data.

    ``where[block]`` is ``(file index, row group)`` in ``files``; every block of ``order`` must
    hold rows (leave out empty row groups); ``columns`` None reads all; ``root`` confines every
    open to that folder (no symbolic link followed)."""
    import ray.data

    order = [int(k) for k in order]
    if not order:
        return
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    items = [{"block": k, "file": where[k][0], "group": where[k][1]} for k in order]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _read, batch_size=1, batch_format="numpy", num_cpus=0, concurrency=READERS,
        fn_kwargs={"files": list(map(str, files)), "columns": columns, "root": root})
    expected = iter(order)
    current, parts = next(expected), []
    for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=prefetch):
        marks = table.column(BLOCK).to_numpy()
        start = 0
        while start < len(marks):
            k = int(marks[start])
            if k != current:
                yield current, _joined(parts)
                current, parts = next(expected), []
                if k != current:
                    raise RuntimeError(f"Ray Data returned block {k} where block {current} was due")
            change = np.flatnonzero(marks[start:] != k)
            end = start + int(change[0]) if len(change) else len(marks)
            parts.append(table.slice(start, end - start))
            start = end
    yield current, _joined(parts)


def _joined(parts: list[Any]) -> Any:
    import pyarrow as pa

    return pa.concat_tables(parts).drop_columns([BLOCK])


class RayDataSource(ParquetSource):
    """A :class:`~trainer.data.sources.ParquetSource` whose blocks Ray Data reads
    (:func:`stream_blocks`): a pass over the table (statistics, validation) is one pipeline a few
    blocks ahead; a block read alone (the epoch's shuffled order) is one small Ray Data job. The
    blocks, their rows and their order are the local source's, so the run is the same, and so is
    what a checkpoint records of the table (a run resumes on either)."""

    def __init__(self, info: "TableInfo"):
        super().__init__(info)
        self._last: Optional[tuple[int, tuple[str, ...], Any]] = None   # a window reads the block before again

    def _stream(self, blocks: list[int], columns: list[str], prefetch: int) -> Iterator[tuple[int, Any]]:
        full = [k for k in blocks if self.block_rows[k] > 0]
        got = stream_blocks(self.info.files, self._where, full, columns, self.info.root, prefetch)
        for k in blocks:
            if self.block_rows[k] == 0:
                yield k, super().read(k, columns)      # an empty row group: nothing to fetch
            else:
                _, table = next(got)
                yield k, table.to_pandas()

    def read(self, block: int, columns: list[str]) -> Any:
        last = self._last
        if last is not None and last[0] == block and last[1] == tuple(columns):
            return last[2]
        _, frame = next(self._stream([block], columns, 0))
        self._last = (block, tuple(columns), frame)
        return frame

    def read_slices(self, block: int, columns: list[str]) -> Iterator[Any]:
        yield self.read(block, columns)

    def scan(self, columns: list[str]) -> Iterator[tuple[int, Any]]:
        """The whole table in file order as ``(first row, block)``, one pipeline."""
        starts = self.starts
        for k, frame in self._stream(list(range(len(self.block_rows))), columns, PREFETCH):
            yield int(starts[k]), frame


def cluster_table(config: dict[str, Any], root: Optional[str]) -> Any:
    """The table a task's ``data_path`` names, as its actor reads it (inside ``root``, no link
    followed): a :class:`RayDataSource` when the run streams Parquet files, else the described
    table, which the run reads whole on the actor's node (a CSV/TSV file is streamed there by
    pyarrow). Raises ConfigError, naming the problem, as a local worker would."""
    from ..config import as_config
    from ..data.inputs import should_stream
    from ..data.table_info import describe_table

    info = describe_table(config["data_path"], root)
    if info.kind == "parquet" and should_stream(as_config(config), info, info):
        return RayDataSource(info)
    return info
