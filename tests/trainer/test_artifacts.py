"""Artifacts at output_path: what is written, atomic writes, and load_model in a fresh process
predicting exactly what the in-memory model predicts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import lagged_sequence
from trainer import Trainer, TrainingConfig, TrainingState, load_model
from trainer.artifacts import TrainedModel
from trainer.atomic import atomic_write_bytes, atomic_write_json
from trainer.datasets import make_classification, make_regression

SEQUENCE = {"feature_columns": ["x", "noise"], "sequence_length": 6, "hidden_units": [16],
            "learning_rate": 0.01}


def tabular_with_strings(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features (with a few missing values) and string labels."""
    df = make_classification(rows, classes=3, seed=seed)
    rng = np.random.default_rng(seed)
    df["colour"] = rng.choice(["red", "green", "blue"], rows)
    df.loc[::97, "f2"] = np.nan
    df["label"] = df["label"].map({0: "low", 1: "mid", 2: "high"})
    return df


def train(cfg: dict, df: pd.DataFrame, path: Path, model=None) -> Trainer:
    run = Trainer({**cfg, "output_path": str(path)}, df, model=model).fit()
    assert run.state == TrainingState.COMPLETED, run.reason
    return run


# ---------------------------------------------------------------------- what is written

def test_a_run_writes_every_artifact(backend, base_config, clf_df, tmp_path):
    out = tmp_path / "models" / "mlp1"                       # parent folders are created
    run = train(base_config(epochs=2), clf_df, out)
    assert run.artifacts_path == out
    names = sorted(p.name for p in out.iterdir())
    assert {"config.json", "preprocessing.json", "history.json", "history.csv", "metadata.json"} <= set(names)
    assert not [n for n in names if n.endswith(".tmp")]
    assert TrainingConfig.from_dict(json.loads((out / "config.json").read_text())) == run.config
    history = json.loads((out / "history.json").read_text())
    assert history["history"] == run.history and history["state"] == "completed"
    assert history["best_metrics"] == run.best_metrics
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), run.history_frame())
    pre = json.loads((out / "preprocessing.json").read_text())
    assert pre["classes"] == [0, 1] and pre["feature_columns"] == ["f1", "f2", "f3", "f4"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["backend"] == backend and meta["seed"] == 0 and meta["epochs_completed"] == 2


def test_no_output_path_writes_nothing(backend, base_config, clf_df, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Trainer(base_config(epochs=1), clf_df).fit()
    assert run.artifacts_path is None and list(tmp_path.iterdir()) == []


def test_an_unwritable_output_path_fails_the_run_with_the_reason(backend, base_config, clf_df, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    run = Trainer(base_config(epochs=1, output_path=str(blocker / "model")), clf_df).fit()
    assert run.state == TrainingState.FAILED
    assert "could not write the artifacts" in run.reason and len(run.history) == 1


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_json(target, {"version": 1})

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b'{"version": 2, "half')
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


# ---------------------------------------------------------------------- predicting in this process

def test_loaded_model_predicts_like_the_in_memory_one(backend, base_config, tmp_path):
    df = tabular_with_strings()
    run = train(base_config(epochs=2, missing_values="impute"), df, tmp_path / "m")
    live, loaded = TrainedModel.from_run(run), load_model(tmp_path / "m")
    assert loaded.classes_ == ["high", "low", "mid"] and loaded.task == "classification"
    new = tabular_with_strings(50, seed=9).drop(columns="label")     # raw columns, no target
    labels = loaded.predict(new)
    assert set(labels) <= {"high", "low", "mid"} and len(labels) == 50
    np.testing.assert_array_equal(labels, live.predict(new))
    proba = loaded.predict_proba(new)
    assert proba.shape == (50, 3) and np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba, live.predict_proba(new))
    assert (np.asarray(loaded.classes_)[proba.argmax(axis=1)] == labels).all()


def test_prediction_errors_are_clear(backend, base_config, reg_df, seq_df, tmp_path):
    reg = load_model(train(base_config(epochs=1, target_column="target"), reg_df, tmp_path / "r").artifacts_path)
    with pytest.raises(ValueError, match="lacks feature columns"):
        reg.predict(reg_df.drop(columns="f3"))
    with pytest.raises(ValueError, match="classification"):
        reg.predict_proba(reg_df)
    with pytest.raises(TypeError, match="DataFrame"):
        reg.predict(reg_df.to_numpy())
    seq = load_model(train(base_config(epochs=1, model_type="gru", **SEQUENCE), seq_df, tmp_path / "s").artifacts_path)
    with pytest.raises(ValueError, match="sequence_length=6"):
        seq.predict(seq_df.head(4))
    assert seq.predict(seq_df.head(10)).shape == (5,)                # one per window


def test_load_model_on_a_wrong_path_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        load_model(tmp_path / "nothing_here")


# ---------------------------------------------------------------------- a fresh process

FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np, pandas as pd
    from trainer import load_model
    jobs = json.load(open(sys.argv[1]))
    for job in jobs:
        if job.get("module_dir"):
            sys.path.insert(0, job["module_dir"])
        model = load_model(job["path"], model=job.get("model"))    # a custom module: imported by name
        df = pd.read_pickle(job["data"])
        out = {"predict": model.predict(df).tolist(), "raw": model.decision_function(df).tolist(),
               "classes": model.classes_, "task": model.task}
        if model.task == "classification":
            out["proba"] = model.predict_proba(df).tolist()
        json.dump(out, open(job["result"], "w"))
""")

CUSTOM_MODULE = textwrap.dedent("""
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self, n_in=4, n_out=1):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(n_in, 16), torch.nn.ReLU(), torch.nn.Linear(16, n_out))

        def forward(self, x):
            return self.body(x)
