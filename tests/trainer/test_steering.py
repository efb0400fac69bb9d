"""Steering a live run in this process: run.update() between batches, the config_change record,
the refusals, and replaying a recorded run's changes from scratch."""
from __future__ import annotations

import json
import threading

import pytest

import trainer.loop
from trainer import ConfigError, StateError, Trainer, TrainingConfig, TrainingState
from trainer.run_records import read_run, record_of
from trainer.schedules import LRSchedule
from trainer.steering import CHANGEABLE, check_changes, initial_config, steered_preview


def comparable(history):
    return [{k: v for k, v in entry.items() if k != "time_per_epoch"} for entry in history]


@pytest.fixture
def one_batch_slices(monkeypatch):
    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 0.0)


def torch_config(**overrides):
    """The backend-matrix fixture's config, torch only: these tests check no framework's part."""
    cfg = {"backend": "torch", "seed": 0, "epochs": 3, "batch_size": 32, "hidden_units": [32, 16],
           "dropout_rate": 0.1, "learning_rate": 0.005, "learning_rate_scheduler": "none",
           "early_stopping": False, "device": "cpu", "target_column": "label"}
    return {**cfg, **overrides}


def events_of(run, name):
    seen = []
    run.add_callback(lambda e, d: seen.append(d) if e == name else None)
    return seen


def fit_in_thread(run):
    worker = threading.Thread(target=run.fit)
    worker.start()
    return worker


def wait_for_state(run, state, timeout=60.0):
    done = threading.Event()
    run.add_callback(lambda e, d: done.set() if e == "state_change" and d["new"] == state.value else None)
    if run.state != state:
        assert done.wait(timeout), f"the run never became {state.value}"


# ---------------------------------------------------------------------- applied and recorded

def test_update_applies_at_the_next_batch_boundary_is_recorded_and_replays(backend, base_config, clf_df, tmp_path,
                                                                          one_batch_slices, monkeypatch):
    out = tmp_path / "steered"
    cfg = base_config(epochs=3, learning_rate_scheduler="step", step_size=1, gamma=0.5, output_path=str(out))
    run = Trainer(cfg, clf_df)
    changes = events_of(run, "config_change")
    answers = []

    def steer(event, data):
        if event == "batch_end" and (data["epoch"], data["batch"]) == (2, 5):
            # On the run's own thread update() cannot wait: it returns the pending change.
            answers.append(run.update(learning_rate=0.02, epochs=4))
    run.add_callback(steer)
    run.fit()

    assert answers == [{"changes": {"learning_rate": {"old": 0.005, "new": 0.02}, "epochs": {"old": 3, "new": 4}},
                        "pending": True}]
    assert run.state == TrainingState.COMPLETED and len(run.history) == 4
    [event] = changes
    assert (event["epoch"], event["batch"], event["step"]) == (2, 5, 30 + 5)
    assert event["changes"] == answers[0]["changes"] and event["time"] > 0
    # The rest of epoch 2 trains at the new rate; the step schedule starts again from it.
    assert [h["learning_rate"] for h in run.history] == [0.005, 0.02, 0.01, 0.005]
    assert run.config.learning_rate == 0.02 and run.config.epochs == 4
    assert run.config_changes == [event] and run.progress()["config_changes"] == [event]
    saved = json.loads((out / "history.json").read_text())
    assert saved["config_changes"] == [event]
    assert json.loads((out / "config.json").read_text())["epochs"] == 4
    assert read_run(out).config_changes == [event] and record_of(run).config_changes == [event]

    # A new run replays the recorded changes at the same positions and reproduces the run exactly
    # (its slices of batches end where a change is due).
    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 10.0)
    again = Trainer({**cfg, "output_path": str(tmp_path / "replayed")}, clf_df, replay=out)
    again.fit()
    assert comparable(again.history) == comparable(run.history)
    assert [(c["epoch"], c["batch"], c["changes"]) for c in again.config_changes] == [(2, 5, event["changes"])]


