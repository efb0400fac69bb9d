"""Resuming API tasks from their checkpoints: after a crashed worker, after a server restart, from a
damaged newest checkpoint, and the refusals when there is nothing to resume."""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from epoch_widgets.server.registry import TaskRegistry
from trainer import Trainer
from trainer.checkpoints import checkpoint_dir, decode, encode, list_checkpoints

pytestmark = pytest.mark.server


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "time_per_epoch"} for entry in history]


def uninterrupted(config: dict[str, Any], root: Path) -> list[dict]:
    """The history the same config gives in one go, trained here on the same file."""
    df = pd.read_csv(root / config["data_path"])
    return Trainer({**config, "output_path": None}, df).fit().history


@pytest.fixture
def resumable_config(make_config):
    # 640 training rows in batches of 16: 40 batches an epoch, a checkpoint every 10.
    return make_config(epochs=25, batch_size=16, checkpoint_every_batches=10, output_path="/models/resumable")


async def test_a_crashed_task_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_run(
        api, resumable_config, extension, jp_root_dir, models_dir):
    task_id = await api.start(resumable_config)
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 2)
    os.kill(extension.registry.get(task_id).gen.pid, signal.SIGKILL)
    failed = await api.wait_for(task_id, lambda p: p["training_state"] == "failed")
    assert "SIGKILL" in failed["error"]

    status, body = await api.call("POST", "resume", task_id)
    assert status == 200, body
    assert body["message"].startswith("Training resumed from its checkpoint after epoch ")
    assert body["progress"]["current_epoch"] >= 2
    assert (await api.call("POST", "resume", task_id))[0] == 409          # running now: not paused

    events, _ = await api.stream(task_id)
    assert events[-1]["type"] == "complete" and events[-1]["training_state"] == "completed"
    history = (await api.call("GET", "history", task_id))[1]["history"]
    assert comparable(history) == comparable(uninterrupted(resumable_config, jp_root_dir))
    assert list_checkpoints(checkpoint_dir(models_dir / "resumable"))


async def test_a_task_interrupted_by_a_server_shutdown_resumes_in_the_next_server_life(
        api, resumable_config, extension, jp_root_dir):
    task_id = await api.start(resumable_config)
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 2)
    registry = extension.registry
    await extension.stop_extension()          # the worker stops and checkpoints where it is
    assert registry.get(task_id).state == "interrupted"
    assert f"POST resume/{task_id} continues it from its last checkpoint" in registry.get(task_id).reason

    reborn = TaskRegistry(registry.settings)
    try:
        task = reborn.get(task_id)
        assert task.state == "interrupted"
        task, _state, note = await reborn.resume(task_id)
        assert note.startswith("Training resumed from its checkpoint after epoch ")
        for _ in range(2400):
            if task.done:
                break
            await asyncio.sleep(0.05)
        assert task.state == "completed", task.reason
        assert comparable(task.history) == comparable(uninterrupted(resumable_config, jp_root_dir))
        assert [h["epoch"] for h in task.history] == list(range(1, 26))
    finally:
        await reborn.shutdown()


def _truncated(newest: Path) -> str:
    newest.write_bytes(newest.read_bytes()[:100])
    return f"skipping checkpoint {newest.name} is unreadable"


def _torch_state_unloadable(newest: Path) -> str:
    newest.write_bytes(encode(decode(newest).state, {"torch_state.pt": b"an intact zip member, no torch state"}))
    return f"skipping checkpoint {newest.name}: its torch state does not load"


@pytest.mark.parametrize("damage", [_truncated, _torch_state_unloadable], ids=["truncated", "state-unloadable"])
async def test_a_damaged_newest_checkpoint_is_skipped_and_the_client_is_told(damage, api, resumable_config, models_dir,
                                                                           jp_root_dir):
    task_id = await api.start(resumable_config)
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 2)
    assert (await api.call("POST", "stop", task_id))[1]["training_state"] == "stopped"
    told = damage(list_checkpoints(checkpoint_dir(models_dir / "resumable"))[-1])

    status, body = await api.call("POST", "resume", task_id)
    assert status == 200, body
    assert told in body["message"]
    await api.stream(task_id)
    history = (await api.call("GET", "history", task_id))[1]["history"]
    assert comparable(history) == comparable(uninterrupted(resumable_config, jp_root_dir))


async def test_resume_refuses_what_cannot_continue_and_leaves_the_task_as_it_was(api, make_config, models_dir):
    plain = await api.start(make_config(epochs=100_000))
    await api.wait_for(plain, lambda p: p["current_epoch"] >= 1)
    await api.call("POST", "stop", plain)
    status, body = await api.call("POST", "resume", plain)
    assert status == 409 and "started without output_path" in body["message"]

    done = await api.start(make_config(epochs=2, output_path="done"))
    await api.wait_done(done)
    status, body = await api.call("POST", "resume", done)
    assert status == 409 and "already ended (completed)" in body["message"]

    broken = await api.start(make_config(epochs=100_000, output_path="broken"))
    await api.wait_for(broken, lambda p: p["current_epoch"] >= 1)
    await api.call("POST", "stop", broken)
    for path in list_checkpoints(checkpoint_dir(models_dir / "broken")):
        path.write_bytes(b"not a checkpoint")
    status, body = await api.call("POST", "resume", broken)
    assert status == 409 and "cannot resume from the checkpoint: every checkpoint" in body["message"], body
    progress = await api.progress(broken)
    assert progress["training_state"] == "stopped" and progress["current_epoch"] >= 1


async def test_a_task_whose_artifacts_could_not_be_written_is_finished_by_resume(api, make_config, models_dir):
    # A run that trained to its end but saved no metadata.json (killed or failing while saving) is
    # finished by resume: its artifacts and evaluation are written from the last checkpoint.
    task_id = await api.start(make_config(epochs=20, batch_size=16, output_path="/models/unsaved"))
    assert (await api.call("POST", "pause", task_id))[1]["training_state"] == "paused"     # 800 batches to go
    blocker = models_dir / "unsaved" / "model.pt"
    blocker.mkdir()                                       # the model file cannot be written
    assert (await api.call("POST", "resume", task_id))[0] == 200
    failed = await api.wait_for(task_id, lambda p: p["training_state"] == "failed")
    assert "could not write the artifacts" in failed["error"]
    assert not (models_dir / "unsaved" / "metadata.json").exists()
    history = (await api.call("GET", "history", task_id))[1]["history"]
    assert len(history) == 20

    blocker.rmdir()
    status, body = await api.call("POST", "resume", task_id)
    assert status == 200, body
    events, _ = await api.stream(task_id)
    assert events[-1]["type"] == "complete" and events[-1]["training_state"] == "completed", events[-1]
    assert comparable((await api.call("GET", "history", task_id))[1]["history"]) == comparable(history)
    status, body = await api.call("GET", "evaluation", task_id)
    assert status == 200 and body["evaluation"]["split"] == "validation", body
    from trainer import load_model
    assert len(load_model(models_dir / "unsaved").history) == 20
