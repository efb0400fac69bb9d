"""Sweeps in this process: trials as normal runs, the Sweep handle, its events, pruning and control."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from trainer import StateError, TrainingConfig, choice, load_model, log_uniform, sweep
from trainer.run_records import read_run
from trainer.sweep import Sweep

pytestmark = pytest.mark.slow

CONFIG = {"target_column": "label", "epochs": 4, "hidden_units": [16], "device": "cpu", "seed": 0,
          "early_stopping": False, "learning_rate_scheduler": "none", "batch_size": 64}


class InOrder(optuna.samplers.BaseSampler):
    """Trial n takes the n-th of ``values`` for every parameter: a sweep whose order a test knows."""

    def __init__(self, values: list[dict[str, Any]]):
        self.values = values

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return self.values[trial.number][name]


def test_a_sweep_trains_each_trial_as_a_normal_run_and_reports_the_best(clf_df: pd.DataFrame,
                                                                         tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    space = {"learning_rate": log_uniform(1e-4, 5e-2), "hidden_units": choice([[8], [16, 8]])}
    s = sweep(CONFIG, clf_df, space, trials=3, pruner=None, output_path=tmp_path / "sw", seed=3,
              callbacks=[lambda sw, event, data: events.append((event, data))])
    assert s.wait(120) is s and s.state == "completed" and s.done
    names = [e for e, _ in events]
    assert names.count("trial_start") == names.count("trial_end") == 3 and names[-1] == "sweep_end"
    epochs = [d for e, d in events if e == "trial_epoch"]
    assert len(epochs) == 12 and {d["epoch"] for d in epochs} == {1, 2, 3, 4} and "val_loss" in epochs[0]["metrics"]
    table = s.table
    assert list(table.columns) == ["number", "learning_rate", "hidden_units", "val_loss", "epochs", "state"]
    assert table["state"].tolist() == ["completed"] * 3 and table["epochs"].tolist() == [4, 4, 4]
    best = s.best_trial
    assert best.best_metric == table["val_loss"].min() == s.best_metric
    assert s.best_config == TrainingConfig(**CONFIG).replace(**best.params)
    assert s.best_run is best.run and s.best_run.history == best.history
    for trial in s.trials:
        # Every trial is a normal run in its own folder: its settings, history and model load back.
        record = read_run(trial.path)
        assert record.config["learning_rate"] == trial.params["learning_rate"]
        assert record.config["output_path"] == str(tmp_path / "sw" / f"trial-{trial.number}")
        assert len(record.history) == 4 and (trial.path / "checkpoints").is_dir()
        assert load_model(trial.path).predict(clf_df.head(3)).shape == (3,)
    # The study is an ordinary Optuna study in the sweep's folder, and the sweep reads back from it.
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path / 'sw' / 'study.db'}")
    assert study.best_value == pytest.approx(s.best_metric) and len(study.trials) == 3
    summary = json.loads(json.dumps(s.to_dict()))
    assert summary["best"] == {"number": best.number, "metric": best.best_metric, "params": best.params}
    assert [t["state"] for t in summary["trials"]] == ["completed"] * 3 and summary["metric"] == "val_loss"
    loaded = Sweep.load(tmp_path / "sw")
    assert loaded.state == "completed" and loaded.table.equals(table)
    assert loaded.best_config == s.best_config and loaded.best_run is None
    assert loaded.trial(1).history == s.trial(1).history
    with pytest.raises(StateError, match="resume=True"):
        loaded.pause()
    with pytest.raises(ValueError, match="no trial 7"):
        s.trial(7)


def test_a_poor_trial_is_pruned_and_says_so(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    order = [{"learning_rate": 0.02}, {"learning_rate": 0.03}, {"learning_rate": 1e-6}, {"learning_rate": 0.025}]
    s = sweep({**CONFIG, "epochs": 6}, clf_df, {"learning_rate": log_uniform(1e-6, 0.1)}, trials=4,
              sampler=InOrder(order), pruner="median", output_path=tmp_path / "sw").wait(120)
    states = s.table.set_index("number")["state"].to_dict()
    assert states[2] == "pruned" and states[0] == states[1] == "completed", s.table
    poor = s.trial(2)
    assert "pruned after epoch" in poor.reason and poor.epochs_done < 6
    # The pruned trial is still a run with its own folder and history, not a failure.
    assert read_run(poor.path).state == "stopped" and len(read_run(poor.path).history) == poor.epochs_done
    assert s.best_trial.number != 2
    assert optuna.load_study(study_name="sweep", storage=f"sqlite:///{s.path / 'study.db'}").trials[2].state.name == "PRUNED"


def test_a_trial_that_cannot_be_built_fails_and_the_sweep_goes_on(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    order = [{"hidden_units": json.dumps([65536] * 16)}, {"hidden_units": "[8]"}]
    s = sweep(CONFIG, clf_df, {"hidden_units": choice([[65536] * 16, [8]])}, trials=2, sampler=InOrder(order),
              output_path=tmp_path / "sw").wait(120)
    assert s.state == "completed" and s.table["state"].tolist() == ["failed", "completed"]
    assert "memory" in s.trial(0).reason and s.best_trial.number == 1


def test_pause_resume_and_stop_the_sweep_or_one_trial(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    first_epoch = threading.Event()
    s = sweep({**CONFIG, "epochs": 400}, clf_df, {"batch_size": choice([32, 64, 128])}, trials=3, pruner=None,
              output_path=tmp_path / "sw")
    s.add_callback(lambda sw, event, data: first_epoch.set() if event == "trial_epoch" else None)
    assert first_epoch.wait(60)
    s.pause()
    assert s.state == "paused" and s.trials[0].state == "paused"
    with pytest.raises(StateError, match="already paused"):
        s.pause()
    s.resume()
    assert s.state == "running" and s.trials[0].state == "running"
    s.pause_trial(0)
    assert s.trials[0].state == "paused"
    s.resume_trial(0)
    s.stop_trial(0)
    for _ in range(600):
        if len(s.trials) == 2 and s.trials[1].run is not None and s.trials[1].epochs_done:
            break
        threading.Event().wait(0.1)
    assert s.trials[0].state == "stopped" and s.trials[1].state == "running"
    s.stop()
    assert s.wait(60).state == "stopped" and len(s.trials) == 2
    assert "resume=True" in s.trials[1].reason and "resume=True" in s.reason
    with pytest.raises(StateError, match="already ended"):
        s.resume()
    assert Sweep.load(s.path).state == "stopped"
