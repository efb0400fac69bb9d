"""The run-state model: the lifecycle's transitions, applying events, training time without pauses,
the follower's copy, and what checkpoints and protocol messages carry."""
from __future__ import annotations

import json

import pytest

import trainer.state
from trainer import RunFollower, RunState, StateError, TrainingConfig, TrainingState, protocol
from trainer.state import TRANSITIONS

CONFIG = TrainingConfig(epochs=5, learning_rate_scheduler="plateau", patience=0, factor=0.5,
                        early_stopping_patience=2, min_delta=0.0)


def change(old: str, new: str, reason=None, error=None, elapsed=0.0) -> tuple[str, dict]:
    return "state_change", {"old": old, "new": new, "reason": reason, "error": error, "elapsed": elapsed}


def epoch_end(epoch: int, val_loss: float, best_epoch: int) -> tuple[str, dict]:
    metrics = {"epoch": epoch, "train_loss": val_loss + 0.1, "train_accuracy": 0.5, "val_loss": val_loss,
               "val_accuracy": 0.6, "learning_rate": 0.001, "time_per_epoch": 2.0}
    return "epoch_end", {"metrics": metrics, "improved": best_epoch == epoch, "best_epoch": best_epoch}


def a_run(state: RunState) -> None:
    """Apply a short run's events: start, two epochs (the first the best), a pause, the end."""
    for event, data in [change("pending", "running"),
                        ("train_begin", {"total_epochs": 5, "start_epoch": 0, "task": "classification", "device": "cpu"}),
                        ("epoch_begin", {"epoch": 1, "learning_rate": 0.001, "batch": 0, "num_batches": 30}),
                        ("batch_end", {"epoch": 1, "batch": 30, "num_batches": 30, "loss": 0.6}),
                        epoch_end(1, 0.4, 1),
                        ("epoch_begin", {"epoch": 2, "learning_rate": 0.001, "batch": 0, "num_batches": 30}),
                        ("batch_end", {"epoch": 2, "batch": 12, "num_batches": 30, "loss": 0.5}),
                        change("running", "paused", "paused in epoch 2 after batch 12"),
                        change("paused", "running", "resumed"),
                        ("batch_end", {"epoch": 2, "batch": 30, "num_batches": 30, "loss": 0.5}),
                        epoch_end(2, 0.45, 1),
                        change("running", "stopped", "stopped by the user after epoch 2"),
                        ("train_end", {"state": "stopped", "reason": "stopped by the user after epoch 2", "error": None,
                                       "best_metrics": {}, "artifacts_path": "/out", "last_checkpoint": "/out/c.zip"})]:
        state.apply(event, data)


def test_the_lifecycle_allows_only_its_transitions():
    assert TrainingState.PAUSED in TRANSITIONS[TrainingState.RUNNING]
    assert not TRANSITIONS[TrainingState.COMPLETED]              # nothing leaves a final state
    state = RunState(total_epochs=3)
    with pytest.raises(StateError, match="from pending to paused"):
        state.apply(*change("pending", "paused"))
    state.apply(*change("pending", "running"))
    state.apply(*change("running", "completed", "finished"))
    with pytest.raises(StateError, match="from completed to running"):
        state.apply(*change("completed", "running"))
    assert state.state == TrainingState.COMPLETED and state.finished_at is not None


def test_events_build_the_progress_history_and_best_epoch():
    state = RunState(total_epochs=5)
    a_run(state)
    assert state.state == TrainingState.STOPPED and state.reason == "stopped by the user after epoch 2"
    assert [h["epoch"] for h in state.history] == [1, 2] and state.current_epoch == 2
    assert state.best_metrics == {"loss": 0.4, "accuracy": 0.6, "epoch": 1}
    progress = state.progress()
    assert progress["latest_metrics"] == state.history[-1] and progress["training_state"] == "stopped"
    assert (progress["current_batch"], progress["total_batches"]) == (30, 30)
    assert state.artifacts_path == "/out" and state.last_checkpoint == "/out/c.zip"


