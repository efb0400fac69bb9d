"""Checkpoints and resuming: files, cadence, rotation, exact continuation (also after SIGKILL),
fallback from a damaged checkpoint, and every refusal with the message that explains it."""
from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest

import trainer.loop
from trainer import (CheckpointError, ConfigError, OutputPathInUse, ResumeMismatch, StateError, Trainer, TrainingState,
                     has_checkpoints, load_model)
from trainer import datasets
from trainer.checkpoints import (CheckpointWriter, checkpoint_dir, decode, encode, list_checkpoints, load_latest)

CHILD = Path(__file__).with_name("checkpoint_child.py")


# ---------------------------------------------------------------------- helpers

def comparable(history: list[dict]) -> list[dict]:
    """What must be identical between a resumed and an uninterrupted run: all but wall-clock times."""
    return [{k: v for k, v in entry.items() if k != "time_per_epoch"} for entry in history]


def names(output_path: Path) -> list[str]:
    return sorted(p.name for p in checkpoint_dir(output_path).iterdir())


def state_arrays(members: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Every array of a backend's checkpoint members (weights, optimiser state, RNG), by name."""
    if "torch_state.pt" in members:
        import torch
        state = torch.load(io.BytesIO(members["torch_state.pt"]), weights_only=True)
        out: dict[str, np.ndarray] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}/{k}", v)
            elif isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    walk(f"{prefix}/{i}", v)
            elif isinstance(value, torch.Tensor):
                out[prefix] = value.cpu().numpy()
            else:
                out[prefix] = np.asarray(value)

        walk("", state)
        return out
    with np.load(io.BytesIO(members["tf_variables.npz"])) as npz:
        return {k: npz[k] for k in npz.files}


