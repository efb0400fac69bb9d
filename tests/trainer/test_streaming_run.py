"""Training on streamed tables as users run it: ``Trainer(config, path)``, the command line in a
fresh process, and a run SIGKILLed mid-epoch that resumes to exactly the uninterrupted history."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainer import ConfigError, ResumeMismatch, Trainer, load_model
from trainer.config import TrainingConfig
from trainer.data import prepare_data
from trainer.datasets import make_classification, make_time_series

from .test_checkpoints import _killed_and_resumed, comparable

pytest.importorskip("pyarrow")
torch = pytest.importorskip("torch")

BASE = {"backend": "torch", "device": "cpu", "seed": 7, "streaming": True, "hidden_units": [16, 8],
        "batch_size": 24, "learning_rate": 0.01, "target_column": "label"}


def test_a_streamed_parquet_run_trains_evaluates_and_predicts(tmp_path):
    df = make_time_series(1500, seed=1)
    df.to_parquet(tmp_path / "series.parquet", row_group_size=200)
    config = {**BASE, "target_column": "direction", "feature_columns": ["signal", "driver"], "model_type": "lstm",
              "sequence_length": 8, "epochs": 2, "output_path": str(tmp_path / "out")}
    run = Trainer(config, str(tmp_path / "series.parquet")).fit()
    assert run.state.value == "completed" and len(run.history) == 2
    assert run.data.streamed and run.history[-1]["val_accuracy"] > 0.5
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["evaluation"]["n_samples"] == run.data.n_val
    model = load_model(tmp_path / "out")
    assert len(model.predict(df)) == len(df) - 7                    # one prediction per window
    # Predicting the file a block at a time equals predicting it whole (windows span blocks).
    np.testing.assert_array_equal(model.predict_table(tmp_path / "series.parquet"), model.predict(df))
    written = pd.read_parquet(model.predict_table(tmp_path / "series.parquet", tmp_path / "pred.parquet"))
    np.testing.assert_array_equal(written["row"], np.arange(7, len(df)))
    np.testing.assert_array_equal(written["prediction"], model.predict(df))
    with pytest.raises(ConfigError, match="learning-rate finder needs the data in memory"):
        Trainer({**config, "output_path": None}, str(tmp_path / "series.parquet")).lr_find(num_iter=10)


def test_a_resumed_streamed_run_checks_it_is_the_same_table(tmp_path):
    df = make_classification(800, seed=2)
    df.to_parquet(tmp_path / "a.parquet", row_group_size=100)
    out = tmp_path / "out"
    Trainer({**BASE, "epochs": 1, "output_path": str(out)}, str(tmp_path / "a.parquet")).fit()
    changed = df.copy()
    row = prepare_data(TrainingConfig(**BASE), df, seed=7).val_index[0]
    changed.loc[row, "label"] = 1 - changed.loc[row, "label"]   # a validation label: same statistics, other values
    changed.to_parquet(tmp_path / "b.parquet", row_group_size=100)
    with pytest.raises(ResumeMismatch, match="other values"):
        Trainer.from_checkpoint(out, str(tmp_path / "b.parquet"), epochs=2)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_streamed_run(tmp_path):
    df = make_classification(1200, seed=5)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(2):
        df.iloc[i * 600:(i + 1) * 600].to_parquet(parts / f"part-{i}.parquet", row_group_size=70)
    config = {**BASE, "epochs": 3, "dropout_rate": 0.2, "learning_rate_scheduler": "plateau", "patience": 0,
              "checkpoint_every_batches": 5, "checkpoint_keep": 2}
    reference = Trainer({**config, "output_path": str(tmp_path / "reference")}, str(parts)).fit()
    total = reference.num_batches * config["epochs"]
    rng = random.Random(int(os.environ.get("KILL_TEST_SEED", 4)))
    out = tmp_path / "killed"
    spec = {"data_path": str(parts), "config": {**config, "output_path": str(out)}}
    history, where = _killed_and_resumed(spec, sorted(rng.sample(range(6, total - 5), 2)), rng)
    assert comparable(history) == comparable(reference.history), f"kills at {where}"
    np.testing.assert_array_equal(load_model(out).decision_function(df),
                                  load_model(tmp_path / "reference").decision_function(df))


@pytest.mark.slow
def test_the_command_line_streams_a_folder_of_parquet_files_in_a_fresh_process(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    df = make_classification(2000, seed=3)
    for i in range(2):
        df.iloc[i * 1000:(i + 1) * 1000].to_parquet(parts / f"part-{i}.parquet", row_group_size=250)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "trainer.cli", "--data", str(parts), "--set", "streaming=true",
                           "--set", "target_column=label", "--set", "epochs=2", "--set", "device=cpu",
                           "--set", f"output_path={tmp_path / 'out'}"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "epoch    2/2" in done.stdout and "completed" in done.stdout
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["evaluation"]["n_samples"] == 400
    bad = subprocess.run([sys.executable, "-m", "trainer.cli", "--data", str(tmp_path / "none" / "*.parquet"),
                          "--set", "target_column=label"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "no file matches" in bad.stderr
