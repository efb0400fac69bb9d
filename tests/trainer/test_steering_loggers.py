"""A steered change reaches the tracking loggers: TensorBoard's Text tab and MLflow's tags, each
with the epoch it applied in."""
from __future__ import annotations

import json

import pytest

import trainer.loop
from trainer import Trainer


@pytest.mark.slow
def test_tensorboard_and_mlflow_record_each_change_with_its_epoch(clf_df, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 0.0)
    out = tmp_path / "run"
    run = Trainer({"seed": 0, "epochs": 2, "hidden_units": [8], "learning_rate": 0.005, "early_stopping": False,
                   "learning_rate_scheduler": "none", "device": "cpu", "target_column": "label",
                   "output_path": str(out), "loggers": ["tensorboard", "mlflow"]}, clf_df)
    run.add_callback(lambda e, d: run.update(learning_rate=0.02, early_stopping_patience=4)
                     if e == "batch_end" and (d["epoch"], d["batch"]) == (2, 5) else None)
    run.fit()
    assert run.observer_errors == [] and len(run.config_changes) == 1

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    [text] = acc.Tensors("config_change")
    assert text.step == 2
    assert tensor_util.make_ndarray(text.tensor_proto).item().decode() == (
        "epoch 2, after batch 5 (step 35): learning_rate: 0.005 -> 0.02; early_stopping_patience: 10 -> 4")

    record = json.loads((out / "mlflow_run.json").read_text())
    tags = MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).data.tags
    assert tags["steered.epoch_2.batch_5.learning_rate"] == "0.005 -> 0.02"
    assert tags["steered.epoch_2.batch_5.early_stopping_patience"] == "10 -> 4"
    assert tags["steered"] == "true"
