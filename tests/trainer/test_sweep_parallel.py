"""Parallel sweeps: trials at once in worker processes, or on Ray actors."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trainer import TrainedModel, Trainer, choice, load_model, sweep
from trainer.sweep import ProcessLauncher
from trainer.sweep.process_run import ProcessRun
from trainer import protocol
from trainer.config import ConfigError
from trainer.sweep.worker_pool import WorkerPool, WorkerProcess

pytestmark = pytest.mark.slow

CONFIG = {"target_column": "label", "epochs": 3, "hidden_units": [16], "device": "cpu", "seed": 0,
          "early_stopping": False, "learning_rate_scheduler": "none"}


def _recorder(events: list[tuple[str, Any]]) -> Any:
    lock = threading.Lock()

    def record(s: Any, event: str, data: dict[str, Any]) -> None:
        with lock:
            events.append((event, data.get("number")))

    return record


def _running(s: Any, count: int) -> list[Any]:
    for _ in range(1200):
        running = [t for t in s.trials if t.run is not None and t.state == "running" and t.epochs_done >= 1]
        if len(running) == count:
            return running
        threading.Event().wait(0.1)
    raise AssertionError(f"{count} trials never trained at once: {s.table}")


def test_parallel_trials_train_at_once_in_worker_processes(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    s = sweep({**CONFIG, "epochs": 300}, clf_df, {"batch_size": choice([32, 64])}, trials=2, parallel=2,
              sampler="grid", pruner=None, output_path=tmp_path / "sw", callbacks=[_recorder(events)])
    # Two trials run side by side, each a real run in a worker process of its own.
    running = _running(s, 2)
    assert all(isinstance(t.run, ProcessRun) for t in running)
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
    # The sweep closed its worker processes when it ended.
    assert [t.run._worker.proc.wait(30) for t in running] == [0, 0]


def test_in_process_true_trains_one_trial_here_beside_the_workers(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    s = sweep({**CONFIG, "epochs": 300}, clf_df, {"batch_size": choice([32, 64])}, trials=2, parallel=2,
              sampler="grid", pruner=None, output_path=tmp_path / "sw",
              launcher=ProcessLauncher(2, in_process=True))
    running = _running(s, 2)
    away = [t for t in running if isinstance(t.run, ProcessRun)]
    assert len(away) == 1 and away[0].run.pid != os.getpid()
    s.stop()
    assert s.wait(120).state == "stopped" and {t.state for t in s.trials} == {"stopped"}
    assert away[0].run._worker.proc.wait(30) == 0


def test_a_worker_process_trains_trial_after_trial_with_the_results_of_this_process(
        clf_df: pd.DataFrame, tmp_path: Path) -> None:
    launcher = ProcessLauncher(1)
    s = sweep(CONFIG, clf_df, {"batch_size": choice([16, 32, 64])}, trials=3, parallel=1, sampler="grid",
              pruner=None, output_path=tmp_path / "sw", launcher=launcher).wait(240)
    assert s.state == "completed" and s.table["state"].tolist() == ["completed"] * 3, s.table
    # One interpreter served the three trials, each built afresh: the same history as in this process.
    assert len({t.run.pid for t in s.trials}) == 1
    for trial in s.trials:
        local = Trainer({**CONFIG, "batch_size": trial.params["batch_size"], "seed": trial.run.seed}, clf_df).fit()
        assert [h["val_loss"] for h in trial.history] == [h["val_loss"] for h in local.history]
        assert load_model(trial.path).history == trial.history
    worker = s.trials[0].run._worker
    assert worker.proc.wait(30) == 0 and launcher.pool._count == 0     # closed with the sweep


def test_a_killed_worker_fails_its_trial_and_the_next_trial_gets_a_new_worker(clf_df: pd.DataFrame,
                                                                            tmp_path: Path) -> None:
    s = sweep({**CONFIG, "epochs": 300}, clf_df, {"batch_size": choice([32, 64])}, trials=2, parallel=1,
              sampler="grid", pruner=None, output_path=tmp_path / "sw",
              launcher=ProcessLauncher(1))
    [first] = _running(s, 1)
    killed = first.run.pid
    os.kill(killed, signal.SIGKILL)
    second = None
    for _ in range(600):
        second = next((t for t in s.trials if t.number == 1 and t.run is not None and t.epochs_done >= 1), None)
        if second is not None:
            break
        threading.Event().wait(0.1)
    assert first.state == "failed" and "worker process ended" in first.reason, first.reason
    assert second is not None and second.run.pid != killed
    s.stop()
    assert s.wait(120).state == "stopped"


def test_a_built_run_that_never_trains_gives_its_worker_back(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    pool = WorkerPool(1)
    worker = pool.acquire()
    run = ProcessRun({**CONFIG, "output_path": str(tmp_path / "a")}, clf_df, worker=worker, release=pool.release)
    run.release()                     # dropped unstarted: the worker is idle again
    assert pool.acquire() is worker
    again = ProcessRun({**CONFIG, "output_path": str(tmp_path / "b")}, clf_df, worker=worker,
                       release=pool.release).fit()
    assert again.state.value == "completed" and again.pid == run.pid
    pool.close()
    assert worker.proc.wait(30) == 0


def test_a_run_paused_before_it_trains_waits_paused_in_its_worker(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    run = ProcessRun({**CONFIG, "epochs": 300, "output_path": str(tmp_path / "p")}, clf_df)
    run.pause()                       # reaches the worker before its train does
    fit = threading.Thread(target=run.fit, daemon=True)
    fit.start()
    for _ in range(600):
        if run.state.value == "paused":
            break
        threading.Event().wait(0.1)
    assert run.state.value == "paused" and run.current_epoch == 0
    run.resume()
    for _ in range(600):
        if run.current_epoch >= 1:
            break
        threading.Event().wait(0.1)
    run.stop()
    fit.join(120)
    assert run.state.value == "stopped" and run.current_epoch >= 1


def test_a_run_refused_here_starts_no_worker_process(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    pool = WorkerPool(1)
    worker = pool.acquire()
    with pytest.raises(ConfigError, match="nope"):
        ProcessRun({**CONFIG, "target_column": "nope"}, clf_df, worker=worker, release=pool.release)
    assert worker.proc is None and pool._count == 0
    pool.close()


def test_a_worker_answers_a_job_it_refuses_and_trains_the_next(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    worker = WorkerProcess()
    bad = protocol.start("bad", {**CONFIG, "target_column": "nope", "output_path": str(tmp_path / "bad")})
    worker.submit(bad, clf_df)
    kinds = []
    while not kinds or kinds[-1] not in ("idle", "worker_exited"):
        kinds.append(worker.messages.get(timeout=120)["kind"])
    assert kinds[-2:] == [protocol.CONFIG_ERROR, "idle"]
    run = ProcessRun({**CONFIG, "output_path": str(tmp_path / "good")}, clf_df, worker=worker).fit()
    assert run.state.value == "completed" and len(run.history) == 3
    assert worker.proc.wait(30) == 0        # a run's own worker closes with it


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
