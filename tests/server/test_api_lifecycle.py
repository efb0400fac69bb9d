"""A task's lifecycle under competing requests with real workers: concurrent resumes, and the rule
that a new task never deletes another run's checkpoints without "overwrite": true (the orderings
of a task's end are in test_task_lifecycle.py, with fake workers)."""
from __future__ import annotations

import asyncio
import os

import pandas as pd
import pytest

from trainer import Trainer, load_model
from trainer.checkpoints import checkpoint_dir, list_checkpoints

from .conftest import epochs_of, worker_pids

pytestmark = pytest.mark.server

LONG = 100_000


async def stopped_task(api, make_config, output_path: str, **overrides) -> str:
    """A task stopped after at least one epoch, with checkpoints in ``output_path``."""
    task_id = await api.start(make_config(epochs=LONG, output_path=output_path, **overrides))
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 1)
    status, body = await api.call("POST", "stop", task_id)
    assert status == 200 and body["training_state"] == "stopped", body
    return task_id


async def test_concurrent_resumes_of_a_stopped_task_start_one_worker_and_refuse_the_rest(api, make_config):
    task_id = await stopped_task(api, make_config, "contested")
    results = await asyncio.gather(*(api.call("POST", "resume", task_id) for _ in range(3)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409, 409], results
    for status, body in results:
        if status == 409:      # at once, while the first one's worker starts (or once it runs)
            assert ("resuming from its checkpoint" in body["message"] or "not paused (running)" in body["message"]) \
                and body["success"] is False
    assert len(worker_pids(os.getpid())) == 1
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 2)
    status, body = await api.call("POST", "stop", task_id)
    assert status == 200 and body["training_state"] == "stopped", body
    history = (await api.call("GET", "history", task_id))[1]["history"]
    assert epochs_of(history) == list(range(1, len(history) + 1))
    assert (await api.call("DELETE", "tasks", task_id))[0] == 200


async def test_a_new_task_is_refused_a_folder_holding_another_tasks_checkpoints(api, make_config, models_dir):
    first = await stopped_task(api, make_config, "/models/shared")
    before = list_checkpoints(checkpoint_dir(models_dir / "shared"))
    status, body = await api.call("POST", "start", body=make_config(epochs=3, output_path="shared"))
    assert status == 409, body
    message = body["message"]
    assert f"task {first} (stopped after epoch" in message and f"POST resume/{first}" in message
    assert '"overwrite": true' in message and f"DELETE tasks/{first}" in message and "another output_path" in message
    assert body["errors"][0]["field"] == "output_path"
    assert list_checkpoints(checkpoint_dir(models_dir / "shared")) == before     # nothing deleted
    assert [t["task_id"] for t in (await api.call("GET", "tasks"))[1]["tasks"]] == [first]

    status, body = await api.call("POST", "start", body=make_config(epochs=3, output_path="shared", overwrite="yes"))
    assert status == 400 and body["errors"][0]["field"] == "overwrite"

    status, body = await api.call("POST", "start", body=make_config(epochs=3, output_path="shared", overwrite=True))
    assert status == 200, body
    assert "overwrite" not in body["config"]                                  # a request key, not saved
    second = body["task_id"]
    assert (await api.wait_done(second))["training_state"] == "completed"
    status, body = await api.call("POST", "resume", first)
    assert status == 409 and "no longer this task's" in body["message"], body
    # The folder holds the second run's results now: the first task never shows them as its own.
    status, body = await api.call("GET", "evaluation", first)
    assert status == 410 and f"task {first} was replaced: task {second}" in body["message"], body
    assert (await api.call("GET", "evaluation", second))[0] == 200
    assert (await api.call("GET", "tasks", first))[1]["task"]["replaced_by"] == second
    assert (await api.call("GET", "tasks", second))[1]["task"]["replaced_by"] is None


async def test_a_task_without_checkpoints_is_not_silently_replaced(api, make_config, models_dir):
    first = await api.start(make_config(epochs=1, output_path="/models/nockpt", checkpoints=False))
    assert (await api.wait_done(first))["training_state"] == "completed"
    saved = {p.name: p.read_bytes() for p in (models_dir / "nockpt").iterdir() if p.is_file()}
    status, body = await api.call("POST", "start", body=make_config(epochs=2, hidden_units=[8],
                                                                    output_path="/models/nockpt"))
    assert status == 409, body
    message = body["message"]
    assert f"the saved files (metadata.json, config.json" in message and f"of task {first} (completed" in message
    assert '"overwrite": true' in message and f"DELETE tasks/{first}" in message and "another output_path" in message
    assert "POST resume" not in message and body["errors"][0]["field"] == "output_path"
    assert {p.name: p.read_bytes() for p in (models_dir / "nockpt").iterdir() if p.is_file()} == saved

    status, body = await api.call("POST", "start", body=make_config(epochs=2, hidden_units=[8], checkpoints=False,
                                                                    output_path="/models/nockpt", overwrite=True))
    assert status == 200, body
    assert (await api.wait_done(body["task_id"]))["training_state"] == "completed"
    assert load_model(models_dir / "nockpt").config.hidden_units == [8]


async def test_a_folder_holding_checkpoints_of_a_run_no_task_knows_is_refused_too(api, make_config, models_dir, jp_root_dir):
    config = make_config(epochs=2)
    df = pd.read_csv(jp_root_dir / config["data_path"])
    Trainer({**config, "output_path": str(models_dir / "from_python")}, df).fit()
    status, body = await api.call("POST", "start", body=make_config(epochs=2, output_path="from_python"))
    assert status == 409, body
    assert "a run this server has no task for (completed after epoch 2 of 2)" in body["message"]
    assert '"overwrite": true' in body["message"]
    status, body = await api.call("POST", "start", body=make_config(epochs=2, output_path="from_python", overwrite=True))
    assert status == 200, body
