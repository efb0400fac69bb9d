"""The panel's data-file field with a table file, a folder or glob of Parquet files: described
from its metadata (schema, row count) without being read, streamed by the run when it is to be,
with a progress bar for the passes before training, and clear errors beside the field."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from trainer import Trainer, datasets

pytest.importorskip("pyarrow")

FAST = {"seed": 0, "batch_size": 64, "hidden_units": [8], "device": "cpu", "epochs": 2, "early_stopping": False}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """3,000 rows in three Parquet files of row groups of 400 rows."""
    df = datasets.make_classification(3000, seed=1)
    (tmp_path / "sets").mkdir()
    for i in range(3):
        df.iloc[i * 1000:(i + 1) * 1000].to_parquet(tmp_path / "sets" / f"part-{i}.parquet", index=False,
                                                   row_group_size=400)
    return tmp_path / "sets"


def test_a_folder_is_described_from_its_metadata_and_streamed_by_its_run_to_the_same_history(folder):
    panel = TrainingPanel(data_path=str(folder), target_column="label", streaming=True, **FAST)
    info = panel._data_file.view.value
    assert "<b>Parquet</b>, 3 files, 3,000 rows, 5 columns; streamed in blocks (streaming is on)" in info
    assert "f1 <span" in info and "label <span" in info and "int64" in info
    assert panel.valid and panel.data is None                 # described, not read
    assert [v for _l, v in panel.controls["feature_columns"].options] == ["f1", "f2", "f3", "f4"]
    passes: list[tuple[int, int]] = []
    panel.progress.pass_bar.observe(lambda c: passes.append((c["new"], panel.progress.pass_bar.max)), "value")

    async def main():
        panel.start()
        return await panel.wait()

    run = asyncio.run(main())
    assert run.state.value == "completed" and run.data.streamed
    assert passes and passes[-1] == (3000, 3000)              # the pass bar reached the table's end
    assert panel.progress.pass_row.layout.display == "none"  # and went away once training began
    alone = Trainer({**FAST, "target_column": "label", "streaming": True}, str(folder)).fit()
    assert [h["val_loss"] for h in run.history] == [h["val_loss"] for h in alone.history]


def test_a_table_that_fits_the_budget_is_read_into_memory_and_a_glob_names_its_files(folder):
    panel = TrainingPanel(data_path=str(folder / "part-[01].parquet"), target_column="label", **FAST)
    assert "2 files, 2,000 rows" in panel._data_file.view.value and "read into memory" in panel._data_file.view.value
    assert panel.valid and len(panel.data) == 2000
    panel.controls["streaming"].value = True                 # the run streams it now: the panel drops its copy
    assert panel.data is None and "streamed in blocks" in panel._data_file.view.value


def test_a_csv_file_shows_its_columns_and_that_its_rows_are_counted_by_the_run(tmp_path):
    datasets.make_classification(500, seed=2).to_csv(tmp_path / "t.csv", index=False)
    panel = TrainingPanel(data_path=str(tmp_path / "t.csv"), target_column="label", streaming=True, **FAST)
    assert "<b>CSV</b>, rows counted when a run reads it, 5 columns" in panel._data_file.view.value
    assert panel.valid


def test_bad_tables_are_refused_beside_the_field_with_the_fix(folder, tmp_path):
    odd = datasets.make_classification(50, seed=3).assign(extra=1.0)
    odd.to_parquet(folder / "part-9.parquet", index=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.parquet").write_bytes(b"")
    cases = {str(folder): "'part-9.parquet' has another schema than 'part-0.parquet' (an extra column 'extra')",
             str(tmp_path / "empty"): "'e.parquet' is empty (0 bytes)",
             str(tmp_path / "none.parquet"): "no file at",
             str(tmp_path / "nothing-*.parquet"): "no file matches"}
    for path, words in cases.items():
        panel = TrainingPanel(data_path=path, streaming=True)
        assert words in panel.errors["data_path"], panel.errors
        assert "\u26a0" in panel.controls.view.titles[panel.controls.group_order.index("data")]
        assert not panel.valid and panel.start_button.disabled
        assert panel._data_file.view.layout.display == "none"


def test_columns_a_stream_cannot_use_are_named_before_start(tmp_path):
    df = datasets.make_classification(200, seed=4)
    df["when"] = pd.Timestamp("2024-01-01")
    df.to_parquet(tmp_path / "t.parquet", index=False)
    panel = TrainingPanel(data_path=str(tmp_path / "t.parquet"), streaming=True, target_column="label",
                          feature_columns=["f1", "when"])
    assert "column 'when' holds timestamp[us], neither numbers nor text" in panel.errors["feature_columns"]
    assert not panel.valid
    panel.controls["feature_columns"].value = ("f1", "f2")
    assert panel.valid and "feature_columns" not in panel.errors
