"""Steering the panel's live run: the changeable controls unlock with an "Apply changes" button,
the others stay locked saying why; an applied change reaches the run between two batches, shows as
a marker on the curves and in the Runs tab, and a refused one says why and changes nothing."""
from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from trainer import ConfigError, StateError
from trainer.steering import CHANGEABLE

from .conftest import until

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.01, "device": "cpu",
        "learning_rate_scheduler": "none", "early_stopping": False, "dropout_rate": 0.1}


def test_a_paused_run_is_changed_from_the_unlocked_controls_and_apply(clf_df: pd.DataFrame) -> None:
    async def main() -> dict[str, Any]:
        panel = TrainingPanel(data=clf_df, target_column="label", epochs=500, **FAST)
        controls, button = panel.controls, panel.steer.button
        assert button.layout.display == "none"                  # no live run: no Apply changes
        panel.start()
        await panel.wait_started()
        await until(lambda: panel.current_epoch >= 1, what="an epoch")
        # While it runs: the changeable controls are unlocked, the rest locked saying why.
        assert button.layout.display is None and button.disabled     # nothing changed yet
        assert not controls["learning_rate"].disabled and not controls["epochs"].disabled
        assert controls["model_type"].disabled and controls["hidden_units"].disabled
        assert "Locked while the run trains" in controls["model_type"].tooltip
        assert "Learning rate" in controls["model_type"].tooltip      # names what can change
        assert "Can change in the live run" in controls["batch_size"].tooltip
        panel.pause()
        await until(lambda: panel.state == "paused", what="the pause")
        done = panel.current_epoch

        controls.set_value("learning_rate", 0.002)
        controls.set_value("epochs", done + 2)
        await until(lambda: not button.disabled, what="Apply changes to unlock")
        assert "Learning rate \u2192 0.002" in button.tooltip
        change = await panel.apply_changes()
        assert change["changes"] == {"epochs": {"old": 500, "new": done + 2},
                                     "learning_rate": {"old": 0.01, "new": 0.002}}
        assert change["epoch"] == done + 1
        assert panel.run.config.learning_rate == 0.002 and panel.state == "paused"   # applied without resuming
        await until(lambda: panel.config_changes == [change], what="the change event")
        # The schedule's preview follows the change: the old rate up to it, the new one after.
        preview = panel.curves.lr_preview
        assert preview.x[-1] == done + 2 and preview.y[0] == 0.01 and preview.y[-1] == 0.002
        assert panel.total_epochs == done + 2 and button.disabled        # nothing left to apply
        assert "Applied: epoch" in panel.notices.view.value
        assert "learning_rate 0.01 \u2192 0.002" in panel.runs.comparison.table_frame["steered"].iloc[0]
        panel.redraw.now()
        assert len(panel.curves.change_marks[0].points.x) == 1
        assert panel.curves.x_domain()[1] == done + 2

        with pytest.raises(StateError, match="nothing to apply"):
            panel.apply_changes()
        panel.resume()
        await panel.wait()
        assert panel.state == "completed" and panel.current_epoch == done + 2
        assert [h["learning_rate"] for h in panel.history][done:] == [0.002, 0.002]
        assert not controls["model_type"].disabled and "Locked" not in controls["model_type"].tooltip
        assert button.layout.display == "none"
        runs = panel.runs.comparison.table_frame
        assert "learning_rate 0.01 \u2192 0.002" in runs["steered"].iloc[0]
        return change

    asyncio.run(main())


def test_a_refused_change_says_why_beside_its_control_and_changes_nothing(clf_df: pd.DataFrame) -> None:
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", epochs=500, **FAST)
        panel.start()
        await panel.wait_started()
        await until(lambda: panel.current_epoch >= 2, what="two epochs")
        panel.pause()
        await until(lambda: panel.state == "paused", what="the pause")
        with pytest.raises(ConfigError) as info:
            await panel.apply_changes(epochs=1)            # fewer than the epochs done
        assert info.value.errors[0]["field"] == "epochs"
        assert "not applied" in panel.notices.view.value and panel.errors.get("epochs")
        assert panel.run.config.epochs == 500 and panel.config_changes == []
        panel.stop()
        await panel.wait()
        with pytest.raises(StateError, match="no live run"):
            panel.apply_changes(learning_rate=0.5)

    asyncio.run(main())


def test_every_changeable_field_has_a_control_to_unlock(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    assert set(CHANGEABLE) <= set(panel.controls.inputs)
    assert panel.steer.unlocked(paused=True) == set(CHANGEABLE)