def test_update_while_paused_applies_at_once_without_resuming(base_config, clf_df, one_batch_slices, monkeypatch):
    cfg = base_config(epochs=3, dropout_rate=0.2, early_stopping=True, early_stopping_patience=5)
    run = Trainer(cfg, clf_df)
    begins = events_of(run, "epoch_begin")
    run.add_callback(lambda e, d: run.pause() if e == "batch_end" and (d["epoch"], d["batch"]) == (1, 3) else None)
    worker = fit_in_thread(run)
    try:
        wait_for_state(run, TrainingState.PAUSED)
        event = run.update(batch_size=64, dropout_rate=0.4, early_stopping_patience=2, min_delta=0.0)
        assert run.state == TrainingState.PAUSED and run.batch == 3
        assert (event["epoch"], event["batch"]) == (1, 3)
        assert event["changes"]["batch_size"] == {"old": 32, "new": 64}
        assert run.config_changes == [event]
    finally:
        run.resume()
        worker.join()
    # The batch size changes from the next epoch; the epoch in progress keeps its batches.
    assert [b["num_batches"] for b in begins] == [30, 15, 15]
    assert run.run_state.early_stopping.patience == 2
    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 10.0)
    replayed = Trainer(cfg, clf_df, replay=run).fit()
    assert comparable(replayed.history) == comparable(run.history)


def test_a_change_between_epochs_applies_to_the_next_epoch(clf_df):
    cfg = torch_config(epochs=2, learning_rate_scheduler="step", step_size=1, gamma=0.5)
    run = Trainer(cfg, clf_df)
    begins = events_of(run, "epoch_begin")
    # Epoch 2 is the last: a change made as it ends (before the run finishes) adds epochs.
    run.add_callback(lambda e, d: run.update(epochs=3, batch_size=48, learning_rate=0.1)
                     if e == "epoch_end" and d["metrics"]["epoch"] == 2 else None)
    run.fit()
    [event] = run.config_changes
    assert (event["epoch"], event["batch"], event["step"]) == (2, 30, 60)   # after epoch 2's last batch
    assert [b["num_batches"] for b in begins] == [30, 30, 20]
    assert [h["learning_rate"] for h in run.history] == [0.005, 0.0025, 0.1]
    assert run.state == TrainingState.COMPLETED and run.reason == "finished all 3 epochs"


# ---------------------------------------------------------------------- refusals

def test_refusals_name_the_field_and_change_nothing(clf_df):
    run = Trainer(torch_config(epochs=2), clf_df)
    with pytest.raises(StateError, match="has not started"):
        run.update(learning_rate=0.1)
    run.pause()                     # holds before the first batch
    worker = fit_in_thread(run)
    try:
        wait_for_state(run, TrainingState.PAUSED)
        with pytest.raises(ConfigError) as info:
            run.update(model_type="lstm", learning_rate=0.1)
        assert info.value.errors[0]["field"] == "model_type"
        assert "cannot change while the run trains" in str(info.value)
        assert all(name in str(info.value) for name in CHANGEABLE)
        with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
            run.update(learnig_rate=0.1)
        with pytest.raises(ConfigError) as info:
            run.update(learning_rate=-1.0)
        assert info.value.errors[0]["field"] == "learning_rate"
        with pytest.raises(ConfigError) as info:
            run.update(epochs=1, batch_size=0)          # one bad value: no field changes
        assert info.value.errors[0]["field"] == "batch_size" and run.config.epochs == 2
        with pytest.raises(ConfigError, match="nothing to change"):
            run.update()
        assert run.update(learning_rate=0.005)["changes"] == {}     # the value it has: nothing to record
        assert run.config_changes == [] and run.config.batch_size == 32
    finally:
        run.resume()
        worker.join()
    with pytest.raises(StateError, match="already ended"):
        run.update(learning_rate=0.1)


def test_epochs_cannot_shrink_below_the_epochs_done():
    config = TrainingConfig(**torch_config(epochs=10))
    with pytest.raises(ConfigError, match="must be at least 4") as info:
        check_changes(config, {"epochs": 3}, epochs_done=4)
    assert info.value.errors[0]["field"] == "epochs"
    assert check_changes(config, {"epochs": 4, "learning_rate": 0.005}, epochs_done=4) == {"epochs": 4}


