"""Credentials in URIs: used to connect, never saved, logged or shown."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainer import Trainer, TrainingConfig
from trainer.redaction import is_redacted, redact_text, redacted_config

SECRET = "S3cretPW"


@pytest.mark.parametrize("text, expected", [
    ("http://alice:S3cretPW@host:5000/", "http://***@host:5000/"),
    ("https://token@mlflow.example/api?x=a@b", "https://***@mlflow.example/api?x=a@b"),
    ("http://alice:pa@ss@host/", "http://***@host/"),
    ("failed: see http://a:b@c.d and ftp://u@e/f", "failed: see http://***@c.d and ftp://***@e/f"),
    ("sqlite:////srv/mlflow.db", "sqlite:////srv/mlflow.db"),
    ("http://host/path@x", "http://host/path@x"),
    ("alice@example.com", "alice@example.com"),
])
def test_user_info_of_every_uri_is_replaced(text, expected):
    assert redact_text(text) == expected
    assert is_redacted(redact_text(text)) == (expected != text)


def test_saved_config_is_redacted_and_the_config_itself_is_not():
    uri = f"http://alice:{SECRET}@mlflow.example:5000"
    config = TrainingConfig(mlflow_tracking_uri=uri, name=f"run from {uri}")
    assert config.to_dict()["mlflow_tracking_uri"] == uri        # what the logger connects with
    saved = config.to_saved_dict()
    assert saved["mlflow_tracking_uri"] == "http://***@mlflow.example:5000"
    assert SECRET not in str(saved)
    assert redacted_config({"feature_columns": [uri], "epochs": 3}) == {
        "feature_columns": ["http://***@mlflow.example:5000"], "epochs": 3}


def _files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_a_run_with_a_password_in_its_tracking_uri_connects_but_never_writes_it(clf_df, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from trainer.checkpoints import checkpoint_dir, load_latest

    # A file store takes the URI's user-info and ignores it: a real connection without a server.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    store = tmp_path / "store"
    uri = f"file://alice:{SECRET}@localhost{store.as_posix()}"
    out = tmp_path / "models" / "run"
    cfg = {"seed": 0, "epochs": 2, "hidden_units": [8], "learning_rate_scheduler": "none", "early_stopping": False,
           "device": "cpu", "target_column": "label", "output_path": str(out), "loggers": ["mlflow"],
           "mlflow_tracking_uri": uri}
    run = Trainer(cfg, clf_df).fit()
    assert run.state.value == "completed" and run.observer_errors == []
    assert run.config.mlflow_tracking_uri == uri

    assert _files_holding(out, SECRET.encode()) == []       # config.json, checkpoints, mlflow_run.json, ...
    assert (out / "config.json").read_text().count("file://***@localhost") == 1
    assert load_latest(checkpoint_dir(out)).state["config"]["mlflow_tracking_uri"].startswith("file://***@localhost")
    client = MlflowClient(uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "epoch-widgets"]
    [logged] = client.search_runs([experiment.experiment_id])
    assert logged.data.params["mlflow_tracking_uri"] == f"file://***@localhost{store.as_posix()}"
    assert SECRET not in str(logged.data.params) and SECRET not in str(logged.data.tags)
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "val_loss")] == [1, 2]

    # Resumed from its checkpoint, the run has the URI without its password: it says so.
    resumed = Trainer.from_checkpoint(out, clf_df, epochs=3).fit()
    assert resumed.state.value == "completed"
    [error] = resumed.observer_errors
    assert "lost its credentials when it was saved" in error and "mlflow_tracking_uri" in error
    assert SECRET not in error
    # Given again, it continues the same MLflow run (and logs the epoch it missed).
    again = Trainer.from_checkpoint(out, clf_df, epochs=4, mlflow_tracking_uri=uri).fit()
    assert again.observer_errors == []
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "val_loss")] == [1, 2, 3, 4]
    assert _files_holding(out, SECRET.encode()) == []
