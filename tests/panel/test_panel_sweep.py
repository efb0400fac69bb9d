"""The Sweep tab without a kernel: what it refuses before a sweep starts is said in the tab (a
sweep from the tab, live, is test_panel_sweep_kernel.py)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

import trainer
from epoch_widgets import TrainingPanel


def panel_for(df: pd.DataFrame, tmp_path: Path, **config) -> TrainingPanel:
    return TrainingPanel(data=df, target_column="label", epochs=3, seed=0, batch_size=64, hidden_units=[8],
                         early_stopping=False, device="cpu", learning_rate_scheduler="none",
                         output_path=str(tmp_path / "sweep"), **config)


def test_what_the_sweep_refuses_is_said_in_the_tab_and_nothing_starts(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    async def main() -> None:
        panel = panel_for(clf_df, tmp_path)
        tab = panel.sweeps
        tab.form.set_varied(["dropout_rate"])
        tab.form.rows["dropout_rate"].high.value = "1.0"          # the field's open end
        task = tab.start()
        with pytest.raises(trainer.ConfigError, match="dropout_rate"):
            await task
        await asyncio.sleep(0)
        assert "dropout_rate" in tab.message.value and "limit" in tab.message.value
        assert tab.sweep is None and not tab.start_button.disabled
        assert not (tmp_path / "sweep").exists()
        tab.form.rows["dropout_rate"].high.value = "oops"
        with pytest.raises(ValueError, match="dropout_rate: give both ends"):
            tab.start()
        assert "give both ends" in tab.form.rows["dropout_rate"].hint.value
        with pytest.raises(trainer.StateError, match="no sweep has started"):
            tab.use_best_settings()
        panel.close()

    asyncio.run(main())


def test_the_metrics_offered_are_those_of_the_datas_task(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    panel = panel_for(clf_df, tmp_path)
    panel.tabs.select("Sweep")                    # showing the tab fits it to the settings
    assert list(panel.sweeps.metric.options) == ["val_loss", "val_accuracy", "train_loss", "train_accuracy"]
    panel.close()
    regression = clf_df.assign(label=clf_df["f1"] * 2.0 + 0.5)
    panel = panel_for(regression, tmp_path)
    panel.tabs.select("Sweep")
    assert list(panel.sweeps.metric.options) == ["val_loss", "val_mae", "train_loss", "train_mae"]
    panel.close()
