"""The building blocks without a server: task ids, path resolution, record persistence."""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from epoch_widgets.server.errors import BadRequest
from epoch_widgets.server.ids import TaskIdAllocator, is_task_id
from epoch_widgets.server.paths import resolve_data_path, resolve_output_path
from epoch_widgets.server.store import TaskStore

NOON = datetime(2024, 1, 1, 12, 0, 0)


def test_ids_in_one_second_get_numbered_suffixes_and_never_repeat():
    ids = TaskIdAllocator(clock=lambda: NOON)
    got = [ids.allocate() for _ in range(1000)]
    assert got[:3] == ["epoch_training_20240101_120000", "epoch_training_20240101_120000_2",
                       "epoch_training_20240101_120000_3"]
    assert len(set(got)) == 1000 and all(is_task_id(i) for i in got)


def test_ids_skip_ones_already_used_and_reuse_only_released_ones():
    ids = TaskIdAllocator(taken={"epoch_training_20240101_120000"}, clock=lambda: NOON)
    first = ids.allocate()
    assert first == "epoch_training_20240101_120000_2"
    ids.release(first)                       # a refused start gives its id back
    assert ids.allocate() == first


@pytest.mark.parametrize("text", ["epoch_training_20240101_120000_0", "../epoch_training_20240101_120000",
                                  "epoch_training_2024010_120000", "epoch_training_20240101_120000.json", ""])
def test_anything_else_is_not_a_task_id(text):
    assert not is_task_id(text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "data").mkdir(parents=True)
    (tmp_path / "root" / "data" / "train.csv").write_text("a,b\n1,2\n")
    (tmp_path / "root" / "t.parquet").write_bytes(b"")
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    os.symlink(tmp_path / "secret.csv", tmp_path / "root" / "link.csv")
    return tmp_path / "root"


def test_data_paths_resolve_inside_the_root(root: Path):
    assert resolve_data_path("data/train.csv", root) == root / "data" / "train.csv"
    assert resolve_data_path(str(root / "data" / "train.csv"), root) == root / "data" / "train.csv"
    assert resolve_data_path("t.parquet", root) == root / "t.parquet"


@pytest.mark.parametrize("value, words", [
    ("../secret.csv", "outside"), ("link.csv", "outside"), ("/etc/hosts.csv", "outside"),
    ("data/../../secret.csv", "outside"), ("data/none.csv", "no such file"), ("data", "holds no Parquet file"),
    ("notes.txt", "unsupported file type"), ("data/*.parquet", "no file matches"),
    ("**/t*", "takes in 'data/train.csv', which is no Parquet file"),
    (None, "required"), ("", "non-empty"),
])
def test_bad_data_paths_name_the_field_and_the_fix(root: Path, value, words):
    with pytest.raises(BadRequest) as err:
        resolve_data_path(value, root)
    assert err.value.errors[0]["field"] == "data_path" and words in err.value.message


def test_a_folder_or_glob_of_parquet_files_resolves_inside_the_root(root: Path):
    (root / "sets" / "a").mkdir(parents=True)
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(root / "sets" / "a" / "p.parquet")
    assert resolve_data_path("sets", root) == root / "sets"
    assert resolve_data_path("sets/*/*.parquet", root) == root / "sets" / "*" / "*.parquet"
    assert resolve_data_path(str(root / "sets" / "**"), root) == root / "sets" / "**"


def test_a_folder_or_glob_taking_in_a_link_is_refused_naming_it_only(root: Path, tmp_path: Path):
    (root / "sets").mkdir()
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(root / "sets" / "p.parquet")
    pd.DataFrame({"x": [3.0]}).to_parquet(tmp_path / "outside.parquet")
    os.symlink(tmp_path / "outside.parquet", root / "sets" / "q.parquet")
    for value in ("sets", "sets/*.parquet", "sets/q*"):
        with pytest.raises(BadRequest) as err:
            resolve_data_path(value, root)
        assert "'sets/q.parquet' is a symbolic link" in err.value.message and str(tmp_path) not in err.value.message
    with pytest.raises(BadRequest, match="leads outside"):
        resolve_data_path("../*.parquet", root)


def test_output_paths_resolve_inside_the_models_directory(root: Path):
    models = root / "models"
    assert resolve_output_path("/models/deep_learning_model", models) == models / "deep_learning_model"
    assert resolve_output_path("runs/a", models) == models / "runs" / "a"
    assert resolve_output_path(str(models / "b"), models) == models / "b"


@pytest.mark.parametrize("value", ["../x", "/models/../x", "/srv/models/x", "/models", ".", "a/../.."])
def test_output_paths_that_escape_are_refused(root: Path, value):
    with pytest.raises(BadRequest) as err:
        resolve_output_path(value, root / "models")
    assert err.value.errors[0]["field"] == "output_path"


def test_store_keeps_the_newest_record_and_skips_damaged_files(tmp_path: Path):
    store = TaskStore(tmp_path)
    tid = "epoch_training_20240101_120000"
    for epoch in range(50):
        store.save({"task_id": tid, "state": "running", "history": list(range(epoch + 1))})
    store.save({"task_id": tid, "state": "completed", "history": list(range(50))})
    assert store.flush()
    (tmp_path / "epoch_training_20240101_120001.json").write_text("{broken")
    (tmp_path / "epoch_training_20240101_120002.json").write_text(json.dumps({"task_id": "someone_else"}))
    records = TaskStore(tmp_path).load_all()
    assert records == [{"task_id": tid, "state": "completed", "history": list(range(50))}]
    store.delete(tid)
    store.close()
    assert not (tmp_path / f"{tid}.json").exists()
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