""")


@pytest.mark.slow
def test_fresh_process_predicts_identically(backend, base_config, clf_df, reg_df, seq_df, tmp_path):
    custom_dir = tmp_path / "user_code"
    custom_dir.mkdir()
    (custom_dir / "user_models.py").write_text(CUSTOM_MODULE)
    new_rows = lagged_sequence(120, seed=11)
    cases = {
        "mlp_strings": (base_config(epochs=2, missing_values="impute"), tabular_with_strings(), tabular_with_strings(60, 9), None),
        "mlp_regression": (base_config(epochs=2, target_column="target"), reg_df, make_regression(60, seed=9), None),
        "lstm_strings": (base_config(epochs=2, model_type="lstm", **SEQUENCE), seq_df, new_rows, None),
        "gru_regression": (base_config(epochs=2, model_type="gru", target_column="y", **SEQUENCE), seq_df, new_rows, None),
        "cnn_strings": (base_config(epochs=2, model_type="cnn", **SEQUENCE), seq_df, new_rows, None),
    }
    if backend == "torch":
        sys.path.insert(0, str(custom_dir))
        try:
            import user_models
            cases["custom_module"] = (base_config(epochs=2, target_column="target"), reg_df, make_regression(60, seed=9),
                                      user_models.TinyNet())
        finally:
            sys.path.remove(str(custom_dir))

    jobs, live = [], {}
    for name, (cfg, df, new, model) in cases.items():
        run = train(cfg, df, tmp_path / name, model=model)
        mem = TrainedModel.from_run(run)
        features = new.drop(columns=[run.config.target_column])
        features.to_pickle(tmp_path / f"{name}.pkl")
        window = mem.preprocessor.sequence_length
        rows = len(features) - (window - 1 if window else 0)      # one prediction per row or window
        live[name] = (mem.predict(features), mem.decision_function(features), mem, rows)
        jobs.append({"path": str(tmp_path / name), "data": str(tmp_path / f"{name}.pkl"),
                     "result": str(tmp_path / f"{name}.json"),
                     "module_dir": str(custom_dir) if name == "custom_module" else None,
                     "model": "user_models:TinyNet" if name == "custom_module" else None})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "fresh.py").write_text(FRESH_PROCESS)
    proc = subprocess.run([sys.executable, str(tmp_path / "fresh.py"), str(tmp_path / "jobs.json")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    for name, (labels, raw, mem, rows) in live.items():
        got = json.loads((tmp_path / f"{name}.json").read_text())
        assert got["task"] == mem.task and got["classes"] == mem.classes_
        np.testing.assert_array_equal(np.asarray(got["raw"], dtype=np.float32), raw, err_msg=name)
        if mem.task == "classification":
            assert got["predict"] == labels.tolist(), name
            assert set(got["predict"]) <= {"up", "down", "low", "mid", "high"}
        else:
            np.testing.assert_array_equal(np.asarray(got["predict"]), labels, err_msg=name)
        assert len(got["predict"]) == rows, name


def test_an_unpicklable_own_module_still_saves_and_loads_with_an_instance(backend, base_config, reg_df, tmp_path):
    if backend != "torch":
        pytest.skip("a torch.nn.Module is for the torch backend")
    import torch

    class Local(torch.nn.Module):            # defined in a function: cannot be pickled
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x):
            return self.linear(x)

    run = train(base_config(epochs=2, target_column="target"), reg_df, tmp_path / "local", model=Local())
    meta = json.loads((tmp_path / "local" / "metadata.json").read_text())["model"]
    assert meta["custom_model"] and meta["module"] is None and "pickle" in meta["module_error"].lower()
    with pytest.raises(RuntimeError, match=r"load_model\(path, model="):
        load_model(tmp_path / "local")
    loaded = load_model(tmp_path / "local", model=Local())
    np.testing.assert_array_equal(loaded.predict(reg_df), TrainedModel.from_run(run).predict(reg_df))
