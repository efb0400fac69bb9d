"""Sweeps over the API, on a real server: the server chooses the folder, each trial is a task
listed with its sweep_id, the sweep's stream, control, refusals that change nothing."""
from __future__ import annotations

import asyncio
import copy

import jsonschema
import pytest

from epoch_widgets.server.ids import is_sweep_id
from epoch_widgets.server.openapi import openapi_document
from epoch_widgets.server.registry import TaskRegistry
from epoch_widgets.server.settings import Settings
from epoch_widgets.server.sweeps import SweepRegistry

from .conftest import API, strict_json

pytestmark = [pytest.mark.server, pytest.mark.slow]

SPACE = {"learning_rate": {"distribution": "log_uniform", "low": 0.001, "high": 0.05},
         "hidden_units": {"distribution": "choice", "values": [[8], [16, 8]]}}


def sweep_body(make_config, **options):
    config = make_config(epochs=3)
    return {"config": config, "space": copy.deepcopy(SPACE), "trials": 3, "parallel": 2, "pruner": None, "seed": 1, **options}


async def test_a_sweep_trains_its_trials_as_tasks_in_a_folder_the_server_chose(api, make_config, models_dir, extension,
                                                                               jp_root_dir, tasks_dir):
    status, started = await api.call("POST", "sweep", body=sweep_body(make_config))
    assert status == 200, started
    sweep_id = started["sweep_id"]
    assert is_sweep_id(sweep_id) and started["sweep"]["output_dir"] == f"/models/sweeps/{sweep_id}"
    assert started["sweep"]["state"] == "running" and started["sweep"]["metric"] == "val_loss"

    events, lines = await api.stream(sweep_id, endpoint="stream-sweep")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sweep" and kinds[-1] == "sweep_end", kinds
    assert kinds.count("trial_end") == 3 and kinds.count("trial_epoch") == 9
    epoch = next(e for e in events if e["type"] == "trial_epoch")
    assert {"trial", "epoch", "metrics"} <= epoch.keys() and "val_loss" in epoch["metrics"]
    ended = [e for e in events if e["type"] == "trial_end"]
    assert all(e["state"] == "completed" and e["task_id"] for e in ended)
    assert not any(str(models_dir) in line for line in lines)        # the server's own folder never shows

    status, body = await api.call("GET", "sweep", sweep_id)
    assert status == 200
    sweep = body["sweep"]
    assert sweep["state"] == "completed" and len(sweep["trials"]) == 3
    assert events[-1]["sweep"]["best"] == sweep["best"]
    best = min(sweep["trials"], key=lambda t: t["best_metric"])
    assert sweep["best"]["trial"] == best["number"] and sweep["best"]["task_id"] == best["task_id"]
    assert sweep["best_config"]["learning_rate"] == best["params"]["learning_rate"]
    assert all(t["epochs"] == 3 and set(t["params"]) == set(SPACE) for t in sweep["trials"])

    response = await api.fetch(*API, "tasks", params={"sweep_id": sweep_id}, request_timeout=120)
    tasks = {t["trial"]: t for t in strict_json(response.body)["tasks"]}
    assert set(tasks) == {0, 1, 2} and all(t["sweep_id"] == sweep_id for t in tasks.values())
    for number, task in tasks.items():
        assert task["task_id"] == sweep["trials"][number]["task_id"] and task["training_state"] == "completed"
        assert task["output_path"] == f"/models/sweeps/{sweep_id}/trial-{number}"
    assert (models_dir / "sweeps" / sweep_id / "study.db").is_file()
    assert (models_dir / "sweeps" / sweep_id / "trial-0" / "metadata.json").is_file()
    status, evaluation = await api.call("GET", "evaluation", best["task_id"])      # trials are normal runs
    assert status == 200 and evaluation["evaluation"]["task"] == "classification"

    # Every answer and event is what the OpenAPI document says.
    doc = openapi_document()
    for name, instances in (("SweepResponse", [started, body]), ("SweepStreamEvent", events)):
        validator = jsonschema.Draft202012Validator({**doc, "$ref": f"#/components/schemas/{name}"})
        for instance in instances:
            validator.validate(instance)

    # A later server life reads the sweep back from its folder, its trials' tasks from their records.
    extension.registry.store.flush()
    later = TaskRegistry(Settings(root_dir=jp_root_dir, models_dir=models_dir, tasks_dir=tasks_dir))
    try:
        again = SweepRegistry(later).describe(SweepRegistry(later).get(sweep_id))
    finally:
        later.store.close()
    assert again["state"] == "completed" and again["best"] == sweep["best"]
    assert [t["task_id"] for t in again["trials"]] == [t["task_id"] for t in sweep["trials"]]

    status, listed = await api.call("GET", "sweeps")
    assert status == 200 and [s["sweep_id"] for s in listed["sweeps"]] == [sweep_id]
    status, body = await api.call("POST", "pause-sweep", sweep_id)
    assert status == 409 and "ended (completed)" in body["message"]
    assert (await api.call("GET", "sweep", "sweep_20200101_000000"))[0] == 404


