"""The data-file picker of the Voilà app: the tables in a folder, a generated sample, an upload."""
from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from epoch_widgets import DataPicker, TrainingPanel
from trainer.datasets import make_classification

from .conftest import until


def test_the_picker_lists_the_folders_tables_and_loads_the_one_chosen(clf_df, tmp_path: Path) -> None:
    clf_df.to_csv(tmp_path / "a.csv", index=False)
    clf_df.to_parquet(tmp_path / "b.parquet")
    (tmp_path / "notes.txt").write_text("not a table")
    (tmp_path / "parts").mkdir()
    clf_df.to_parquet(tmp_path / "parts" / "p0.parquet")
    (tmp_path / "other").mkdir()

    async def main() -> TrainingPanel:
        panel = TrainingPanel(epochs=2)
        picker = DataPicker(panel, folder=tmp_path)
        names = [label for label, _value in picker.choice.options]
        assert names[1:4] == ["a.csv", "b.parquet", "parts/ (Parquet files)"] and "other/ (Parquet files)" not in names
        assert "notes.txt" not in names and "sample" in names[-1]
        picker.choice.value = str(tmp_path / "b.parquet")
        await until(lambda: panel.data is not None, timeout=30, what="the chosen file")
        assert panel.controls["data_path"].value == str(tmp_path / "b.parquet")
        assert "label" in [v for _l, v in panel.controls["target_column"].options]
        return panel

    asyncio.run(main()).close()


def test_the_sample_trains_at_once_and_an_upload_is_offered_and_chosen(tmp_path: Path) -> None:
    async def main() -> TrainingPanel:
        panel = TrainingPanel(epochs=1, batch_size=256)
        picker = DataPicker(panel, folder=tmp_path, sample_rows=600)
        assert not panel.valid
        picker.choice.value = "sample"
        await until(lambda: panel.valid, timeout=30, what="the sample")
        assert len(panel.data) == 600 and panel.config.target_column == "label"
        assert not Path(panel.controls["data_path"].value).is_relative_to(tmp_path)   # nothing written there
        content = make_classification(rows=300, seed=3).to_csv(index=False).encode()
        picker.upload.value = ({"name": "mine.csv", "type": "text/csv", "size": len(content),
                                "content": memoryview(content),
                                "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
        await until(lambda: panel.data is not None and len(panel.data) == 300, timeout=30, what="the upload")
        assert picker.choice.value.endswith("mine.csv") and "mine.csv (uploaded)" in picker.choice.label
        return panel

    asyncio.run(main()).close()


def test_a_panel_with_a_dataframe_needs_no_picker(clf_df) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    with pytest.raises(ValueError, match="given a DataFrame"):
        DataPicker(panel)
    panel.close()


def test_the_sample_and_uploads_are_removed_when_the_kernel_ends(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import asyncio, time\n"
        "from epoch_widgets import DataPicker, TrainingPanel\n"
        "async def main():\n"
        "    panel = TrainingPanel(epochs=1)\n"
        f"    picker = DataPicker(panel, folder={str(tmp_path)!r}, sample_rows=300)\n"
        "    picker.choice.value = 'sample'\n"
        "    while not panel.valid: await asyncio.sleep(0.05)\n"
        "    print(panel.controls['data_path'].value, flush=True)\n"
        "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sample = Path(done.stdout.strip().splitlines()[-1])
    assert sample.name and not sample.parent.is_relative_to(tmp_path)
    assert not sample.exists() and not sample.parent.exists()