def test_dropout_cannot_change_in_a_model_without_dropout_layers(clf_df):
    run = Trainer(torch_config(epochs=1, dropout_rate=0.0), clf_df)
    run.pause()
    worker = fit_in_thread(run)
    try:
        wait_for_state(run, TrainingState.PAUSED)
        with pytest.raises(ConfigError, match="no dropout layers"):
            run.update(dropout_rate=0.3)
    finally:
        run.resume()
        worker.join()


def test_replay_refuses_a_config_the_recorded_run_did_not_start_from(clf_df):
    recorded = [{"changes": {"learning_rate": {"old": 0.01, "new": 0.02}}, "epoch": 1, "batch": 3, "step": 3,
                 "time": 0.0}]
    with pytest.raises(ConfigError, match="learning_rate=0.01 before its change at epoch 1 batch 3"):
        Trainer(torch_config(epochs=1), clf_df, replay=recorded)
    first = initial_config(TrainingConfig(**torch_config(learning_rate=0.02)).to_dict(), recorded)
    assert first["learning_rate"] == 0.01


# ---------------------------------------------------------------------- the schedule

def test_a_new_rate_rebases_the_schedule_from_the_epoch_in_progress():
    config = TrainingConfig(**torch_config(learning_rate=0.1, learning_rate_scheduler="step", step_size=2, gamma=0.5))
    schedule = LRSchedule(config)
    assert [schedule.lr(e) for e in range(4)] == [0.1, 0.1, 0.05, 0.05]
    schedule.rebase(config.replace(learning_rate=1.0), 1.0, origin=3)
    assert [schedule.lr(e) for e in range(3, 7)] == [1.0, 1.0, 0.5, 0.5]
    state = schedule.state_dict()
    restored = LRSchedule(config)
    restored.load_state_dict(state)
    assert [restored.lr(e) for e in range(3, 7)] == [1.0, 1.0, 0.5, 0.5]


def test_update_on_the_loop_right_after_start_does_not_wait(clf_df):
    import asyncio

    async def main():
        run = Trainer(torch_config(epochs=4), clf_df)
        task = run.start()
        answer = run.update(epochs=2)     # on the loop that drives the run, before its first batch
        assert answer == {"changes": {"epochs": {"old": 4, "new": 2}}, "pending": True}
        await task
        return run

    run = asyncio.run(main())
    assert len(run.history) == 2 and [(c["epoch"], c["batch"]) for c in run.config_changes] == [(1, 0)]


@pytest.mark.parametrize("changes_at", [
    # (1-based epoch, batches done, changes): inside an epoch and between two, rate and schedule.
    [(2, 5, {"learning_rate": 0.1})],
    [(2, 30, {"learning_rate": 0.1})],
    [(2, 5, {"learning_rate_scheduler": "cosine", "T_max": 3})],
    [(1, 30, {"step_size": 1, "gamma": 0.1}), (3, 7, {"learning_rate": 0.2, "epochs": 7})],
    [(2, 30, {"batch_size": 48, "learning_rate": 0.1}), (4, 3, {"learning_rate_scheduler": "none"})],
])
def test_the_steered_preview_is_the_rate_each_epoch_trained_at(clf_df, changes_at, one_batch_slices):
    cfg = torch_config(epochs=6, learning_rate_scheduler="step", step_size=2, gamma=0.5)
    run = Trainer(cfg, clf_df)
    todo = list(changes_at)
    counts = {}

    def steer(event, data):
        if event == "epoch_begin":
            counts[data["epoch"]] = data["num_batches"]
        position = ((data["epoch"], data["batch"]) if event == "batch_end" else
                    (data["metrics"]["epoch"], counts[data["metrics"]["epoch"]]) if event == "epoch_end" else None)
        if todo and position == todo[0][:2]:
            run.update(**todo.pop(0)[2])

    run.add_callback(steer)
    run.fit()
    assert not todo and len(run.config_changes) == len(changes_at)
    rates = [h["learning_rate"] for h in run.history]
    assert steered_preview(run.config, run.config_changes, counts) == pytest.approx(rates)
    # From the config the run started with too, as the panel's curves have it.
    assert steered_preview(TrainingConfig(**cfg), run.config_changes, counts) == pytest.approx(rates)
