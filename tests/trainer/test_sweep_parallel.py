"""Parallel sweeps: trials at once in worker processes, or on Ray actors."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trainer import TrainedModel, choice, load_model, sweep
from trainer.sweep.process_run import ProcessRun

pytestmark = pytest.mark.slow

CONFIG = {"target_column": "label", "epochs": 3, "hidden_units": [16], "device": "cpu", "seed": 0,
          "early_stopping": False, "learning_rate_scheduler": "none"}


def _recorder(events: list[tuple[str, Any]]) -> Any:
    lock = threading.Lock()

    def record(s: Any, event: str, data: dict[str, Any]) -> None:
        with lock:
            events.append((event, data.get("number")))

    return record


def test_parallel_trials_train_at_once_in_worker_processes(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    s = sweep({**CONFIG, "epochs": 300}, clf_df, {"batch_size": choice([32, 64])}, trials=2, parallel=2,
              sampler="grid", pruner=None, output_path=tmp_path / "sw", callbacks=[_recorder(events)])
    # Two trials run side by side, each a real run in a process of its own.
    for _ in range(1200):
        running = [t for t in s.trials if t.run is not None and t.epochs_done >= 1]
        if len(running) == 2:
            break
        threading.Event().wait(0.1)
    assert len(running) == 2 and all(isinstance(t.run, ProcessRun) for t in running)
    pids = {t.run.pid for t in running}
    assert len(pids) == 2 and os.getpid() not in pids
    # A trial in a worker obeys pause and stop like a local run; stopping the sweep stops the other.
    first, second = running
    s.pause_trial(first.number)
    assert first.state == "paused"
    s.resume_trial(first.number)
    s.stop_trial(first.number)
    s.stop()
    assert s.wait(120).state == "stopped"
    assert first.state == second.state == "stopped" and "resume=True" in second.reason
    assert first.reason.startswith("stopped by the user")
    # The weights came back from the worker into this process's copy of the model.
    here = TrainedModel.from_run(first.run).predict_proba(clf_df.head(20))
    assert here == pytest.approx(load_model(first.path).predict_proba(clf_df.head(20)), abs=1e-6)
    starts = [n for e, n in events if e == "trial_start"]
    assert sorted(starts) == [0, 1] and events[-1] == ("sweep_end", None)


@pytest.mark.ray
def test_trials_train_on_ray_actors(clf_df: pd.DataFrame, tmp_path: Path, ray_instance: Any) -> None:  # noqa: F811
    from trainer.ray_executor import RayRun

    s = sweep(CONFIG, clf_df, {"batch_size": choice([32, 64])}, trials=2, parallel=2, sampler="grid",
              executor="ray", output_path=tmp_path / "sw").wait(240)
    assert s.state == "completed" and s.table["state"].tolist() == ["completed", "completed"], s.table
    assert all(isinstance(t.run, RayRun) for t in s.trials)
    for trial in s.trials:
        # The actors' files came back into each trial's folder on this machine.
        assert load_model(trial.path).history == trial.history and len(trial.history) == 3
    assert s.best_run.evaluate().metrics
