"""The one table reader: every supported file type reads back the same DataFrame, and every
problem is one ConfigError on data_path naming it and the fix."""
from __future__ import annotations

import gzip
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainer import ConfigError
from trainer.data.tables import SUPPORTED_SUFFIXES, read_table, table_format


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=30), "b": rng.integers(0, 5, 30), "label": ["x", "y", "z"] * 10})


def problem(path) -> str:
    with pytest.raises(ConfigError) as info:
        read_table(path)
    [err] = info.value.errors
    assert err["field"] == "data_path"
    return err["message"]


TEXT = [".csv", ".tsv"] + [t + c for t in (".csv", ".tsv") for c in (".gz", ".bz2", ".xz", ".zip")]


@pytest.mark.parametrize("suffix", TEXT)
def test_csv_and_tsv_plain_and_compressed_read_back(tmp_path: Path, table: pd.DataFrame, suffix: str):
    path = tmp_path / f"data{suffix.upper() if suffix == '.csv' else suffix}"   # suffixes are case-blind
    table.to_csv(path, index=False, sep="\t" if ".tsv" in suffix else ",")
    pd.testing.assert_frame_equal(read_table(path), table, check_dtype=False)
    assert suffix in SUPPORTED_SUFFIXES


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_reads_back(tmp_path: Path, table: pd.DataFrame, suffix: str):
    pytest.importorskip("pyarrow")
    path = tmp_path / f"data{suffix}"
    table.to_parquet(path)
    pd.testing.assert_frame_equal(read_table(str(path)), table)


def test_zstd_is_supported_exactly_when_pandas_can_read_it(tmp_path: Path, table: pd.DataFrame):
    path = tmp_path / "data.csv.zst"
    if importlib.util.find_spec("zstandard"):
        table.to_csv(path, index=False)
        pd.testing.assert_frame_equal(read_table(path), table, check_dtype=False)
        assert ".csv.zst" in SUPPORTED_SUFFIXES
    else:
        path.write_bytes(b"\x28\xb5\x2f\xfd")
        assert "pip install zstandard" in problem(path)
        assert ".csv.zst" not in SUPPORTED_SUFFIXES


def test_a_missing_file_says_so(tmp_path: Path):
    message = problem(tmp_path / "nope.csv")
    assert "does not exist" in message and "nope.csv" in message
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    assert "is a folder" in problem(folder)


def test_an_unknown_suffix_lists_the_supported_ones(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("a,b\n1,2\n")
    message = problem(path)
    assert "unsupported file type 'notes.txt'" in message
    assert all(s in message for s in (".csv", ".tsv", ".gz", ".parquet"))
    assert table_format("x.parquet.gz") is None and "unsupported" in problem(tmp_path / "x.parquet.gz")


@pytest.mark.parametrize("name, content, words", [
    ("bad.csv.gz", b"this is not gzip", "could not read 'bad.csv.gz' as a gzip-compressed CSV file"),
    ("bad.parquet", b"not parquet at all", "could not read 'bad.parquet' as a Parquet file"),
    ("empty.csv", b"", "is empty"),
    ("binary.csv", bytes(range(256)) * 4, "could not read 'binary.csv' as a CSV file"),
])
def test_unreadable_content_names_the_file_and_format(tmp_path: Path, name: str, content: bytes, words: str):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / name
    path.write_bytes(content)
    assert words in problem(path)


def test_parquet_without_pyarrow_names_the_package(tmp_path: Path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    # A fresh interpreter in which pyarrow cannot be imported, as on a machine without it.
    code = ("import sys; sys.modules['pyarrow'] = None\n"
            "from trainer import ConfigError\nfrom trainer.data.tables import read_table\n"
            f"try:\n    read_table({str(path)!r})\nexcept ConfigError as exc:\n    print(exc.errors[0]['message'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert "needs pyarrow" in out.stdout and "pip install pyarrow" in out.stdout, out.stderr


def test_a_gzip_written_by_hand_reads(tmp_path: Path):
    path = tmp_path / "hand.tsv.gz"
    with gzip.open(path, "wt") as f:
        f.write("x\ty\n1\ta\n2\tb\n")
    assert read_table(path).to_dict("list") == {"x": [1, 2], "y": ["a", "b"]}


def test_reading_inside_a_root_refuses_a_link_and_quotes_nothing_from_the_file(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_csv(root / "data.csv", index=False)
    pd.testing.assert_frame_equal(read_table(root / "data.csv", root=root), pd.DataFrame({"a": [1, 2]}))
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    (root / "data.csv").unlink()
    (root / "data.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(ConfigError, match="'data.csv' is a symbolic link; it is not followed") as caught:
        read_table(root / "data.csv", root=root)
    assert caught.value.errors[0]["field"] == "data_path"
    (root / "data.csv").unlink()
    (root / "data.csv").write_bytes(b"\xff\xfe secret-bytes \x00\x81")
    with pytest.raises(ConfigError, match=r"could not read 'data.csv' as a CSV file \(UnicodeDecodeError\)"):
        read_table(root / "data.csv", root=root)
    with pytest.raises(ConfigError, match="no file 'gone.csv' there"):
        read_table(root / "gone.csv", root=root)
