"""The panel with ``executor="ray"``: runs train on a Ray actor of a real local Ray instance, and the
curves, traits and buttons behave as with a run in the kernel."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from tests.ray_cluster import actor_names
from trainer import ConfigError, Trainer, load_model

from .conftest import until

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.01, "device": "cpu",
        "learning_rate_scheduler": "none", "early_stopping": False}


def test_an_unknown_executor_is_refused_naming_the_choices(clf_df: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="'local', 'ray'"):
        TrainingPanel(data=clf_df, target_column="label", executor="slurm")


def test_the_panel_trains_on_a_ray_actor_and_pause_resume_stop_work(
        clf_df: pd.DataFrame, tmp_path: Path, ray_instance: Any) -> None:  # noqa: F811
    output = tmp_path / "panel-run"

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", executor="ray", epochs=500,
                              output_path=str(output), **FAST)
        seen_epochs: list[int] = []
        panel.observe(lambda ch: seen_epochs.append(ch["new"]), "current_epoch")
        panel.start_button.click()
        run = await asyncio.wait_for(panel.wait_started(), 180)
        assert type(run).__name__ == "RayRun" and isinstance(run, Trainer)
        assert actor_names(ray_instance, "run:") != []
        await until(lambda: panel.current_epoch >= 2, 120, "two epochs")
        assert "Ray actor" in run.device_name

        panel.pause_button.click()
        await until(lambda: panel.state == "paused", 60, "paused")
        assert panel.pause_button.description == "Resume"
        epoch = panel.current_epoch
        await asyncio.sleep(1.0)
        assert panel.current_epoch == epoch                 # the actor holds

        panel.pause_button.click()                          # now "Resume"
        await until(lambda: panel.state == "running" and panel.current_epoch > epoch, 60, "running again")
        panel.stop_button.click()
        await asyncio.wait_for(panel.wait(), 120)
        assert seen_epochs == list(range(seen_epochs[0], seen_epochs[-1] + 1))    # every epoch, in order
        return panel

    panel = asyncio.run(main())
    assert panel.state == "stopped" and not panel.start_button.disabled and panel.stop_button.disabled
    assert len(panel.history) == panel.current_epoch == len(panel.run.history)
    assert list(panel.curves.loss_lines.x) == list(range(1, panel.current_epoch + 1))
    assert panel.best_metrics == panel.run.best_metrics
    # The weights came back: the run predicts and evaluates here, as the saved model does.
    evaluation = panel.run.evaluate()
    saved = load_model(output)
    assert evaluation.accuracy == pytest.approx(saved.evaluate(clf_df.iloc[list(panel.run.data.val_index)]).accuracy)
    assert json.loads((output / "config.json").read_text())["output_path"] == str(output)
    assert list((output / "checkpoints").glob("ckpt-*.zip"))


def test_resume_from_checkpoint_continues_on_a_new_actor_to_the_uninterrupted_history(
        clf_df: pd.DataFrame, tmp_path: Path, ray_instance: Any) -> None:  # noqa: F811
    config = {**FAST, "epochs": 6, "output_path": str(tmp_path / "resumed")}

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        panel = TrainingPanel(data=clf_df, target_column="label", executor="ray", **config)
        panel.start()
        run = await asyncio.wait_for(panel.wait_started(), 180)
        await until(lambda: panel.current_epoch >= 2, 120, "two epochs")
        ray_instance.kill(ray_instance.get_actor(run.actor_name, namespace="epoch-widgets"))
        await asyncio.wait_for(panel.wait(), 120)
        assert panel.state == "failed" and "ray.kill" in panel.reason and len(panel.history) >= 2
        assert "from_checkpoint" in panel.reason

        panel.resume_from()
        await asyncio.wait_for(panel.wait(), 180)
        assert panel.state == "completed" and panel.run is not run
        resumed = list(panel.history)

        reference = TrainingPanel(data=clf_df, target_column="label", executor="ray",
                                  **{**config, "output_path": str(tmp_path / "reference")})
        reference.start()
        await asyncio.wait_for(reference.wait(), 180)
        return resumed, list(reference.history)

    resumed, reference = asyncio.run(main())
    drop = ("time_per_epoch",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed] == \
           [{k: v for k, v in h.items() if k not in drop} for h in reference]
