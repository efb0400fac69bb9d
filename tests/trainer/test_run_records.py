"""Reading runs back for comparison: finding saved runs, the long metrics table and the table of
config differences, from saved folders (also in a fresh process) and from in-memory runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from trainer import Trainer
from trainer.run_records import (RunRecord, comparison_table, config_differences, find_runs, load_runs,
                                 metrics_frame, read_run, record_of)

REPO = Path(__file__).resolve().parents[2]


def config(output_path, **overrides):
    cfg = {"seed": 0, "epochs": 3, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.005,
           "learning_rate_scheduler": "none", "early_stopping": False, "device": "cpu", "target_column": "label",
           "output_path": str(output_path) if output_path else None}
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def saved(tmp_path_factory, clf_df):
    """Three saved runs (two learning rates, one model size) under models/, saved in that order."""
    root = tmp_path_factory.mktemp("records")
    runs = {}
    for name, changes in (("slow", {"learning_rate": 0.001}), ("fast", {"learning_rate": 0.02}),
                          ("wide", {"hidden_units": [64], "epochs": 2})):
        runs[name] = Trainer(config(root / "models" / "group" / name if name == "wide" else root / "models" / name,
                                    **changes), clf_df).fit()
        time.sleep(0.05)      # distinct modification times: newest first is well defined
    return root, runs


def test_find_runs_is_recursive_newest_first_and_skips_what_is_not_a_run(saved):
    root, runs = saved
    models = root / "models"
    (models / "notes").mkdir(exist_ok=True)
    (models / "notes" / "config.json").write_text("{}")          # a config alone is not a run
    (models / "mlruns" / "artifacts" / "x" / "model").mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "history.json"):                  # MLflow's copy of a run is not one
        (models / "mlruns" / "artifacts" / "x" / "model" / name).write_text("{}")
    found = find_runs(models)
    assert found == [models / "group" / "wide", models / "fast", models / "slow"]
    assert find_runs(models / "fast") == [models / "fast"]
    assert not any("checkpoints" in str(p) for p in found)
    with pytest.raises(FileNotFoundError, match="no folder"):
        find_runs(root / "nowhere")


def test_a_saved_run_reads_back_as_it_was(saved):
    root, runs = saved
    record = read_run(root / "models" / "fast")
    run = runs["fast"]
    assert record.label == "fast" and record.state == "completed" and record.task == "classification"
    assert record.history == json.loads(json.dumps(run.history))
    assert record.best_metrics == run.best_metrics and record.config["learning_rate"] == 0.02
    assert record.epochs_done == 3
    live = record_of(run)
    assert live.history == record.history and live.state == "completed" and live.label == "fast"


def test_metrics_frame_is_long_with_every_epoch_and_metric(saved):
    root, runs = saved
    records = load_runs(root / "models")
    frame = metrics_frame(records)
    assert list(frame.columns) == ["run", "epoch", "metric", "value"]
    assert set(frame["metric"]) == {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate",
                                    "time_per_epoch"}
    assert len(frame) == 6 * (3 + 3 + 2)
    fast = frame[(frame.run == "fast") & (frame.metric == "val_loss")]
    assert fast["epoch"].tolist() == [1, 2, 3]
    assert fast["value"].tolist() == pytest.approx([h["val_loss"] for h in runs["fast"].history])


def test_comparison_table_holds_best_metrics_state_and_only_the_differing_fields(saved):
    root, runs = saved
    table = comparison_table(load_runs(root / "models"))
    assert table.index.tolist() == ["wide", "fast", "slow"]
    assert list(table.columns[:5]) == ["state", "epochs_done", "best_loss", "best_accuracy", "best_epoch"]
    differing = set(table.columns[5:])
    assert differing == {"learning_rate", "hidden_units", "epochs"}       # not batch_size, not output_path
    assert table.loc["slow", "learning_rate"] == 0.001 and table.loc["wide", "hidden_units"] == "64"
    assert table.loc["fast", "best_loss"] == pytest.approx(runs["fast"].best_metrics["loss"])
    assert table.loc["wide", "epochs_done"] == 2 and (table["state"] == "completed").all()
    assert config_differences(load_runs([root / "models" / "fast"])).columns.tolist() == []


def test_in_memory_and_saved_runs_mix_with_unique_labels(saved, clf_df):
    root, _runs = saved
    unsaved = Trainer(config(None, epochs=2), clf_df).fit()
    records = load_runs([unsaved, unsaved, root / "models" / "slow"])
    assert [r.label for r in records] == ["run", "run (2)", "slow"]
    assert records[0].path is None and records[0].run is unsaved and records[0].epochs_done == 2


def test_a_regression_run_compares_by_mae(tmp_path, reg_df):
    run = Trainer(config(tmp_path / "reg", epochs=2, target_column="target"), reg_df).fit()
    record = read_run(tmp_path / "reg")
    assert record.task == "regression"
    table = comparison_table([record])
    assert "best_mae" in table.columns and "best_accuracy" not in table.columns
    assert table.loc["reg", "best_mae"] == pytest.approx(run.best_metrics["mae"])
    assert {"train_mae", "val_mae"} <= set(metrics_frame([record])["metric"])


def test_bad_inputs_say_what_is_wrong(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="history.json missing"):
        read_run(tmp_path / "half")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    (tmp_path / "broken" / "history.json").write_text("{}")
    with pytest.raises(ValueError, match="damaged run file"):
        read_run(tmp_path / "broken")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no saved runs under"):
        load_runs(tmp_path / "empty")
    with pytest.raises(TypeError, match="cannot compare int"):
        load_runs([3])


def test_saved_runs_compare_in_a_fresh_process(saved):
    root, _runs = saved
    code = ("import sys; from trainer.run_records import load_runs, comparison_table, metrics_frame; "
            "r = load_runs(sys.argv[1]); print(comparison_table(r).to_json(orient='split')); "
            "print(len(metrics_frame(r))); print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, str(root / "models")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    table_json, rows, torch_loaded = out.stdout.strip().splitlines()
    fresh = pd.read_json(__import__("io").StringIO(table_json), orient="split")
    here = comparison_table(load_runs(root / "models"))
    assert fresh.index.tolist() == here.index.tolist()
    assert fresh["best_loss"].tolist() == pytest.approx(here["best_loss"].tolist())
    assert int(rows) == len(metrics_frame(load_runs(root / "models")))
    assert torch_loaded == "False"        # reading runs needs no framework


def test_records_are_plain_data():
    record = RunRecord(label="x", config={"learning_rate": 0.1}, history=[{"epoch": 1, "val_loss": 1.0}],
                       state="completed")
    assert record.task == "auto" and record.epochs_done == 1
    assert metrics_frame([record])["metric"].tolist() == ["val_loss"]
