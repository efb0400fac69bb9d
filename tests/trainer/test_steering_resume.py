"""A steered run killed with SIGKILL and resumed from its checkpoints ends with exactly the history
(and weights) of the same steered run uninterrupted; a stopped steered run resumes with the config
it started with, its steered values kept."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import trainer.loop
from tests.trainer.test_checkpoints import _lines, _spawn, assert_same_state, comparable
from trainer import Trainer, datasets, load_model
from trainer.checkpoints import checkpoint_dir, decode, list_checkpoints, load_latest

ROWS, DATA_SEED = 1200, 5
# Changed in epoch 2 after batch 7: the rate (and a new schedule from it), the next epochs' batch
# size, dropout off (a model built with dropout layers keeps them, at rate 0) and the patience.
STEER = {"at": [2, 7], "changes": {"learning_rate": 0.02, "learning_rate_scheduler": "step", "step_size": 1,
                                   "gamma": 0.8, "batch_size": 40, "dropout_rate": 0.0, "early_stopping_patience": 3,
                                   "epochs": 4}}


def config(backend: str, out: Path) -> dict:
    return {"backend": backend, "seed": 7, "epochs": 3, "batch_size": 24, "hidden_units": [16, 8], "dropout_rate": 0.2,
            "learning_rate": 0.01, "learning_rate_scheduler": "plateau", "patience": 0, "early_stopping": True,
            "early_stopping_patience": 10, "device": "cpu", "target_column": "label", "checkpoint_every_batches": 5,
            "checkpoint_keep": 2, "output_path": str(out)}


def steered_reference(backend: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 0.0)
    run = Trainer(config(backend, out), datasets.make_classification(ROWS, seed=DATA_SEED))
    run.add_callback(lambda e, d: run.update(**STEER["changes"])
                     if e == "batch_end" and [d["epoch"], d["batch"]] == STEER["at"] else None)
    return run.fit()


def kill_after(spec: dict, epoch: int, batch: int) -> None:
    proc = _spawn(spec)
    killed = False
    for message in _lines(proc, 240):
        if message["event"] == "batch" and (message["epoch"], message["batch"]) >= (epoch, batch):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.wait(30)
    assert killed, f"the child ended before epoch {epoch} batch {batch}: {proc.stderr.read()[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", pytest.param("tensorflow", marks=pytest.mark.tensorflow)])
def test_a_steered_run_killed_and_resumed_equals_it_uninterrupted(backend, tmp_path, monkeypatch):
    reference = steered_reference(backend, tmp_path / "reference", monkeypatch)
    assert len(reference.history) == 4 and len(reference.config_changes) == 1
    out = tmp_path / "killed"
    spec = {"rows": ROWS, "data_seed": DATA_SEED, "config": config(backend, out), "steer": STEER}
    # Killed in the steered epoch after the change (its checkpoint at batch 10 holds the old batch
    # size for the rest of that epoch), then in the next epoch at the new batch size.
    kill_after(spec, 2, 12)
    assert list_checkpoints(checkpoint_dir(out))
    kill_after({**spec, "resume": True}, 3, 13)
    proc = _spawn({**spec, "resume": True})
    end = [m for m in _lines(proc, 240) if m["event"] == "end"]
    proc.wait(30)
    assert proc.returncode == 0 and end, f"resumed child failed: {proc.stderr.read()[-3000:]}"

    saved = json.loads((out / "history.json").read_text())
    assert comparable(saved["history"]) == comparable(reference.history)
    [change] = saved["config_changes"]
    assert {k: change[k] for k in ("changes", "epoch", "batch", "step")} == \
        {k: reference.config_changes[0][k] for k in ("changes", "epoch", "batch", "step")}
    assert_same_state(load_latest(checkpoint_dir(out)).members, decode(reference.last_checkpoint).members)
    df = datasets.make_classification(ROWS, seed=DATA_SEED)
    np.testing.assert_array_equal(load_model(out).decision_function(df),
                                  load_model(tmp_path / "reference").decision_function(df))


def test_a_stopped_steered_run_resumes_with_its_first_config(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 0.0)
    first = config("torch", tmp_path / "run")
    df = datasets.make_classification(ROWS, seed=DATA_SEED)
    run = Trainer(first, df)

    def steer(event, data):
        if event == "batch_end" and [data["epoch"], data["batch"]] == [1, 3]:
            run.update(learning_rate=0.03, epochs=5)
        if event == "batch_end" and [data["epoch"], data["batch"]] == [2, 4]:
            run.stop()
    run.add_callback(steer)
    run.fit()
    resumed = Trainer.from_checkpoint(first["output_path"], df, config=first)
    assert resumed.config.learning_rate == 0.03 and resumed.total_epochs == 5
    assert [c["changes"] for c in resumed.config_changes] == [c["changes"] for c in run.config_changes]
