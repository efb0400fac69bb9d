"""Experiment tracking: TensorBoard and MLflow loggers read back with the libraries' own readers,
resumed runs continuing both, and loggers that fail while the run goes on."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from trainer import Callback, ConfigError, Trainer, TrainingConfig
from trainer.config import FIELD_SPECS
from trainer.loggers import BackgroundLogger
from trainer.resume import CHANGEABLE

METRICS = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "time_per_epoch"]


def config(output_path=None, **overrides):
    cfg = {"seed": 0, "epochs": 4, "batch_size": 32, "hidden_units": [16, 8], "learning_rate": 0.005,
           "learning_rate_scheduler": "none", "early_stopping": False, "device": "cpu", "target_column": "label",
           "output_path": str(output_path) if output_path else None}
    cfg.update(overrides)
    return cfg


class StopAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, run, data):
        if data["metrics"]["epoch"] == self.epoch:
            run.stop()


def scalars(folder: Path):
    """TensorBoard's own reader: {tag: [(step, value), ...]} and the hparams plugin's content."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    series = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    return series, acc.PluginTagToContent("hparams")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One folder for this module's runs, so they share one local MLflow store (created once)."""
    return tmp_path_factory.mktemp("models")


# ---------------------------------------------------------------------- config and set-up

def test_loggers_config_fields_validate_and_may_change_on_resume():
    assert TrainingConfig(loggers=["tensorboard", "mlflow"]).loggers == ["tensorboard", "mlflow"]
    assert TrainingConfig().loggers == [] and TrainingConfig().mlflow_tracking_uri is None
    with pytest.raises(ConfigError) as exc:
        TrainingConfig(loggers=["wandb"])
    assert "'tensorboard' | 'mlflow'" in exc.value.errors[0]["message"]
    with pytest.raises(ConfigError, match="listed twice"):
        TrainingConfig(loggers=["mlflow", "mlflow"])
    with pytest.raises(ConfigError, match="tracking URI"):
        TrainingConfig(mlflow_tracking_uri="  ")
    spec = FIELD_SPECS["loggers"]
    assert spec.type == "list[choice]" and spec.choices == ("tensorboard", "mlflow") and spec.help
    assert {"loggers", "mlflow_tracking_uri"} <= set(CHANGEABLE)


def test_a_missing_package_is_reported_and_the_run_completes(clf_df, tmp_path, monkeypatch):
    # sys.modules[name] = None is Python's own way of making a package unimportable.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    run = Trainer(config(tmp_path / "run", epochs=2, loggers=["tensorboard", "mlflow"]), clf_df).fit()
    assert run.state.value == "completed" and len(run.history) == 2
    errors = run.observer_errors
    assert len(errors) == 2, errors
    assert "needs tensorboard" in errors[0] and "pip install 'epoch-widgets[tracking]'" in errors[0]
    assert "needs mlflow" in errors[1] and "goes on without MLflow" in errors[1]
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_tensorboard_without_output_path_refuses_clearly(clf_df):
    run = Trainer(config(None, epochs=1, loggers=["tensorboard"]), clf_df).fit()
    assert run.state.value == "completed"
    assert len(run.observer_errors) == 1
    assert "no output_path: set output_path to log to TensorBoard" in run.observer_errors[0]


