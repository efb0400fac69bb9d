"""stream_blocks: a Parquet table's row groups read by Ray Data on a real local Ray instance, in the
order the run asks for, the same rows a local read gives."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from trainer.ray_executor.ray_data import stream_blocks  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture
def table(tmp_path: Path) -> tuple[Path, list[str], list[tuple[int, int]]]:
    """Three files of 1,000 rows in row groups of 300: 12 blocks."""
    root = tmp_path / "root"
    root.mkdir()
    files = []
    for i in range(3):
        rows = np.arange(i * 1000, (i + 1) * 1000)
        pq.write_table(pa.table({"x": rows.astype(np.float32), "label": rows % 2}), root / f"p{i}.parquet",
                       row_group_size=300)
        files.append(str(root / f"p{i}.parquet"))
    where = [(i, g) for i, f in enumerate(files) for g in range(pq.ParquetFile(f).num_row_groups)]
    return root, files, where


def local(files: list[str], where: list[tuple[int, int]], k: int, columns: Any = None) -> Any:
    i, g = where[k]
    return pq.ParquetFile(files[i]).read_row_group(g, columns=columns)


def test_blocks_come_in_the_asked_order_with_the_rows_a_local_read_gives(ray_instance, table):
    root, files, where = table
    order = [int(k) for k in np.random.default_rng(0).permutation(len(where))]
    got = list(stream_blocks(files, where, order, ["x"], root=str(root)))
    assert [k for k, _ in got] == order
    for k, block in got:
        assert block.equals(local(files, where, k, ["x"]))
    # A pass in file order, every column.
    whole = pa.concat_tables([b for _, b in stream_blocks(files, where, range(len(where)))])
    assert whole["x"].to_pylist() == [float(r) for r in range(3000)] and whole.column_names == ["x", "label"]


def test_a_file_swapped_for_a_link_is_not_read_inside_a_root(ray_instance, table, tmp_path):
    root, files, where = table
    pq.write_table(pa.table({"x": np.float32([1e6]), "label": [1]}), tmp_path / "secret.parquet")
    os.unlink(files[1])
    os.symlink(tmp_path / "secret.parquet", files[1])
    with pytest.raises(Exception, match="symbolic link"):
        list(stream_blocks(files, where, range(len(where)), root=str(root)))