async def test_pause_resume_and_stop_a_sweep_or_one_trial_and_resume_a_stopped_sweep(api, make_config):
    body = sweep_body(make_config, trials=3, parallel=1)
    body["config"]["epochs"] = 2000
    status, started = await api.call("POST", "sweep", body=body)
    assert status == 200, started
    sweep_id = started["sweep_id"]

    async def trials():
        return (await api.call("GET", "sweep", sweep_id))[1]["sweep"]["trials"]

    async def wait_for(check, what, timeout=120):
        found = None
        for _ in range(int(timeout / 0.1)):
            found = await trials()
            if check(found):
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {found}")

    found = await wait_for(lambda ts: ts and ts[0]["task_id"] and ts[0]["epochs"] >= 1, "the first trial's epoch")
    task_id = found[0]["task_id"]
    status, paused = await api.call("POST", "pause-sweep", sweep_id)
    assert status == 200 and paused["sweep"]["state"] == "paused"
    assert (await api.wait_for(task_id, lambda p: p["training_state"] == "paused"))["training_state"] == "paused"
    assert (await api.call("POST", "pause-sweep", sweep_id))[0] == 409            # already paused
    status, resumed = await api.call("POST", "resume-sweep", sweep_id)
    assert status == 200 and resumed["sweep"]["state"] == "running"
    await api.wait_for(task_id, lambda p: p["training_state"] == "running")

    # One trial through its task's own endpoints: the sweep hears of it.
    status, answer = await api.call("POST", "pause", task_id)
    assert status == 200 and answer["training_state"] == "paused", answer
    assert (await trials())[0]["state"] == "paused"
    status, answer = await api.call("POST", "resume", task_id)
    assert status == 200 and answer["training_state"] == "running", answer
    assert (await trials())[0]["state"] == "running"

    status, stopping = await api.call("POST", "stop-sweep", sweep_id)
    assert status == 200 and "Stop requested" in stopping["message"]
    events, _ = await api.stream(sweep_id, endpoint="stream-sweep")
    final = events[-1]["sweep"]
    assert events[-1]["type"] == "sweep_end" and final["state"] == "stopped"
    assert [t["state"] for t in final["trials"]] == ["stopped"] and "resume" in final["trials"][0]["reason"]
    assert (await api.wait_done(task_id))["training_state"] == "stopped"
    status, answer = await api.call("POST", "resume", task_id)
    assert status == 409 and f"resume-sweep/{sweep_id}" in answer["message"]

    # The stopped sweep continues: its interrupted trial resumes from its checkpoint in a new task,
    # which the user stops through the task's own endpoint; that trial ends stopped and the sweep
    # goes on with the next.
    epochs_then = final["trials"][0]["epochs"]
    status, again = await api.call("POST", "resume-sweep", sweep_id)
    assert status == 200 and again["sweep"]["state"] == "running", again
    found = await wait_for(lambda ts: ts[0]["task_id"] not in (None, task_id) and ts[0]["state"] == "running",
                           "the trial's new task")
    resumed_task = found[0]["task_id"]
    progress = await api.wait_for(resumed_task, lambda p: p["current_epoch"] > epochs_then)
    assert progress["training_state"] == "running"
    status, answer = await api.call("POST", "stop", resumed_task)
    assert status == 200, answer
    found = await wait_for(lambda ts: len(ts) == 2 and ts[1]["state"] == "running", "the next trial")
    assert found[0]["state"] == "stopped" and "resume" not in (found[0]["reason"] or "")
    assert (await api.call("POST", "stop-sweep", sweep_id))[0] == 200
    events, _ = await api.stream(sweep_id, endpoint="stream-sweep")
    assert events[-1]["sweep"]["state"] == "stopped"


BAD = [
    (lambda b: b["config"].update(output_path="/models/mine"), "config.output_path", "folder it chooses"),
    (lambda b: b["config"].update(mlflow_tracking_uri="http://x"), "config.mlflow_tracking_uri", "server decides"),
    (lambda b: b["config"].update(epochs=0), "config.epochs", ">= 1"),
    (lambda b: b["space"].update(nope={"distribution": "uniform", "low": 0, "high": 1}), "space.nope", "unknown field"),
    (lambda b: b["space"].update(seed={"distribution": "choice", "values": [1, 2]}), "space.seed", "cannot vary"),
    (lambda b: b["space"].update(dropout_rate={"distribution": "uniform", "low": 0.0, "high": 1.5}),
     "space.dropout_rate", "limit"),
    (lambda b: b["space"].update(learning_rate={"distribution": "normal", "low": 0, "high": 1}),
     "space.learning_rate", "log_uniform"),
    (lambda b: b.update(space={}), "space", "give an object"),
    (lambda b: b.update(trials=0), "trials", "whole number"),
    (lambda b: b.update(parallel=99), "parallel", "max_running_tasks"),
    (lambda b: b.update(metric="val_mae"), "metric", "classification"),
    (lambda b: b.update(extra=1), "extra", "unknown key"),
    (lambda b: b["config"].update(data_path="../outside.csv"), "data_path", "outside"),
]


async def test_a_bad_sweep_request_is_refused_naming_the_field_and_leaves_nothing(api, make_config, models_dir):
    for change, field, words in BAD:
        body = sweep_body(make_config)
        change(body)
        status, answer = await api.call("POST", "sweep", body=body)
        assert status == 400, answer
        assert any(e["field"] == field and words in e["message"] for e in answer["errors"]), answer
    assert not (models_dir / "sweeps").exists() or not any((models_dir / "sweeps").iterdir())
    assert (await api.call("GET", "tasks"))[1]["tasks"] == []
    assert (await api.call("GET", "sweeps"))[1]["sweeps"] == []