def test_mlflow_without_output_path_or_tracking_uri_refuses_clearly(clf_df, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = Trainer(config(None, epochs=1, loggers=["mlflow"]), clf_df).fit()
    assert run.state.value == "completed"
    assert len(run.observer_errors) == 1 and "set output_path, or mlflow_tracking_uri" in run.observer_errors[0]


class Gated(BackgroundLogger):
    """A logger whose first write waits for a gate, so later epochs queue up behind it."""

    title = "Gated"

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.writes: list[list[int]] = []
        self.closed_with = None

    def open(self, start):
        self.gate.wait(120)

    def log_epochs(self, entries):
        self.writes.append([e["epoch"] for e in entries])

    def close(self, end):
        self.closed_with = end


class OpenAt(Callback):
    def __init__(self, gate, epoch):
        self.gate, self.epoch = gate, epoch

    def on_epoch_end(self, run, data):
        if data["metrics"]["epoch"] == self.epoch:
            self.gate.set()


def test_epochs_queued_behind_a_slow_write_go_out_together_in_order(clf_df, tmp_path):
    logger = Gated()
    run = Trainer(config(tmp_path / "gated", epochs=8), clf_df, callbacks=[logger, OpenAt(logger.gate, 6)]).fit()
    assert run.state.value == "completed" and run.observer_errors == []
    assert logger.writes[0][:6] == [1, 2, 3, 4, 5, 6]       # queued while open() waited: one write
    assert [e for write in logger.writes for e in write] == list(range(1, 9))
    assert logger.closed_with.state == "completed" and logger.closed_with.epochs_done == 8
    assert logger.closed_with.artifacts_path == tmp_path / "gated"
    assert len(logger.epoch_seconds) == 8


# ---------------------------------------------------------------------- TensorBoard

@pytest.mark.slow
def test_tensorboard_holds_every_epochs_scalars_and_the_hparams_with_best_metrics(clf_df, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "tb"
    run = Trainer(config(out, epochs=4, loggers=["tensorboard"], learning_rate_scheduler="step", step_size=2,
                         gamma=0.5), clf_df).fit()
    assert run.state.value == "completed" and run.observer_errors == []
    series, hparams = scalars(out / "tensorboard")
    for key in METRICS:
        assert [step for step, _ in series[key]] == [1, 2, 3, 4], key
        assert [v for _, v in series[key]] == pytest.approx([h[key] for h in run.history], rel=1e-6), key
    assert [v for _, v in series["learning_rate"]] == pytest.approx([0.005, 0.005, 0.0025, 0.0025])
    assert series["best/loss"] == [(4, pytest.approx(run.best_metrics["loss"], rel=1e-6))]
    assert series["best/accuracy"][0][1] == pytest.approx(run.best_metrics["accuracy"], rel=1e-6)
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["learning_rate"].number_value == pytest.approx(0.005)
    assert start.hparams["model_type"].string_value == "mlp"
    assert start.hparams["hidden_units"].string_value == "[16, 8]"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert "best/loss" in {m.name.tag for m in experiment.metric_infos}
    end = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_end_info"]).session_end_info
    assert end.status == 1        # STATUS_SUCCESS


@pytest.mark.slow
def test_a_resumed_runs_event_file_sorts_after_the_earlier_one_even_within_a_second(clf_df, tmp_path):
    out = tmp_path / "quick"
    Trainer(config(out, epochs=2, loggers=["tensorboard"]), clf_df).fit()
    # An earlier file stamped later than now: as when both runs begin in the same second.
    (old,) = (out / "tensorboard").glob("events.out.tfevents.*")
    parts = old.name.split(".")
    parts[3] = f"{int(parts[3]) + 100:010d}"
    old.rename(old.with_name(".".join(parts)))
    Trainer.from_checkpoint(out, clf_df, epochs=4).fit()
    names = sorted(p.name for p in (out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(names) == 2 and names[0] == ".".join(parts), names
    series, _ = scalars(out / "tensorboard")
    assert [step for step, _ in series["val_loss"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_fresh_run_in_the_same_folder_replaces_the_earlier_curves(clf_df, tmp_path):
    out = tmp_path / "again"
    Trainer(config(out, epochs=3, loggers=["tensorboard"]), clf_df).fit()
    run = Trainer(config(out, epochs=2, loggers=["tensorboard"], learning_rate=0.01), clf_df, overwrite=True).fit()
    series, _ = scalars(out / "tensorboard")
    assert series["val_loss"] == [(e["epoch"], pytest.approx(e["val_loss"], rel=1e-6)) for e in run.history]


# ---------------------------------------------------------------------- MLflow

@pytest.mark.slow
def test_mlflow_holds_params_metric_history_best_metrics_and_artifacts(clf_df, models):
    from mlflow.tracking import MlflowClient

    out = models / "mlflow-run"
    run = Trainer(config(out, epochs=3, loggers=["mlflow"], name="lr 0.005"), clf_df).fit()
    assert run.state.value == "completed" and run.observer_errors == []
    record = json.loads((out / "mlflow_run.json").read_text())
    assert record["tracking_uri"] == "sqlite:///" + (models / "mlruns" / "mlflow.db").as_posix()
    client = MlflowClient(record["tracking_uri"])
    logged = client.get_run(record["run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "lr 0.005"
    assert logged.info.experiment_id == record["experiment_id"]
    params = logged.data.params
    assert params["learning_rate"] == "0.005" and params["model_type"] == "mlp"
    assert params["hidden_units"] == "[16, 8]" and params["early_stopping"] == "false"
    assert set(params) == set(run.config.to_dict())
    for key in METRICS:
        history = client.get_metric_history(record["run_id"], key)
        assert [m.step for m in history] == [1, 2, 3], key
        assert [m.value for m in history] == pytest.approx([h[key] for h in run.history]), key
    assert logged.data.metrics["best_loss"] == pytest.approx(run.best_metrics["loss"])
    assert logged.data.metrics["best_epoch"] == run.best_metrics["epoch"]
    assert logged.data.tags["state"] == "completed"
    files = {Path(a.path).name for a in client.list_artifacts(record["run_id"], "model")}
    assert {"model.pt", "config.json", "preprocessing.json", "history.json", "metadata.json"} <= files
    assert "mlflow_run.json" not in files
    # The logged model is the saved run: it loads and predicts like the original.
    import mlflow.artifacts

    from trainer import load_model
    local = mlflow.artifacts.download_artifacts(run_id=record["run_id"], artifact_path="model",
                                                tracking_uri=record["tracking_uri"], dst_path=str(models / "dl"))
    assert (load_model(local).predict(clf_df[:20]) == load_model(out).predict(clf_df[:20])).all()


@pytest.mark.slow
def test_a_resumed_run_continues_both_loggers_without_duplicate_steps(clf_df, models):
    from mlflow.tracking import MlflowClient

    out = models / "resumed"
    first = Trainer(config(out, epochs=6, loggers=["tensorboard", "mlflow"]), clf_df, callbacks=[StopAfter(4)]).fit()
    assert first.state.value == "stopped" and len(first.history) == 4
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    # As after a crash between checkpoints: the newest checkpoint is older than the last logged epoch.
    for path in (out / "checkpoints").glob("ckpt-000004-*"):
        path.unlink()
    resumed = Trainer.from_checkpoint(out, clf_df, epochs=6)
    assert resumed.current_epoch == 3
    resumed.fit()
    assert resumed.state.value == "completed" and resumed.observer_errors == []
    series, _ = scalars(out / "tensorboard")
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2
    for key in ("val_loss", "train_loss", "learning_rate"):
        assert [step for step, _ in series[key]] == [1, 2, 3, 4, 5, 6], key
    assert [v for _, v in series["val_loss"]] == pytest.approx([h["val_loss"] for h in resumed.history], rel=1e-6)
    record = json.loads((out / "mlflow_run.json").read_text())
    assert record["run_id"] == run_id              # the same MLflow run goes on
    client = MlflowClient(record["tracking_uri"])
    for key in ("val_loss", "train_accuracy", "time_per_epoch"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3, 4, 5, 6], key
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED" and logged.data.tags["resumed_at_epoch"] == "3"
    assert logged.data.params["epochs"] == "6"


@pytest.mark.slow
def test_a_logger_added_on_resume_logs_the_epochs_before_it(clf_df, models):
    from mlflow.tracking import MlflowClient

    out = models / "added"
    Trainer(config(out, epochs=4, loggers=[]), clf_df, callbacks=[StopAfter(2)]).fit()
    resumed = Trainer.from_checkpoint(out, clf_df, loggers=["mlflow", "tensorboard"]).fit()
    assert resumed.state.value == "completed" and resumed.observer_errors == []
    record = json.loads((out / "mlflow_run.json").read_text())
    history = MlflowClient(record["tracking_uri"]).get_metric_history(record["run_id"], "val_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    series, _ = scalars(out / "tensorboard")
    assert [step for step, _ in series["val_loss"]] == [1, 2, 3, 4]


# ---------------------------------------------------------------------- failures

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_failing_loggers_leave_the_run_completed_with_the_errors_reported(clf_df, tmp_path, monkeypatch):
    from trainer.loggers.mlflow_logger import HTTP_LIMITS, REQUEST_BOUND

    for key in HTTP_LIMITS:        # unset here (and again after the test): the logger's own limits apply
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    out = tmp_path / "failing"
    out.mkdir()
    (out / "tensorboard").write_text("a file where the logger wants its folder")
    uri = f"http://127.0.0.1:{_closed_port()}"
    run = Trainer(config(out, epochs=3, loggers=["tensorboard", "mlflow"], mlflow_tracking_uri=uri), clf_df).fit()
    assert run.state.value == "completed" and len(run.history) == 3
    assert (out / "model.pt").is_file() and (out / "history.json").is_file()
    errors = run.observer_errors
    assert len(errors) == 2, errors             # each logger reports once, not once per epoch
    tb = next(e for e in errors if "TensorBoard" in e)
    assert "TensorBoard logging failed while starting" in tb and "the run goes on without TensorBoard" in tb
    ml = next(e for e in errors if "MLflow" in e)
    assert f"check that the tracking server at {uri} is reachable" in ml
    # Each failure is in the run's state (what the API's progress and task list show) ...
    reported = run.progress()["logger_errors"]
    assert sorted(e["logger"] for e in reported) == ["MLflow", "TensorBoard"]
    assert "the run goes on without TensorBoard" in next(e["message"] for e in reported if e["logger"] == "TensorBoard")
    # ... and the dead server cost at most the bound set for MLflow's requests (MLflow's own
    # defaults: minutes of retries), after which the logger gave up.
    mlflow_logger = next(o for o in run.events._observers if type(o).__name__ == "MlflowLogger")
    assert {k: os.environ[k] for k in HTTP_LIMITS} == {k: str(v) for k, v in HTTP_LIMITS.items()}
    assert REQUEST_BOUND == 35.0
    assert mlflow_logger.failed_after is not None and mlflow_logger.failed_after <= REQUEST_BOUND


def test_a_logger_failure_is_a_logger_error_event_followers_apply(clf_df):
    from trainer import RunFollower
    from trainer.loggers import LoggerFailure

    class Failing(Callback):
        def on_epoch_end(self, run, data):
            raise LoggerFailure("could not write; the run goes on without Fake", "Fake")

    class FailingAtTheEnd(Callback):
        def finish(self, run, data):
            raise LoggerFailure("could not finish writing", "Late")

    heard = []
    threads = set()

    def listen(event, data):
        heard.append((event, data))
        if event == "logger_error":
            threads.add(threading.current_thread().name)

    run = Trainer(config(None, epochs=2), clf_df, callbacks=[Failing(), FailingAtTheEnd(), listen])
    follower = RunFollower.of(run)
    run.fit()
    message = {"logger": "Fake", "message": "could not write; the run goes on without Fake"}
    assert [d for e, d in heard if e == "logger_error"] == [message, message,
                                                            {"logger": "Late", "message": "could not finish writing"}]
    assert follower.state.logger_errors == run.run_state.logger_errors and len(run.progress()["logger_errors"]) == 3
    assert run.state.value == "completed" and run.error is None
    # The order followers see: each epoch_end reaches every observer before its logger_error, and
    # a failure while finishing comes before the final state, on the thread that drives the run.
    names = [e for e, _ in heard]
    assert names.index("logger_error") == names.index("epoch_end") + 1
    assert names[-3:] == ["logger_error", "state_change", "train_end"] and len(threads) == 1


@pytest.mark.slow
def test_mlflow_is_imported_when_the_run_is_built_not_while_it_trains(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from trainer import Trainer
        from trainer.datasets import make_classification
        run = Trainer({{"epochs": 1, "hidden_units": [4], "target_column": "label", "device": "cpu",
                        "loggers": ["mlflow"], "output_path": {str(tmp_path / "run")!r}}},
                      make_classification(200, seed=0))
        print("built", "mlflow.tracking" in sys.modules)
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "built True" in out.stdout, out.stderr[-2000:]


@pytest.mark.slow
def test_runs_starting_together_share_one_new_local_store(tmp_path, clf_df):
    """Several processes creating the same local MLflow store at once (the server's workers): the
    store is created once and every run is complete."""
    data = tmp_path / "data.csv"
    clf_df.to_csv(data, index=False)
    script = textwrap.dedent("""
        import sys
        import pandas as pd
        from trainer import Trainer
        cfg = {"seed": 0, "epochs": 3, "hidden_units": [8], "learning_rate_scheduler": "none", "early_stopping": False,
               "device": "cpu", "target_column": "label", "loggers": ["mlflow"], "output_path": sys.argv[1]}
        run = Trainer(cfg, pd.read_csv(sys.argv[2])).fit()
        print(run.state.value, len(run.observer_errors))
        for e in run.observer_errors:
            print(e)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "models" / f"run{i}"), str(data)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for (stdout, stderr), proc in zip(outputs, procs):
        assert proc.returncode == 0 and stdout.startswith("completed 0"), stdout + stderr[-3000:]
    from mlflow.tracking import MlflowClient

    records = [json.loads((tmp_path / "models" / f"run{i}" / "mlflow_run.json").read_text()) for i in range(2)]
    assert len({r["tracking_uri"] for r in records}) == 1 and len({r["experiment_id"] for r in records}) == 1
    client = MlflowClient(records[0]["tracking_uri"])
    for record in records:
        assert [m.step for m in client.get_metric_history(record["run_id"], "val_loss")] == [1, 2, 3]
        assert client.get_run(record["run_id"]).info.status == "FINISHED"
