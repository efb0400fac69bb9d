"""Resuming from a checkpoint in the panel: the button, resume_from(), and the refusals it shows."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from trainer import CheckpointError, ResumeMismatch, Trainer

from .conftest import until

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.01, "device": "cpu",
        "learning_rate_scheduler": "step", "step_size": 2, "gamma": 0.5, "early_stopping": False}


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "time_per_epoch"} for entry in history]


def stopped_run(df: pd.DataFrame, out: Path, **config: Any) -> None:
    """A panel run of 6 epochs stopped after its second (kernel-restart stand-in: the panel goes)."""
    async def main() -> None:
        panel = TrainingPanel(data=df, target_column="label", epochs=6, output_path=str(out), **{**FAST, **config})
        task = panel.start()
        run = await panel.wait_started()
        run.add_callback(lambda e, d: panel.stop() if e == "epoch_end" and d["metrics"]["epoch"] == 2 else None)
        await task
        assert panel.state == "stopped" and not panel.resume_button.disabled
        panel.close()

    asyncio.run(main())


def test_the_resume_button_continues_the_run_with_its_history_on_the_curves(clf_df, tmp_path):
    out = tmp_path / "run"
    stopped_run(clf_df, out)
    reference = Trainer({**FAST, "epochs": 6, "target_column": "label"}, clf_df).fit()

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label")          # a fresh kernel: defaults
        assert panel.resume_button.disabled                                # no output_path yet
        panel.controls.set_value("output_path", str(out))
        await until(lambda: not panel.resume_button.disabled, what="the resume button")
        panel.resume_button.click()
        await until(lambda: panel.run is not None, what="the resumed run")
        assert panel.run.current_epoch == 2 and len(panel.history) == 2
        assert len(panel.curves.series) == 2
        assert panel.controls["epochs"].value == 6 and panel.controls["hidden_units"].value == "16"
        assert panel.resume_button.disabled and not panel.stop_button.disabled
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "completed" and panel.current_epoch == 6
    assert comparable(panel.history) == comparable(reference.history)
    assert list(panel.curves.loss_lines.x) == [1, 2, 3, 4, 5, 6]
    assert not panel.resume_button.disabled          # the completed run's checkpoint is there
    panel.close()


def test_resume_from_refuses_other_data_and_says_why_in_the_panel(clf_df, tmp_path):
    out = tmp_path / "run"
    stopped_run(clf_df, out)

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df.assign(f1=clf_df.f1 + 1), target_column="label")
        with pytest.raises(ResumeMismatch, match="the data differs from the checkpoint's"):
            await panel.resume_from(str(out))
        assert "means" in panel.message.value and panel.run is None
        return panel

    asyncio.run(main()).close()


def test_a_panel_without_data_reads_the_runs_data_file(clf_df, tmp_path):
    csv = tmp_path / "train.csv"
    clf_df.to_csv(csv, index=False)
    data = pd.read_csv(csv)
    for name, data_path in (("named", str(csv)), ("unnamed", None)):
        run = Trainer({**FAST, "epochs": 6, "target_column": "label", "data_path": data_path,
                       "output_path": str(tmp_path / name)}, data)
        run.add_callback(lambda e, d, run=run: run.stop() if e == "epoch_end" else None)
        run.fit()

    async def main() -> TrainingPanel:
        panel = TrainingPanel()
        with pytest.raises(CheckpointError, match="the panel has no data: pass data=DataFrame, or set data_path"):
            panel.resume_from(str(tmp_path / "unnamed"))
        assert "the panel has no data" in panel.message.value
        task = panel.resume_from(str(tmp_path / "named"), epochs=3)
        run = await panel.wait_started()
        assert task is not None and run is panel.run and run.config.epochs == 3 and panel.data is not None
        assert panel.controls["data_path"].value == str(csv)
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "completed" and [h["epoch"] for h in panel.history] == [1, 2, 3]
    panel.close()
