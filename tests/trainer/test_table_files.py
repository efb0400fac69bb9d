"""table_files and confined_filesystem: which files a data_path names, and reading them inside a
folder without following any symbolic link out of it."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pandas as pd
import pytest

pa_ds = pytest.importorskip("pyarrow.dataset", reason="Parquet needs pyarrow")

from trainer import ConfigError  # noqa: E402
from trainer.confined import ConfinementError  # noqa: E402
from trainer.confined_fs import confined_filesystem  # noqa: E402
from trainer.data.table_files import is_glob, read_info, table_files  # noqa: E402
from trainer.data.table_info import describe_table  # noqa: E402


def part(rows: range) -> pd.DataFrame:
    return pd.DataFrame({"x": [float(r) for r in rows], "label": [r % 2 for r in rows]})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/sets: Spark-like parts in two folders, its marker files, a note; secret.parquet outside."""
    sets = tmp_path / "root" / "sets"
    (sets / "day=1").mkdir(parents=True)
    (sets / "day=2").mkdir()
    part(range(0, 5)).to_parquet(sets / "day=1" / "part-0.parquet")
    part(range(5, 9)).to_parquet(sets / "day=1" / "part-1.parquet")
    part(range(9, 12)).to_parquet(sets / "day=2" / "part-0.pq")
    (sets / "_SUCCESS").write_bytes(b"")
    (sets / ".part-0.parquet.crc").write_bytes(b"crc")
    (sets / "README.txt").write_text("notes")
    part(range(3)).to_csv(tmp_path / "root" / "table.csv", index=False)
    part(range(100, 103)).to_parquet(tmp_path / "secret.parquet")
    return tmp_path / "root"


def names(files: list[Path], base: Path) -> list[str]:
    return [str(f.relative_to(base)) for f in files]


def problem(path, root=None) -> str:
    with pytest.raises(ConfigError) as err:
        table_files(path, root)
    assert err.value.errors[0]["field"] == "data_path"
    return err.value.errors[0]["message"]


@pytest.mark.parametrize("within", [False, True])
def test_a_folder_means_its_parquet_files_at_any_depth_in_path_order(root, within):
    given = "sets" if within else root / "sets"
    files = table_files(given, root if within else None)
    assert names(files, root) == ["sets/day=1/part-0.parquet", "sets/day=1/part-1.parquet", "sets/day=2/part-0.pq"]
    # Their rows, in that order, are the table's rows in order.
    rows = pa_ds.dataset([str(f) for f in files], format="parquet").to_table()["x"].to_pylist()
    assert rows == [float(r) for r in range(12)]


def test_globs_match_parts_and_any_folders_with_double_star(root):
    assert names(table_files("sets/*/part-0.*", root), root) == ["sets/day=1/part-0.parquet", "sets/day=2/part-0.pq"]
    assert names(table_files(root / "sets" / "**" / "*.pq"), root) == ["sets/day=2/part-0.pq"]
    assert names(table_files(str(root / "sets/day=[2]/*")), root) == ["sets/day=2/part-0.pq"]
    assert is_glob("sets/*.parquet") and not is_glob("sets/part.parquet")


def test_one_table_file_is_itself(root):
    assert table_files(root / "table.csv") == [root / "table.csv"]
    assert table_files("table.csv", root) == [root / "table.csv"]


def test_what_names_no_parquet_files_says_what_to_give_instead(root):
    (root / "empty").mkdir()
    assert "no file at 'nothing' (the path does not exist)" in problem("nothing", root)
    assert "the folder 'empty' holds no Parquet file" in problem("empty", root)
    assert "no file matches 'sets/*.parquet'" in problem("sets/*.parquet", root)
    assert table_files("*.csv", root) == [root / "table.csv"]          # a glob may name one CSV file
    part(range(3)).to_csv(root / "more.csv", index=False)
    assert "takes in 'more.csv', which is no Parquet file" in problem("*.csv", root)
    assert "unsupported file type 'README.txt'" in problem("sets/README.txt", root)


def test_inside_a_root_nothing_leads_out(root, tmp_path):
    assert "not inside the allowed folder" in problem(str(tmp_path / "secret.parquet"), root)
    assert "leave out '..'" in problem("sets/../../secret.parquet", root)
    os.symlink(tmp_path / "secret.parquet", root / "sets" / "day=2" / "zz.parquet")
    for given in ("sets", "sets/day=2/*", "sets/**/*.parquet"):
        message = problem(given, root)
        assert "'sets/day=2/zz.parquet' is a symbolic link; it is not followed here" in message
        assert str(tmp_path) not in message
    # Without a root (the user's own files) the link is followed.
    assert names(table_files(root / "sets" / "day=2"), root) == ["sets/day=2/part-0.pq", "sets/day=2/zz.parquet"]


def test_a_linked_folder_on_the_way_or_inside_is_refused_inside_a_root(root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    part(range(3)).to_parquet(outside / "p.parquet")
    os.symlink(outside, root / "sets" / "linked")
    assert "'sets/linked' is a symbolic link" in problem("sets", root)
    assert "'sets/linked' is a symbolic link" in problem("sets/linked/*.parquet", root)
    # A link whose name a glob does not take in is no concern of it.
    assert len(table_files("sets/day=1/*", root)) == 2


def test_a_link_loop_is_walked_once_without_a_root(root):
    os.symlink(root / "sets", root / "sets" / "day=2" / "again")
    assert len(table_files(root / "sets")) == 3


def test_the_confined_filesystem_reads_inside_and_refuses_a_link_at_open_time(root, tmp_path):
    fs = confined_filesystem(root)
    files = [str(f) for f in table_files("sets", root)]
    data = pa_ds.dataset(files, filesystem=fs, format="parquet")
    assert data.count_rows() == 12
    # It travels to other processes (Ray's read tasks) as itself.
    again = pickle.loads(pickle.dumps(fs))
    assert pa_ds.dataset(["sets/day=2/part-0.pq"], filesystem=again, format="parquet").count_rows() == 3
    # A file swapped for a link after it was listed is not opened.
    target = root / "sets" / "day=1" / "part-1.parquet"
    target.unlink()
    os.symlink(tmp_path / "secret.parquet", target)
    with pytest.raises(ConfinementError, match="symbolic link"):
        pa_ds.dataset(files, filesystem=fs, format="parquet").to_table()
    with pytest.raises(ConfinementError, match="not inside"):
        fs.open_input_file(str(tmp_path / "secret.parquet"))
    with pytest.raises(ConfinementError, match="only reads"):
        fs.open_output_stream("sets/new.parquet")


def test_read_info_reads_a_folder_or_glob_whole_in_path_order_and_one_file_as_read_table(root):
    assert read_info(describe_table(root / "sets"))["x"].tolist() == [float(r) for r in range(12)]
    assert read_info(describe_table("sets/day=1/*", root))["x"].tolist() == [float(r) for r in range(9)]
    assert read_info(describe_table("table.csv", root))["x"].tolist() == [0.0, 1.0, 2.0]


def test_describe_table_inside_a_root_names_the_file_whose_schema_differs_without_quoting_values(root):
    pd.DataFrame({"x": ["secret-value"], "label": [1]}).to_parquet(root / "sets" / "day=2" / "z.parquet")
    with pytest.raises(ConfigError) as err:
        describe_table("sets", root)
    message = err.value.errors[0]["message"]
    assert "'z.parquet' has another schema than 'part-0.parquet' (column 'x' is large_string, not double)" in message
    assert "secret-value" not in message