def assert_same_state(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    left, right = state_arrays(a), state_arrays(b)
    assert left.keys() == right.keys()
    different = [k for k in left if not np.array_equal(left[k], right[k])]
    assert not different, f"arrays differ: {different[:5]}"


def stop_at(run: Trainer, epoch: int, batch: int) -> None:
    """Stop ``run`` once ``batch`` batches of ``epoch`` (1-based) are done."""
    def observer(event: str, data: dict) -> None:
        if event == "batch_end" and (data["epoch"], data["batch"]) >= (epoch, batch) and run.state == TrainingState.RUNNING:
            run.stop()
    run.add_callback(observer)


def torch_config(**overrides: Any) -> dict[str, Any]:
    """A small, quick, seeded torch config (the tests that need no backend matrix)."""
    cfg = {"backend": "torch", "seed": 0, "epochs": 3, "batch_size": 32, "hidden_units": [32, 16],
           "dropout_rate": 0.1, "learning_rate": 0.005, "learning_rate_scheduler": "none",
           "early_stopping": False, "device": "cpu", "target_column": "label"}
    return {**cfg, **overrides}


@pytest.fixture
def one_batch_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch its own slice, so an observer can act after any chosen batch."""
    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 0.0)


# ---------------------------------------------------------------------- files and cadence

def test_every_epoch_by_default_rotated_to_keep_with_the_best_weights_apart(clf_df, tmp_path):
    out = tmp_path / "run"
    run = Trainer(torch_config(epochs=5, output_path=str(out), checkpoint_keep=2), clf_df).fit()
    files = names(out)
    ckpts = [f for f in files if f.startswith("ckpt-")]
    assert ckpts == ["ckpt-000004-000000.zip", "ckpt-000005-000000.zip"]
    # Each kept checkpoint's best weights are kept, and nothing older than the oldest of them.
    needed = {decode(checkpoint_dir(out) / f).best_epoch for f in ckpts}
    assert run.best_metrics["epoch"] in needed
    kept_best = {int(f[5:11]) for f in files if f.startswith("best-")}
    assert needed <= kept_best and min(kept_best) == min(needed), files
    last = decode(checkpoint_dir(out) / ckpts[-1])
    assert last.position == (5, 0) and last.state["final_state"] == "completed"
    assert comparable(last.state["history"]) == comparable(run.history)
    assert last.state["seed"] == run.seed and last.state["config"]["epochs"] == 5
    assert run.last_checkpoint == checkpoint_dir(out) / ckpts[-1]
    assert has_checkpoints(out) and not has_checkpoints(tmp_path / "elsewhere") and not has_checkpoints(None)


def test_batch_cadence_lands_on_its_batches_and_time_cadence_adds_more(clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "batches"
    Trainer(torch_config(epochs=2, output_path=str(out), checkpoint_every_batches=12,
                        checkpoint_keep=100), clf_df).fit()
    # 960 training rows in batches of 32: 30 batches an epoch, checkpoints at 12 and 24 in each.
    assert [f for f in names(out) if f.startswith("ckpt-")] == [
        "ckpt-000000-000012.zip", "ckpt-000000-000024.zip", "ckpt-000001-000000.zip",
        "ckpt-000001-000012.zip", "ckpt-000001-000024.zip", "ckpt-000002-000000.zip"]

    out = tmp_path / "seconds"
    Trainer(torch_config(epochs=2, output_path=str(out), checkpoint_every_seconds=1e-6,
                        checkpoint_keep=1000), clf_df).fit()
    mid = [f for f in names(out) if f.startswith("ckpt-") and not f.endswith("-000000.zip")]
    assert len(mid) >= 2, names(out)


def test_every_n_epochs_still_checkpoints_where_the_run_ends(clf_df, tmp_path):
    out = tmp_path / "run"
    Trainer(torch_config(epochs=5, output_path=str(out), checkpoint_every_epochs=2,
                        checkpoint_keep=10), clf_df).fit()
    assert [f for f in names(out) if f.startswith("ckpt-")] == [
        "ckpt-000002-000000.zip", "ckpt-000004-000000.zip", "ckpt-000005-000000.zip"]


def test_nothing_is_written_without_output_path_or_with_checkpoints_off(clf_df, tmp_path):
    run = Trainer(torch_config(epochs=1), clf_df).fit()
    assert run.last_checkpoint is None
    out = tmp_path / "off"
    run = Trainer(torch_config(epochs=1, output_path=str(out), checkpoints=False), clf_df).fit()
    assert run.last_checkpoint is None and not checkpoint_dir(out).exists()
    assert (out / "metadata.json").exists()


def test_pausing_writes_a_checkpoint_at_the_pause(clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "paused"
    run = Trainer(torch_config(epochs=3, output_path=str(out)), clf_df)

    def observer(event: str, data: dict) -> None:
        if event == "batch_end" and (data["epoch"], data["batch"]) == (2, 5):
            run.pause()
        elif event == "state_change" and data["new"] == "paused":
            assert run.last_checkpoint is not None
            assert run.last_checkpoint.name == "ckpt-000001-000005.zip"
            run.stop()

    run.add_callback(observer)
    run.fit()
    assert run.state == TrainingState.STOPPED and run.observer_errors == []
    assert decode(run.last_checkpoint).state["final_state"] == "stopped"


def test_a_new_run_refuses_an_earlier_runs_checkpoints_unless_told_to_overwrite(clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "run"
    first = Trainer(torch_config(epochs=3, output_path=str(out)), clf_df)
    stop_at(first, 2, 5)
    first.fit()
    before = names(out)
    with pytest.raises(OutputPathInUse) as info:
        Trainer(torch_config(epochs=1, output_path=str(out)), clf_df)
    message = str(info.value)
    assert "stopped after epoch 1 of 3 and 5 batches of epoch 2" in message
    assert f"Trainer.from_checkpoint({str(out)!r}, df)" in message and "overwrite=True" in message
    assert "another output_path" in message
    assert isinstance(info.value, ConfigError) and isinstance(info.value, CheckpointError)
    assert info.value.errors[0]["field"] == "output_path"
    assert names(out) == before                                      # nothing deleted
    assert Trainer.from_checkpoint(out, clf_df).fit().state == TrainingState.COMPLETED   # and it still resumes

    Trainer(torch_config(epochs=1, output_path=str(out)), clf_df, overwrite=True).fit()
    assert [f for f in names(out) if f.startswith("ckpt-")] == ["ckpt-000001-000000.zip"]
    # Without checkpoints of its own an overwriting run still clears the earlier run's.
    Trainer(torch_config(epochs=1, output_path=str(out), checkpoints=False), clf_df, overwrite=True).fit()
    assert not has_checkpoints(out) and len(load_model(out).history) == 1


def test_a_run_without_checkpoints_is_not_silently_replaced_either(clf_df, tmp_path):
    out = tmp_path / "nockpt"
    first = Trainer(torch_config(epochs=1, output_path=str(out), checkpoints=False), clf_df).fit()
    assert not has_checkpoints(out)
    saved = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(OutputPathInUse) as info:
        Trainer(torch_config(epochs=2, hidden_units=[8], output_path=str(out), checkpoints=False), clf_df)
    message = str(info.value)
    assert "holds the saved files of another run (completed after epoch 1 of 1: metadata.json, config.json" in message
    assert "model.pt" in message and "overwrite=True" in message and "another output_path" in message
    assert "from_checkpoint" not in message and info.value.resumable is False
    assert info.value.errors[0]["field"] == "output_path"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == saved      # nothing replaced
    # Also when the saved files appear after the run was built: it fails, replacing nothing.
    waiting = Trainer(torch_config(epochs=1, output_path=str(tmp_path / "later"), checkpoints=False), clf_df)
    Trainer(torch_config(epochs=1, output_path=str(tmp_path / "later"), checkpoints=False), clf_df).fit()
    waiting.fit()
    assert waiting.state == TrainingState.FAILED and "holds the saved files of another run" in waiting.reason

    replaced = Trainer(torch_config(epochs=2, hidden_units=[8], output_path=str(out), checkpoints=False), clf_df,
                       overwrite=True).fit()
    assert replaced.state == TrainingState.COMPLETED and len(load_model(out).history) == 2
    assert load_model(out).config.hidden_units == [8] and first.history != replaced.history


def test_a_folder_holding_only_keras_weights_holds_a_run(tmp_path):
    from trainer.checkpoints import holds_run

    (tmp_path / "model.weights.h5").write_bytes(b"weights")
    assert holds_run(tmp_path)


def test_a_folder_of_other_files_is_no_run(clf_df, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert Trainer(torch_config(epochs=1, output_path=str(out)), clf_df).fit().state == TrainingState.COMPLETED
    assert (out / "notes.txt").read_text() == "mine"


def test_an_overwriting_run_removes_the_earlier_runs_saved_files_when_it_starts(clf_df, tmp_path):
    out = tmp_path / "replaced"
    Trainer(torch_config(epochs=1, output_path=str(out)), clf_df).fit()
    # What an earlier run of a model of its own, saved with trust_pickle, leaves beside model.pt.
    (out / "model_module.pt").write_bytes(b"an earlier run's pickled module")
    seen: list[list[str]] = []
    run = Trainer(torch_config(epochs=2, output_path=str(out)), clf_df, overwrite=True)
    run.add_callback(lambda e, d: seen.append(sorted(p.name for p in out.iterdir())) if e == "train_begin" else None)
    run.fit()
    assert seen == [["checkpoints"]]        # no file of the earlier run beside the new one's
    assert len(load_model(out).history) == 2


def _killed_while_saving(out: Path) -> None:
    """What a process killed after the model file, before metadata.json, leaves (artifacts.save_run)."""
    for name in ("metadata.json", "evaluation.json", "history.json", "history.csv"):
        (out / name).unlink()
    assert (out / "model.pt").exists()


@pytest.mark.parametrize("early", [False, True], ids=["completed", "early-stopped"])
def test_a_run_killed_while_saving_its_artifacts_is_finished_by_resuming(clf_df, tmp_path, early):
    out = tmp_path / "unsaved"
    cfg = torch_config(epochs=30 if early else 3, output_path=str(out), restore_best_weights=True,
                       **({"early_stopping": True, "early_stopping_patience": 1, "min_delta": 10.0} if early else {}))
    first = Trainer(cfg, clf_df).fit()
    expected = trainer.TrainedModel.from_run(first).predict(clf_df)
    _killed_while_saving(out)
    with pytest.raises(FileNotFoundError, match="metadata.json is missing"):
        load_model(out)

    run = Trainer.from_checkpoint(out, clf_df)
    assert run.current_epoch == len(first.history)
    run.fit()
    assert run.state == first.state and run.reason == first.reason and run.error is None
    assert comparable(run.history) == comparable(first.history)        # nothing trained again
    model = load_model(out)
    assert model.metadata["state"] == first.state.value and (out / "evaluation.json").is_file()
    assert np.array_equal(model.predict(clf_df), expected)            # the same (best) weights
    assert trainer.Evaluation.load(out).n_samples == len(first.data.val_index)
    # Saved now: there is nothing left to finish.
    with pytest.raises(CheckpointError, match="early-stopped" if early else "already finished all 3 epochs"):
        Trainer.from_checkpoint(out, clf_df)


def test_checkpoints_that_appear_after_construction_are_not_deleted_either(clf_df, tmp_path):
    out = tmp_path / "raced"
    waiting = Trainer(torch_config(epochs=1, output_path=str(out)), clf_df)       # the folder is empty now
    Trainer(torch_config(epochs=2, output_path=str(out)), clf_df).fit()
    before = names(out)
    waiting.fit()
    assert waiting.state == TrainingState.FAILED and "holds the checkpoints of another run" in waiting.reason
    assert names(out) == before


def test_a_checkpoint_that_cannot_be_written_fails_the_run_saying_where_and_why(clf_df, tmp_path):
    out = tmp_path / "blocked"
    out.mkdir()
    (out / "checkpoints").write_text("a file where the checkpoint folder should be")
    run = Trainer(torch_config(epochs=2, output_path=str(out)), clf_df).fit()
    assert run.state == TrainingState.FAILED
    assert "could not write a checkpoint" in run.reason and "checkpoints=False" in run.reason
    assert str(out / "checkpoints") in run.reason


# ---------------------------------------------------------------------- exact continuation

@pytest.mark.parametrize("where", [(2, 0), (2, 13)], ids=["epoch-end", "mid-epoch"])   # (epochs done, batch)
def test_resume_after_a_stop_equals_an_uninterrupted_run(backend, base_config, clf_df, tmp_path, where, one_batch_slices):
    # plateau and early stopping carry state from epoch to epoch; dropout draws from the RNG.
    cfg = base_config(epochs=5, learning_rate_scheduler="plateau", patience=0, factor=0.5,
                      early_stopping=True, early_stopping_patience=4, checkpoint_every_batches=13)
    reference = Trainer({**cfg, "output_path": str(tmp_path / "ref")}, clf_df).fit()

    out = tmp_path / "cut"
    first = Trainer({**cfg, "output_path": str(out)}, clf_df)
    epochs_done, batch = where
    if batch:
        stop_at(first, epochs_done + 1, batch)
    else:
        first.add_callback(lambda event, data: first.stop()
                           if event == "epoch_end" and data["metrics"]["epoch"] == epochs_done else None)
    first.fit()
    assert first.state == TrainingState.STOPPED

    run = Trainer.from_checkpoint(out, clf_df)
    assert run.state == TrainingState.PENDING and (run.current_epoch, run.batch) == where
    assert comparable(run.history) == comparable(reference.history[:run.current_epoch])
    run.fit()
    assert run.state == reference.state
    assert comparable(run.history) == comparable(reference.history)
    assert run.best_metrics == reference.best_metrics
    # Final weights, optimiser and RNG state as written at the end, and the restored best weights.
    assert_same_state(decode(run.last_checkpoint).members, decode(reference.last_checkpoint).members)
    assert_same_state(run.backend.checkpoint_state(), reference.backend.checkpoint_state())


def test_a_resumed_epoch_keeps_its_time_so_far(clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "t"
    first = Trainer(torch_config(epochs=2, output_path=str(out)), clf_df)
    stop_at(first, 1, 20)
    slow = lambda event, data: time.sleep(0.02) if event == "batch_end" else None  # noqa: E731
    first.add_callback(slow)
    first.fit()
    elapsed = decode(first.last_checkpoint).state["elapsed"]
    assert elapsed >= 20 * 0.02
    run = Trainer.from_checkpoint(out, clf_df).fit()
    assert run.history[0]["time_per_epoch"] >= elapsed


def test_a_completed_run_trains_further_with_more_epochs(clf_df, tmp_path):
    cfg = torch_config(learning_rate_scheduler="step", step_size=2, gamma=0.5)
    reference = Trainer({**cfg, "epochs": 5}, clf_df).fit()
    out = tmp_path / "more"
    Trainer({**cfg, "epochs": 3, "output_path": str(out)}, clf_df).fit()
    with pytest.raises(CheckpointError, match="already finished all 3 epochs; to train further pass a larger epochs"):
        Trainer.from_checkpoint(out, clf_df)
    run = Trainer.from_checkpoint(out, clf_df, epochs=5).fit()
    assert run.config.epochs == 5 and run.state == TrainingState.COMPLETED
    assert comparable(run.history) == comparable(reference.history)


def test_from_checkpoint_continues_a_run_and_resume_continues_a_paused_one(clf_df, tmp_path):
    run = Trainer(torch_config(epochs=1), clf_df)
    with pytest.raises(StateError, match="not paused"):
        run.resume()                        # an instance's resume() continues a paused run
    with pytest.raises(CheckpointError, match="no checkpoints in"):
        Trainer.from_checkpoint(tmp_path / "nothing-here", clf_df)
    out = tmp_path / "run"
    Trainer(torch_config(epochs=1, output_path=str(out)), clf_df).fit()
    # The old name of from_checkpoint keeps working, with a deprecation warning naming the new one.
    with pytest.warns(DeprecationWarning, match=r"use Trainer.from_checkpoint\(output_path, df\)"):
        continued = Trainer.resume(out, clf_df, epochs=2)
    assert isinstance(continued, Trainer) and continued.current_epoch == 1
    assert continued.fit().state == TrainingState.COMPLETED and len(continued.history) == 2


# ---------------------------------------------------------------------- damaged checkpoints

def _stopped_run_with_checkpoints(clf_df, out: Path) -> Trainer:
    run = Trainer(torch_config(epochs=4, output_path=str(out), checkpoint_keep=3,
                              checkpoint_every_batches=10), clf_df)
    stop_at(run, 2, 25)
    return run.fit()


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning(clf_df, tmp_path, one_batch_slices):
    reference = Trainer(torch_config(epochs=4, checkpoint_every_batches=10), clf_df).fit()
    out = tmp_path / "trunc"
    _stopped_run_with_checkpoints(clf_df, out)
    newest, previous = list_checkpoints(checkpoint_dir(out))[::-1][:2]
    assert newest.name == "ckpt-000001-000025.zip" and previous.name == "ckpt-000001-000020.zip"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])

    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint ckpt-000001-000025\.zip is unreadable.*falling back"):
        run = Trainer.from_checkpoint(out, clf_df)
    assert (run.current_epoch, run.batch) == (1, 20)
    run.fit()
    assert comparable(run.history) == comparable(reference.history)
    assert not newest.exists() or decode(newest)     # replaced by a good one, or gone


def test_a_corrupt_byte_is_caught_by_the_crc_and_nothing_usable_is_an_error(clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "flip"
    _stopped_run_with_checkpoints(clf_df, out)
    newest = list_checkpoints(checkpoint_dir(out))[-1]
    data = bytearray(newest.read_bytes())
    data[200] ^= 0xFF                       # inside the first member's data
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fails its CRC check"):
        decode(newest)
    with pytest.warns(RuntimeWarning, match="fails its CRC check"):
        assert Trainer.from_checkpoint(out, clf_df).batch == 20

    for path in list_checkpoints(checkpoint_dir(out)):
        path.write_bytes(b"not a zip")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="every checkpoint in .* is unusable"):
        Trainer.from_checkpoint(out, clf_df)


def test_a_newest_checkpoint_whose_state_does_not_load_falls_back_with_a_warning(clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "badstate"
    _stopped_run_with_checkpoints(clf_df, out)
    newest = list_checkpoints(checkpoint_dir(out))[-1]
    good = decode(newest)
    newest.write_bytes(encode(good.state, {"torch_state.pt": b"a valid zip member, but no torch state"}))
    with pytest.warns(RuntimeWarning, match=r"ckpt-000001-000025\.zip: its torch state does not load.*falling back"):
        run = Trainer.from_checkpoint(out, clf_df)
    assert (run.current_epoch, run.batch) == (1, 20)
    assert run.fit().state == TrainingState.COMPLETED


def test_a_missing_best_weights_file_makes_the_checkpoint_unusable(clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "nobest"
    _stopped_run_with_checkpoints(clf_df, out)
    for path in checkpoint_dir(out).glob("best-*.zip"):
        path.unlink()
    with pytest.warns(RuntimeWarning, match=r"best-\d+\.zip \(the weights of best epoch \d\) is missing"), \
            pytest.raises(CheckpointError, match="unusable"):
        Trainer.from_checkpoint(out, clf_df)


def test_the_writer_rotates_prunes_best_files_and_cleans_up_after_a_killed_write(tmp_path):
    def state(epoch: int, batch: int, best: Optional[int]) -> dict:
        return {"epoch": epoch, "batch": batch, "early_stopping": {"best_epoch": best}}

    writer = CheckpointWriter(tmp_path, keep=2)
    writer.write_best(1, {"epoch": 1}, {"weights": b"1"})
    writer.write(1, 0, 1, state(1, 0, 1), {"m": b"a"})
    writer.write_best(2, {"epoch": 2}, {"weights": b"2"})
    writer.write(2, 0, 2, state(2, 0, 2), {"m": b"b"})
    writer.write(3, 0, 2, state(3, 0, 2), {"m": b"c"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-000002.zip", "ckpt-000002-000000.zip",
                                                          "ckpt-000003-000000.zip"]
    # A process killed mid-write leaves a temporary file and maybe a newer best file.
    (tmp_path / ".ckpt-000004-000000.zip.abc123.tmp").write_bytes(b"half")
    writer.write_best(4, {"epoch": 4}, {"weights": b"4"})
    again = CheckpointWriter(tmp_path, keep=2)
    again.continue_from(load_latest(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-000002.zip", "ckpt-000002-000000.zip",
                                                          "ckpt-000003-000000.zip"]
    assert decode(tmp_path / "ckpt-000003-000000.zip").members == {"m": b"c"}
    assert encode({"a": 1}, {}) != encode({"a": 2}, {})


# ---------------------------------------------------------------------- refusals

@pytest.fixture
def stopped(clf_df, tmp_path) -> tuple[Path, dict]:
    """A torch run stopped after 2 of 4 epochs, and its config."""
    cfg = torch_config(epochs=4, output_path=str(tmp_path / "run"))
    run = Trainer(cfg, clf_df)
    run.add_callback(lambda event, data: run.stop() if event == "epoch_end" and data["metrics"]["epoch"] == 2 else None)
    run.fit()
    return tmp_path / "run", cfg


def refusal(exc_info: pytest.ExceptionInfo) -> tuple[str, list[str]]:
    return str(exc_info.value), [d["field"] for d in exc_info.value.differences]


def test_changing_a_setting_that_changes_results_is_refused(stopped, clf_df):
    out, cfg = stopped
    with pytest.raises(ResumeMismatch) as info:
        Trainer.from_checkpoint(out, clf_df, learning_rate=0.1, batch_size=64)
    text, fields = refusal(info)
    assert fields == ["learning_rate", "batch_size"]
    assert "learning_rate: cannot change when resuming (checkpoint has 0.005, given 0.1)" in text
    assert "Only name, epochs, device" in text and "start a new run" in text

    with pytest.raises(ResumeMismatch) as info:
        Trainer.from_checkpoint(out, clf_df, config={**cfg, "hidden_units": [64], "backend": "tensorflow"})
    text, fields = refusal(info)
    assert fields == ["hidden_units", "backend"]
    assert "hidden_units: checkpoint has [32, 16], the given config [64]" in text

    with pytest.raises(ResumeMismatch, match="epochs: the checkpoint has already done 2 epochs; pass epochs > 2"):
        Trainer.from_checkpoint(out, clf_df, epochs=1)


def test_allowed_changes_and_an_equal_config_are_accepted(stopped, clf_df, tmp_path):
    out, cfg = stopped
    run = Trainer.from_checkpoint(out, clf_df, config={**cfg, "seed": None, "name": "renamed", "epochs": 3},
                         checkpoint_keep=1)
    assert (run.config.name, run.config.epochs, run.config.checkpoint_keep) == ("renamed", 3, 1)
    assert run.config.output_path == str(out) and run.config.seed == 0


def test_a_dataframe_that_differs_is_refused_saying_how(stopped, clf_df):
    out, _ = stopped
    with pytest.raises(ResumeMismatch) as info:
        Trainer.from_checkpoint(out, clf_df.drop(columns=["f3"]))
    text, fields = refusal(info)
    assert fields == ["columns"] and "the DataFrame lacks ['f3']" in text

    with pytest.raises(ResumeMismatch) as info:
        Trainer.from_checkpoint(out, clf_df.assign(extra=1.0))       # no feature_columns: every column is one
    text, fields = refusal(info)
    assert "feature_columns" in fields and "'extra'" in text

    with pytest.raises(ResumeMismatch) as info:
        Trainer.from_checkpoint(out, clf_df.assign(f1=clf_df.f1 * 10))
    text, fields = refusal(info)
    assert {"means", "stds", "medians"} <= set(fields) and "the DataFrame gives" in text

    with pytest.raises(ResumeMismatch) as info:
        Trainer.from_checkpoint(out, clf_df.iloc[:1000])
    assert "rows" in refusal(info)[1]

    swapped = clf_df.copy()
    i, j = clf_df.index[clf_df.label == 0][0], clf_df.index[clf_df.label == 1][0]
    swapped.loc[[i, j], "label"] = [1, 0]
    with pytest.raises(ResumeMismatch) as info:
        Trainer.from_checkpoint(out, swapped)
    text, fields = refusal(info)
    assert fields == ["values"] and "other values or another row order" in text


def test_an_early_stopped_run_and_a_custom_model_are_explained(clf_df, tmp_path):
    out = tmp_path / "early"
    run = Trainer(torch_config(epochs=30, early_stopping=True, early_stopping_patience=1,
                              min_delta=10.0, output_path=str(out)), clf_df).fit()
    assert run.state == TrainingState.EARLY_STOPPED
    with pytest.raises(CheckpointError, match="early-stopped after epoch 2 .*nothing to continue"):
        Trainer.from_checkpoint(out, clf_df)

    import torch
    out = tmp_path / "custom"
    first = Trainer(torch_config(epochs=3, output_path=str(out)), clf_df,
                    model=torch.nn.Sequential(torch.nn.Linear(4, 2)))
    first.add_callback(lambda event, data: first.stop() if event == "epoch_end" else None)
    first.fit()
    with pytest.raises(CheckpointError, match=r"pass a fresh instance of it, Trainer.from_checkpoint\(output_path, df, model="):
        Trainer.from_checkpoint(out, clf_df)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        Trainer.from_checkpoint(out, clf_df, model=torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)))
    run = Trainer.from_checkpoint(out, clf_df, model=torch.nn.Sequential(torch.nn.Linear(4, 2))).fit()
    assert run.state == TrainingState.COMPLETED and len(run.history) == 3
    with pytest.raises(CheckpointError, match="built-in 'mlp' model; resume without model="):
        Trainer.from_checkpoint(tmp_path / "early", clf_df, model=torch.nn.Linear(4, 2))


# ---------------------------------------------------------------------- SIGKILL at random points

def _spawn(spec: dict) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(CHILD), json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)


def _lines(proc: subprocess.Popen, timeout: float) -> Iterator[dict]:
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("{"):
                yield json.loads(line)
    finally:
        watchdog.cancel()


def _kill_at(spec: dict, target: int, rng: random.Random, timeout: float = 240) -> Optional[int]:
    """Run a child until it has trained ``target`` batches in all (counting from the run's start),
    then SIGKILL it a random moment later (mid-batch or mid-write). Returns where it was killed."""
    proc = _spawn(spec)
    killed_at = None
    for message in _lines(proc, timeout):
        if message["event"] == "batch":
            done = (message["epoch"] - 1) * message["num_batches"] + message["batch"]
            if done >= target:
                time.sleep(rng.uniform(0, 0.004))
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = done
                break
    proc.wait(30)
    stderr = proc.stderr.read()
    assert killed_at is not None or proc.returncode == 0, f"child failed ({proc.returncode}): {stderr[-3000:]}"
    return killed_at


def _killed_and_resumed(spec: dict, targets: list[int], rng: random.Random) -> tuple[list[dict], list]:
    """SIGKILL a child training ``spec`` at each global batch of ``targets`` (resuming it from the
    second on), then let a last resumed child finish; its saved history, and where the kills landed."""
    out = Path(spec["config"]["output_path"])
    where = []
    for i, target in enumerate(targets):
        where.append(_kill_at({**spec, "resume": i > 0}, target, rng))
        assert list_checkpoints(checkpoint_dir(out)), f"no checkpoint survived the kill at {where}"
    proc = _spawn({**spec, "resume": True})
    end = [m for m in _lines(proc, 240) if m["event"] == "end"]
    proc.wait(30)
    assert proc.returncode == 0 and end, f"resumed child failed: {proc.stderr.read()[-3000:]} (kills at {where})"
    return json.loads((out / "history.json").read_text())["history"], where


def _kill_and_resume(backend: str, kills: int, seed: int, tmp_path: Path) -> None:
    rows, data_seed = 1200, 5
    config = {"backend": backend, "seed": 7, "epochs": 5, "batch_size": 24, "hidden_units": [16, 8],
              "dropout_rate": 0.2, "learning_rate": 0.01, "learning_rate_scheduler": "plateau", "patience": 0,
              "early_stopping": True, "early_stopping_patience": 10, "device": "cpu", "target_column": "label",
              "checkpoint_every_batches": 5, "checkpoint_keep": 2}
    df = datasets.make_classification(rows, seed=data_seed)
    reference = Trainer({**config, "output_path": str(tmp_path / "reference")}, df).fit()
    total = reference.num_batches * config["epochs"]                  # 40 batches an epoch

    seed = int(os.environ.get("KILL_TEST_SEED", seed))     # another seed, other kill points
    rng = random.Random(seed)
    out = tmp_path / "killed"
    spec = {"rows": rows, "data_seed": data_seed, "config": {**config, "output_path": str(out)}}
    # The first kill comes after the first checkpoint (batch 5); the last leaves work to resume.
    history, where = _killed_and_resumed(spec, sorted(rng.sample(range(6, total - 5), kills)), rng)
    assert comparable(history) == comparable(reference.history), f"kills at {where} (seed {seed})"
    final = load_latest(checkpoint_dir(out))
    assert final.state["final_state"] == "completed"
    assert_same_state(final.members, decode(reference.last_checkpoint).members)
    restored = load_model(out)                                      # best weights, as saved
    np.testing.assert_array_equal(restored.decision_function(df), load_model(tmp_path / "reference").decision_function(df))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_random_batches_then_resume_equals_an_uninterrupted_run_torch(seed, tmp_path):
    _kill_and_resume("torch", kills=3, seed=seed, tmp_path=tmp_path)


@pytest.mark.slow
@pytest.mark.tensorflow
def test_sigkill_at_random_batches_then_resume_equals_an_uninterrupted_run_tensorflow(tmp_path):
    _kill_and_resume("tensorflow", kills=2, seed=3, tmp_path=tmp_path)
