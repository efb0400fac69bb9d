"""The Runs tab keeps every run of the panel beside the runs saved in their folder; Start on a
folder holding another run offers to replace or continue it; observer errors show at the end."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from epoch_widgets import TrainingPanel
from epoch_widgets.panel.views import runs_folder
from trainer import CheckpointError, OutputPathInUse, Trainer

from .conftest import until

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.01, "device": "cpu",
        "learning_rate_scheduler": "none", "early_stopping": False, "epochs": 2}


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "time_per_epoch"} for entry in history]


def test_every_start_is_kept_in_the_runs_tab_beside_the_saved_runs(clf_df, tmp_path):
    models = tmp_path / "models"
    Trainer({**FAST, "target_column": "label", "output_path": str(models / "saved")}, clf_df).fit()

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(models / "a"), **FAST)
        assert "No runs yet" in panel.runs.message.value
        panel.start()
        await panel.wait()
        panel.controls["output_path"].value = str(models / "b")
        panel.controls["learning_rate"].value = 0.05
        panel.start()
        await panel.wait_started()
        assert [r.label for r in panel.runs.records][:2] == ["b", "a"]    # the new one listed as it starts
        await panel.wait()
        panel.controls["output_path"].value = ""                              # a run saved nowhere
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.runs.folder.value == str(models)
    labels = [r.label for r in panel.runs.records]
    # A run saved nowhere is named by its model and start time.
    assert labels[1:] == ["b", "a", "saved"] and re.fullmatch(r"mlp \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", labels[0])
    table = panel.runs.comparison.table_frame
    assert list(table.loc[["a", "b"], "learning_rate"]) == [0.01, 0.05] and table.loc[labels[0], "state"] == "completed"
    assert "3 run(s) of this session, 1 saved under" in panel.runs.message.value
    panel.close()


def test_a_folder_the_user_typed_is_kept(clf_df, tmp_path):
    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(tmp_path / "x" / "a"), **FAST)
        panel.runs.folder.value = str(tmp_path)
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.runs.folder.value == str(tmp_path) and [r.label for r in panel.runs.records] == ["a"]
    panel.close()
    assert runs_folder("models/mlp1") == "models" and runs_folder("mlp1") == "" and runs_folder(None) == ""


def stopped_run(df, out: Path) -> list[dict]:
    run = Trainer({**FAST, "epochs": 6, "target_column": "label", "output_path": str(out)}, df)
    run.add_callback(lambda e, d: run.stop() if e == "epoch_end" and d["metrics"]["epoch"] == 2 else None)
    run.fit()
    return run.history


def test_start_on_another_runs_folder_offers_replace_and_continue(clf_df, tmp_path):
    out = tmp_path / "run"
    old = stopped_run(clf_df, out)

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(out), **{**FAST, "epochs": 6})
        assert not panel.overwrite.offered
        with pytest.raises(OutputPathInUse):
            await panel.start()
        assert panel.overwrite.offered and panel.run is None
        text = panel.overwrite.text.value
        assert str(out) in text and "stopped after epoch 2 of 6" in text and "Replace it" in text
        assert "Start is disabled" not in panel.message.value and not panel.start_button.disabled
        # Another folder withdraws the offer; back to this one, Start offers it again.
        panel.controls["output_path"].value = str(tmp_path / "elsewhere")
        assert not panel.overwrite.offered
        panel.controls["output_path"].value = str(out)
        with pytest.raises(OutputPathInUse):
            await panel.start()
        panel.overwrite.continue_button.click()
        assert not panel.overwrite.offered
        run = await panel.wait_started()
        assert comparable(run.history[:2]) == comparable(old[:2]) and run.current_epoch == 2
        await panel.wait()
        assert panel.state == "completed" and panel.current_epoch == 6
        return panel

    panel = asyncio.run(main())
    assert [h["epoch"] for h in panel.history] == [1, 2, 3, 4, 5, 6]
    panel.close()


def test_replace_it_starts_a_fresh_run_in_that_folder(clf_df, tmp_path):
    out = tmp_path / "run"
    stopped_run(clf_df, out)

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(out),
                              **{**FAST, "epochs": 3, "hidden_units": [8]})
        with pytest.raises(OutputPathInUse):
            await panel.start()
        panel.overwrite.replace_button.click()
        run = await panel.wait_started()
        assert run.current_epoch == 0 and run.config.hidden_units == [8]
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "completed" and [h["epoch"] for h in panel.history] == [1, 2, 3]
    with pytest.raises(CheckpointError, match="already finished all 3 epochs"):     # the new run's checkpoints
        Trainer.from_checkpoint(out, clf_df)
    panel.close()


def test_a_folder_holding_a_run_without_checkpoints_offers_only_to_replace_it(clf_df, tmp_path):
    out = tmp_path / "nockpt"
    Trainer({**FAST, "target_column": "label", "output_path": str(out), "checkpoints": False}, clf_df).fit()

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(out), **{**FAST, "epochs": 3})
        with pytest.raises(OutputPathInUse):
            await panel.start()
        text = panel.overwrite.text.value
        assert panel.overwrite.offered and "saved files of another run (completed after epoch 2 of 2)" in text
        assert "Continue that run" not in text and panel.overwrite.continue_button.layout.display == "none"
        panel.overwrite.replace_button.click()
        await panel.wait_started()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "completed" and [h["epoch"] for h in panel.history] == [1, 2, 3]
    panel.close()


def test_continue_that_run_trains_to_the_epochs_the_controls_ask_for(clf_df, tmp_path):
    out = tmp_path / "run"
    Trainer({**FAST, "target_column": "label", "output_path": str(out)}, clf_df).fit()     # completed 2 of 2

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(out), **{**FAST, "epochs": 4})
        with pytest.raises(OutputPathInUse):
            await panel.start()
        assert "completed after epoch 2 of 2" in panel.overwrite.text.value
        panel.overwrite.continue_button.click()
        await until(lambda: panel.actions.task is not None and panel.run is not None, what="the resumed run")
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "completed" and [h["epoch"] for h in panel.history] == [1, 2, 3, 4]
    panel.close()


def test_a_failing_logger_shows_as_a_warning_when_the_run_ends(clf_df):
    async def main() -> TrainingPanel:
        # TensorBoard without output_path has nowhere to write: the run goes on and says so.
        panel = TrainingPanel(data=clf_df, target_column="label", loggers=["tensorboard"], **FAST)
        panel.start()
        run = await panel.wait_started()
        run.add_callback(lambda event, _data: 1 / 0 if event == "epoch_end" else None)
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "completed" and len(panel.run.observer_errors) >= 2
    message = panel.message.value
    assert "observer error(s) during the run" in message and "ZeroDivisionError" in message
    assert "TensorBoard" in message or "tensorboard" in message
    assert "--jp-warn-color1" in message
    panel.close()
