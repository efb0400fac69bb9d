"""RayRun, the run handle whose batches a Ray actor computes, on a real local Ray instance."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.ray_cluster import actors_gone
from trainer import ConfigError, OutputPathInUse, StateError, TrainedModel, Trainer, TrainingState, load_model
from trainer.executors import run_factory

pytestmark = [pytest.mark.slow, pytest.mark.ray]

CONFIG = {"model_type": "mlp", "epochs": 4, "batch_size": 32, "hidden_units": [16], "seed": 0, "device": "cpu",
          "feature_columns": ["f1", "f2", "f3"], "target_column": "label", "early_stopping": False}


def test_fit_trains_on_an_actor_to_a_local_runs_history_and_predicts_here(
        clf_df: pd.DataFrame, tmp_path: Path, ray_instance) -> None:  # noqa: F811
    RayRun = run_factory("ray")
    events: list[str] = []
    run = RayRun({**CONFIG, "output_path": str(tmp_path / "run")}, clf_df, callbacks=[lambda e, d: events.append(e)])
    assert isinstance(run, Trainer) and run.state == TrainingState.PENDING
    run.fit()
    assert run.state == TrainingState.COMPLETED and [h["epoch"] for h in run.history] == [1, 2, 3, 4]
    assert events.count("epoch_end") == 4 and events[-2:] == ["state_change", "train_end"]
    local = Trainer(CONFIG, clf_df).fit()
    for ours, theirs in zip(run.history, local.history):
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-5)
    # The weights came back into this process's copy of the model.
    saved = load_model(tmp_path / "run")
    here = TrainedModel.from_run(run).predict_proba(clf_df)
    assert here == pytest.approx(saved.predict_proba(clf_df), abs=1e-6)
    assert saved.history == run.history
    assert actors_gone(ray_instance, run.actor_name) == []          # released at the end


def test_a_table_path_streams_on_the_actor_to_a_local_streamed_runs_history(
        clf_df: pd.DataFrame, tmp_path: Path, ray_instance) -> None:  # noqa: F811
    (tmp_path / "sets").mkdir()
    for i in range(3):
        clf_df.iloc[i * 400:(i + 1) * 400].to_parquet(tmp_path / "sets" / f"p{i}.parquet", index=False,
                                                     row_group_size=150)
    config = {**CONFIG, "epochs": 2, "streaming": True}
    run = run_factory("ray")(config, str(tmp_path / "sets")).fit()
    local = Trainer(config, str(tmp_path / "sets")).fit()
    assert run.state == TrainingState.COMPLETED and run.data.streamed
    assert [h["val_loss"] for h in run.history] == [h["val_loss"] for h in local.history]


def test_what_a_local_run_refuses_a_ray_run_refuses_alike(clf_df: pd.DataFrame, tmp_path: Path,
                                                          ray_instance) -> None:  # noqa: F811
    RayRun = run_factory("ray")
    with pytest.raises(ConfigError) as bad:
        RayRun({**CONFIG, "target_column": "nope"}, clf_df)
    assert bad.value.errors[0]["field"] == "target_column"
    with pytest.raises(ConfigError) as gpus:
        RayRun({**CONFIG, "device": "cuda"}, clf_df)
    assert gpus.value.errors[0]["field"] == "device" and "GPU" in gpus.value.errors[0]["message"]
    Trainer({**CONFIG, "epochs": 1, "output_path": str(tmp_path / "taken")}, clf_df).fit()
    with pytest.raises(OutputPathInUse):
        RayRun({**CONFIG, "output_path": str(tmp_path / "taken")}, clf_df)
    with pytest.raises(StateError, match="lr_find"):
        RayRun(CONFIG, clf_df).lr_find()


def test_pause_and_resume_hammered_from_the_driver_end_where_the_last_one_says(
        clf_df: pd.DataFrame, ray_instance) -> None:  # noqa: F811
    async def main() -> None:
        run = run_factory("ray")({**CONFIG, "epochs": 100_000}, clf_df)
        task = run.start()
        deadline = time.monotonic() + 120
        while run.current_epoch < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for _ in range(10):                  # no wait between them: the actor applies them in order
            run.pause()
            run.resume()
        epoch = run.current_epoch
        while run.current_epoch < epoch + 2:         # still training: the last command was resume
            assert time.monotonic() < deadline + 120, run.state
            await asyncio.sleep(0.05)
        run.pause()
        while run.state != TrainingState.PAUSED:
            await asyncio.sleep(0.05)
        held = run.current_epoch
        await asyncio.sleep(1.0)
        assert run.current_epoch == held and run.state == TrainingState.PAUSED
        run.stop()
        await asyncio.wait_for(task, 120)
        assert run.state == TrainingState.STOPPED
        with pytest.raises(StateError, match="already ended"):
            run.pause()

    asyncio.run(main())


def test_a_failure_on_the_driver_mid_run_fails_the_run_with_its_reason_and_ends_the_actor(
        clf_df: pd.DataFrame, ray_instance) -> None:  # noqa: F811
    from trainer.ray_executor.run import RayRun

    class BreaksAtEpoch2(RayRun):
        async def _handle(self, msg):
            if msg.get("event") == "epoch_end" and msg["data"]["metrics"]["epoch"] == 2:
                raise RuntimeError("the driver broke at epoch 2")
            return await super()._handle(msg)

    run = BreaksAtEpoch2({**CONFIG, "epochs": 1000}, clf_df)
    run.fit()
    assert run.state == TrainingState.FAILED and run.wait_until_done(0)
    assert run.error == run.reason == "RuntimeError: the driver broke at epoch 2"
    with pytest.raises(StateError, match="already ended"):
        run.stop()
    assert actors_gone(ray_instance, run.actor_name) == []          # the actor no longer trains


def test_a_run_killed_while_saving_is_finished_on_an_actor(clf_df: pd.DataFrame, tmp_path: Path,
                                                           ray_instance) -> None:  # noqa: F811
    out = tmp_path / "unsaved"
    first = Trainer({**CONFIG, "output_path": str(out)}, clf_df).fit()
    for name in ("metadata.json", "evaluation.json"):      # killed after the model file, before these
        (out / name).unlink()
    run = run_factory("ray").from_checkpoint(out, clf_df)
    run.fit()
    assert run.state == TrainingState.COMPLETED and run.reason == "finished all 4 epochs"
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4] and run.history[-1]["val_loss"] == first.history[-1]["val_loss"]
    assert (out / "evaluation.json").is_file() and load_model(out).history == run.history
