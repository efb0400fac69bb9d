"""Steering a task through the API (POST update/{task_id}) with the real worker process: the
change applied between two batches and recorded in the progress, the history, the stream and the
task's record; refusals that name the field and change nothing; 409 once the task has ended."""
from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from epoch_widgets.server.openapi import openapi_document
from trainer.steering import CHANGEABLE

pytestmark = pytest.mark.server

LONG = 100_000   # epochs for a run that only ends when told to


async def test_a_paused_task_is_steered_and_the_change_is_recorded_everywhere(api, make_config, tasks_dir, extension):
    task_id = await api.start(make_config(epochs=LONG, learning_rate_scheduler="none", output_path="/models/steer"))
    reader = asyncio.ensure_future(api.stream(task_id))
    done = (await api.pause_after_an_epoch(task_id))["progress"]["current_epoch"]

    status, body = await api.call("POST", "update", task_id, body={"learning_rate": 0.002, "epochs": done + 2})
    assert status == 200, body
    change = body["change"]
    assert change["changes"] == {"learning_rate": {"old": 0.005, "new": 0.002},
                                 "epochs": {"old": LONG, "new": done + 2}}
    # Applied at once while paused, where the run paused: in the epoch after the done ones.
    assert change["epoch"] == done + 1 and change["step"] >= change["batch"] >= 0
    assert body["training_state"] == "paused" and body["progress"]["total_epochs"] == done + 2
    assert body["progress"]["config_changes"] == [change]
    assert "learning_rate" in body["message"] and "epochs" in body["message"]

    assert extension.registry.store.flush()
    record = json.loads((tasks_dir / f"{task_id}.json").read_text())
    assert record["config"]["learning_rate"] == 0.002 and record["run"]["config_changes"] == [change]
    status, task = await api.call("GET", "tasks", task_id)
    assert task["task"]["config"]["epochs"] == done + 2     # the task's config is the run's as it is now

    assert (await api.call("POST", "resume", task_id))[0] == 200
    final = await api.wait_done(task_id)
    assert final["training_state"] == "completed" and final["current_epoch"] == done + 2
    status, body = await api.call("GET", "history", task_id)
    assert status == 200 and body["config_changes"] == [change]
    assert [h["learning_rate"] for h in body["history"]][done:] == [0.002, 0.002]

    events, _ = await asyncio.wait_for(reader, 120)
    changes = [e for e in events if e["type"] == "config_change"]
    assert len(changes) == 1 and changes[0]["change"] == change and changes[0]["task_id"] == task_id
    assert changes[0]["progress"]["config_changes"] == [change]

    status, body = await api.call("POST", "update", task_id, body={"learning_rate": 0.001})
    assert status == 409 and "ended" in body["message"] and "completed" in body["message"], body


async def test_a_running_task_takes_a_change_between_two_batches_and_refusals_change_nothing(api, make_config):
    task_id = await api.start(make_config(epochs=LONG))
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 1)
    status, body = await api.call("POST", "update", task_id, body={"dropout_rate": 0.3, "batch_size": 64})
    assert status == 200 and body["training_state"] == "running", body
    change = body["change"]
    assert change["changes"] == {"dropout_rate": {"old": 0.1, "new": 0.3}, "batch_size": {"old": 32, "new": 64}}
    assert change["epoch"] >= 2
    assert (await api.call("POST", "pause", task_id))[0] == 200
    before = await api.progress(task_id)

    status, body = await api.call("POST", "update", task_id, body={"model_type": "cnn", "learning_rate": 0.01})
    assert status == 400 and body["errors"][0]["field"] == "model_type", body
    assert "learning_rate" in body["message"] and "batch_size" in body["message"]   # what can change
    status, body = await api.call("POST", "update", task_id, body={"learning_rate": -1})
    assert status == 400 and body["errors"][0]["field"] == "learning_rate", body
    status, body = await api.call("POST", "update", task_id, body={"epochs": before["current_epoch"] - 1 or 0})
    assert status == 400 and body["errors"][0]["field"] == "epochs", body
    for bad in ([], {}, "lr"):
        status, body = await api.call("POST", "update", task_id, body=bad)
        assert status == 400 and "JSON object" in body["message"], body
    status, body = await api.call("POST", "update", task_id, raw="{not json")
    assert status == 400, body
    assert (await api.call("POST", "update", "epoch_training_20000101_000000", body={"epochs": 3}))[0] == 404

    after = await api.progress(task_id)
    assert after["config_changes"] == [change] and after["total_epochs"] == LONG
    status, task = await api.call("GET", "tasks", task_id)
    assert task["task"]["config"]["learning_rate"] == 0.005 and task["task"]["config"]["batch_size"] == 64
    assert (await api.call("POST", "stop", task_id))[0] == 200
    await api.wait_done(task_id)


async def test_a_task_resumed_from_its_checkpoint_goes_back_to_the_settings_saved_there(api, make_config, extension):
    task_id = await api.start(make_config(epochs=LONG, output_path="/models/steer-kill"))
    await api.pause_after_an_epoch(task_id)
    status, body = await api.call("POST", "update", task_id, body={"learning_rate": 0.002})
    assert status == 200, body
    # Killed before any checkpoint holds the change: it is undone with the batches since.
    os.kill(extension.registry.get(task_id).gen.pid, signal.SIGKILL)
    await api.wait_done(task_id)
    status, body = await api.call("POST", "resume", task_id)
    assert status == 200 and "checkpoint" in body["message"], body
    assert body["progress"]["config_changes"] == []
    status, task = await api.call("GET", "tasks", task_id)
    assert task["task"]["config"]["learning_rate"] == 0.005
    status, body = await api.call("POST", "update", task_id, body={"learning_rate": 0.003})
    assert status == 200 and body["change"]["changes"]["learning_rate"] == {"old": 0.005, "new": 0.003}, body
    assert (await api.call("POST", "stop", task_id))[0] == 200
    await api.wait_done(task_id)


def test_the_openapi_document_describes_the_update_endpoint_and_its_records():
    doc = openapi_document()
    op = doc["paths"]["/update/{task_id}"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/UpdateRequest"}
    assert {"200", "400", "404", "409"} <= set(op["responses"])
    schemas = doc["components"]["schemas"]
    request = schemas["UpdateRequest"]
    assert set(request["properties"]) == set(CHANGEABLE) and request["additionalProperties"] is False
    assert request["properties"]["learning_rate"]["exclusiveMinimum"] == 0       # the start schema's limits
    assert "Takes effect" in request["properties"]["batch_size"]["description"]
    assert schemas["Progress"]["properties"]["config_changes"]["items"] == {"$ref": "#/components/schemas/ConfigChange"}
    assert "config_changes" in schemas["HistoryResponse"]["properties"]
    assert {"$ref": "#/components/schemas/ConfigChangeEvent"} in schemas["StreamEvent"]["oneOf"]