def test_training_time_leaves_pauses_out(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(trainer.state.time, "monotonic", lambda: clock[0])
    state = RunState(total_epochs=3)
    state.apply(*change("pending", "running", elapsed=0.0))
    clock[0] += 12
    assert state.elapsed() == 12
    state.apply(*change("running", "paused", elapsed=state.elapsed()))
    clock[0] += 44                                            # a 44 s pause
    assert state.elapsed() == 12
    state.apply(*change("paused", "running", elapsed=state.elapsed()))
    clock[0] += 3
    assert state.elapsed() == 15
    state.apply(*change("running", "completed", elapsed=state.elapsed()))
    clock[0] += 100
    assert state.elapsed() == 15


def test_a_follower_starts_from_a_snapshot_and_skips_repeated_states():
    source = RunState(total_epochs=5)
    a_run(source)
    copy = RunState.from_snapshot(json.loads(json.dumps(source.snapshot())))
    assert copy.progress() == source.progress() and copy.best_epoch == 1 and copy.history == source.history

    follower = RunFollower(RunState(total_epochs=5))
    heard = []
    follower.listen(lambda event, data: heard.append((event, follower.state.state.value)))
    follower.apply(*change("pending", "running"))
    follower.apply(*change("pending", "running"))          # e.g. rank 0 starting what the launcher shows running
    follower.apply(*change("running", "pending"))          # cannot happen: a lost message; ignored, not raised
    assert heard == [("state_change", "running")] and follower.state.state == TrainingState.RUNNING
    assert follower.receive(protocol.event(*epoch_end(1, 0.3, 1))) and follower.state.current_epoch == 1
    assert not follower.receive(protocol.reply(1, True, "running"))     # not an event: the caller's business


def test_the_loop_state_round_trips_through_a_checkpoint_mid_epoch():
    state = RunState.fresh(CONFIG, "classification", seed=7)
    a_run(state)
    state.apply("epoch_begin", {"epoch": 3, "learning_rate": 0.0005, "batch": 0, "num_batches": 30})
    state.apply("batch_end", {"epoch": 3, "batch": 9, "num_batches": 30, "loss": 0.2})
    state.early_stopping.update(1, 0.4)
    state.early_stopping.update(2, 0.45)
    state.schedule.observe(0.4)
    state.schedule.observe(0.45)
    saved = json.loads(json.dumps(state.to_dict({"loss_sum": 1.5, "score_sum": 8.0, "seen": 288}, 0.7)))
    assert (saved["epoch"], saved["batch"], saved["num_batches"], saved["elapsed"]) == (2, 9, 30, 0.7)
    restored = RunState.from_dict(saved, CONFIG, "classification")
    assert restored.history == state.history and restored.seed == 7
    assert (restored.current_epoch, restored.batch, restored.num_batches) == (2, 9, 30)
    assert restored.epoch_totals == {"loss_sum": 1.5, "score_sum": 8.0, "seen": 288}
    assert restored.early_stopping.state_dict() == state.early_stopping.state_dict()
    assert restored.schedule.state_dict() == state.schedule.state_dict() and restored.schedule.lr(2) == 0.0005
    assert restored.best_epoch == 1 and restored.elapsed() == pytest.approx(4.7)   # two epochs' time + 0.7 s
    # At an epoch boundary there is no partial epoch to carry.
    state.apply("batch_end", {"epoch": 3, "batch": 30, "num_batches": 30, "loss": 0.2})
    at_end = state.to_dict({"ignored": True}, 9.9)
    assert (at_end["batch"], at_end["epoch_totals"], at_end["elapsed"]) == (0, None, 0.0)


def test_protocol_messages_travel_as_json_lines():
    message = protocol.event("epoch_end", epoch_end(1, float("nan"), 1)[1])
    back = protocol.decode(protocol.encode(message))
    assert back["kind"] == "event" and back["data"]["metrics"]["epoch"] == 1
    assert protocol.decode(protocol.encode(protocol.command("pause", 3))) == {"kind": "command", "cmd": "pause", "seq": 3}
    with pytest.raises(ValueError):
        protocol.decode(b'{"no": "kind"}\n')
    assert protocol.describe_exit(-9).startswith("killed by SIGKILL") and protocol.describe_exit(3) == "exit code 3"
