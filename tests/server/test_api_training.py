"""Training through the API: the full flow, the event stream, control, crashes, ids, persistence."""
from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import datetime

import pytest

from epoch_widgets.server.ids import is_task_id
from epoch_widgets.server.registry import TaskRegistry
from trainer import load_model

from .conftest import API_METRICS, API_PROGRESS

pytestmark = pytest.mark.server

LONG = 100_000   # epochs for a run that only ends when told to


async def test_full_run_start_progress_pause_resume_complete_history(api, make_config, models_dir, tasks_dir):
    status, started = await api.call("POST", "start", body=make_config(epochs=12, output_path="/models/flow"))
    assert status == 200, started
    task_id = started["task_id"]
    assert started["success"] is True and started["message"] == "Epoch training started"
    assert is_task_id(task_id) and task_id.startswith("epoch_training_")
    assert started["config"]["epochs"] == 12 and started["config"]["hidden_units"] == [16, 8]
    assert started["config"]["output_path"] == "/models/flow"           # as the client gave it
    assert started["output_dir"] == "/models/flow"                        # where it landed, never the server path

    status, body = await api.call("POST", "resume", task_id)
    assert status == 409 and "not paused" in body["message"]

    status, body = await api.call("POST", "pause", task_id)
    assert status == 200 and body["training_state"] == "paused", body
    paused = await api.progress(task_id)
    assert API_PROGRESS <= paused.keys() and paused["training_state"] == "paused"
    await asyncio.sleep(0.5)
    assert (await api.progress(task_id))["current_epoch"] == paused["current_epoch"] < 12
    assert (await api.call("POST", "pause", task_id))[0] == 409                 # already paused
    status, body = await api.call("DELETE", "tasks", task_id)
    assert status == 409 and "stop it first" in body["message"]

    status, body = await api.call("POST", "resume", task_id)
    assert status == 200 and body["training_state"] == "running", body

    events, _ = await api.stream(task_id)                # runs until "complete"
    assert events[0]["type"] == "progress" and events[-1]["type"] == "complete"
    final = await api.progress(task_id)
    assert final["training_state"] == "completed" and final["current_epoch"] == 12
    assert final["latest_metrics"]["epoch"] == 12 and API_METRICS <= final["latest_metrics"].keys()
    assert {"loss", "accuracy"} <= final["best_metrics"].keys()
    assert events[-1]["training_state"] == "completed" and events[-1]["best_metrics"] == final["best_metrics"]

    status, body = await api.call("GET", "history", task_id)
    assert status == 200 and body["task_id"] == task_id
    history = body["history"]
    assert [h["epoch"] for h in history] == list(range(1, 13))
    assert all(API_METRICS <= h.keys() for h in history)
    assert history[0]["learning_rate"] == pytest.approx(0.005) and history[3]["learning_rate"] == pytest.approx(0.0025)

    for action in ("pause", "resume", "stop"):
        status, body = await api.call("POST", action, task_id)
        assert status == 409 and "already ended (completed)" in body["message"], body

    model = load_model(models_dir / "flow")                           # the artifacts are usable
    assert len(model.history) == 12

    # A client that comes after the end gets the progress, then "complete", and the stream closes.
    events, _ = await api.stream(task_id)
    assert [e["type"] for e in events] == ["progress", "complete"]
    assert events[0]["progress"]["current_epoch"] == 12

    status, body = await api.call("GET", "tasks")
    assert [t["task_id"] for t in body["tasks"]] == [task_id] and body["tasks"][0]["watchers"] == 0
    status, body = await api.call("DELETE", "tasks", task_id)
    assert status == 200 and body["success"] is True
    assert (await api.call("GET", "progress", task_id))[0] == 404
    assert (models_dir / "flow" / "metadata.json").exists()          # deleting keeps the model
    for _ in range(100):
        if not (tasks_dir / f"{task_id}.json").exists():
            break
        await asyncio.sleep(0.05)
    assert not (tasks_dir / f"{task_id}.json").exists()


async def test_stream_sends_every_epoch_state_changes_keepalives_and_complete(api, make_config):
    task_id = await api.start(make_config(epochs=8))
    paused_once = asyncio.Event()

    def on_event(event):
        if event["type"] == "progress" and event["progress"]["current_epoch"] >= 3 and not paused_once.is_set():
            paused_once.set()

    reader = asyncio.ensure_future(api.stream(task_id, on_event))
    await asyncio.wait_for(paused_once.wait(), 120)
    assert (await api.call("POST", "pause", task_id))[0] == 200
    await asyncio.sleep(1.0)                     # idle while paused: keepalives (interval 0.3 s)
    assert (await api.call("POST", "resume", task_id))[0] == 200
    events, lines = await asyncio.wait_for(reader, 120)

    assert ": keepalive" in lines
    kinds = [e["type"] for e in events]
    assert kinds[0] == "progress" and kinds[-1] == "complete" and kinds.count("complete") == 1
    epochs = [e["progress"]["current_epoch"] for e in events[1:] if e["type"] == "progress"]
    first = events[0]["progress"]["current_epoch"]
    assert epochs == list(range(first + 1, 9))          # one event per epoch, none lost or repeated
    states = [e["new"] for e in events if e["type"] == "state"]
    assert states[-3:] == ["paused", "running", "completed"]
    assert events[-1]["best_metrics"]["epoch"] >= 1 and events[-1]["progress"]["current_epoch"] == 8


async def test_late_clients_start_from_the_current_progress_and_leave_no_watchers(api, make_config):
    task_id = await api.start(make_config(epochs=LONG))
    progress = await api.wait_for(task_id, lambda p: p["current_epoch"] >= 2)
    assert (await api.call("POST", "pause", task_id))[0] == 200

    readers = [asyncio.ensure_future(api.stream(task_id)) for _ in range(4)]
    for _ in range(200):
        tasks = (await api.call("GET", "tasks"))[1]["tasks"]
        if tasks[0]["watchers"] == 4:
            break
        await asyncio.sleep(0.05)
    assert tasks[0]["watchers"] == 4
    status, body = await api.call("POST", "stop", task_id)
    assert status == 200 and body["training_state"] == "stopped", body
    results = await asyncio.wait_for(asyncio.gather(*readers), 60)
    for events, _ in results:
        assert events[0]["type"] == "progress" and events[0]["progress"]["current_epoch"] >= progress["current_epoch"]
        assert events[-1]["type"] == "complete" and events[-1]["training_state"] == "stopped"
    assert (await api.call("GET", "tasks"))[1]["tasks"][0]["watchers"] == 0


async def test_disconnected_stream_clients_are_unsubscribed(api, make_config, jp_serverapp, http_server_client, jp_base_url):
    task_id = await api.start(make_config(epochs=LONG))
    assert (await api.call("POST", "pause", task_id))[0] == 200
    port = http_server_client.get_http_port()
    token = jp_serverapp.identity_provider.token
    path = f"{jp_base_url}api/v1/epoch-training/stream-progress/{task_id}"
    connections = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"data: "), 30)
        assert b"200 OK" in head and b"text/event-stream" in head
        connections.append(writer)

    async def watchers() -> int:
        return (await api.call("GET", "tasks"))[1]["tasks"][0]["watchers"]

    assert await watchers() == 3
    for writer in connections:
        writer.close()
    for _ in range(200):
        if await watchers() == 0:
            break
        await asyncio.sleep(0.05)
    assert await watchers() == 0          # well before the next keepalive or event would notice
    assert (await api.call("POST", "stop", task_id))[0] == 200


@pytest.mark.parametrize("sig, words", [(signal.SIGKILL, "SIGKILL"), (signal.SIGSEGV, "SIGSEGV")])
async def test_a_crashed_worker_fails_its_task_and_the_server_carries_on(api, make_config, extension, sig, words):
    task_id = await api.start(make_config(epochs=LONG))
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 1)
    reader = asyncio.ensure_future(api.stream(task_id))
    await asyncio.sleep(0.2)
    os.kill(extension.registry.get(task_id).gen.pid, sig)     # what the OOM killer / a segfault does

    events, _ = await asyncio.wait_for(reader, 60)
    assert events[-1]["type"] == "error" and words in events[-1]["message"]
    progress = await api.progress(task_id)
    assert progress["training_state"] == "failed" and words in progress["error"]
    assert progress["current_epoch"] >= 1
    assert len((await api.call("GET", "history", task_id))[1]["history"]) == progress["current_epoch"]
    status, body = await api.call("POST", "resume", task_id)
    assert status == 409
    # The server still trains new tasks.
    other = await api.start(make_config(epochs=2))
    assert (await api.wait_done(other))["training_state"] == "completed"


async def test_ids_never_collide_and_running_tasks_are_limited(api, make_config, extension):
    registry = extension.registry
    registry.ids._clock = lambda: datetime(2024, 1, 1, 12, 0, 0)    # every start in the same second
    registry.settings.max_running_tasks = 3
    results = await asyncio.gather(*(api.call("POST", "start", body=make_config(epochs=LONG, output_path=f"m{i}"))
                                     for i in range(3)))
    assert [status for status, _ in results] == [200, 200, 200], results
    ids = sorted(body["task_id"] for _, body in results)
    assert ids == ["epoch_training_20240101_120000", "epoch_training_20240101_120000_2",
                   "epoch_training_20240101_120000_3"]

    status, body = await api.call("POST", "start", body=make_config(epochs=2))
    assert status == 429 and "max_running_tasks" in body["message"]
    registry.settings.max_running_tasks = 8
    status, body = await api.call("POST", "start", body=make_config(epochs=2, output_path="m1"))
    assert status == 409 and "output_path" in body["message"]       # two runs, one folder

    for task_id in ids:
        status, body = await api.call("POST", "stop", task_id)
        assert status == 200 and body["training_state"] == "stopped"


async def test_records_survive_a_restart_and_running_tasks_become_interrupted(api, make_config, extension, tasks_dir):
    finished = await api.start(make_config(epochs=3))
    await api.wait_done(finished)
    running = await api.start(make_config(epochs=LONG))
    await api.wait_for(running, lambda p: p["current_epoch"] >= 1)
    registry = extension.registry
    for _ in range(600):          # epoch updates reach the record within save_interval (1 s)
        record = json.loads((tasks_dir / f"{running}.json").read_text())
        if record["history"]:
            break
        await asyncio.sleep(0.05)
    assert record["state"] == "running" and record["history"]

    # A second server life reading the same records while the first still trains (as after a crash).
    reborn = TaskRegistry(registry.settings)
    try:
        done = reborn.get(finished)
        assert done.state == "completed" and [h["epoch"] for h in done.history] == [1, 2, 3]
        assert done.progress_snapshot()["best_metrics"] == (await api.progress(finished))["best_metrics"]
        lost = reborn.get(running)
        assert lost.state == "interrupted" and "server stopped while the task was running" in lost.error
        assert len(lost.history) == lost.progress["current_epoch"] >= 1
        assert reborn.ids.allocate() not in (finished, running)
    finally:
        await asyncio.to_thread(reborn.store.close)

    # A clean shutdown stops the worker and records the task as interrupted.
    await extension.stop_extension()
    record = json.loads((tasks_dir / f"{running}.json").read_text())
    assert record["state"] == "interrupted" and "shut down" in record["reason"]
    assert not registry.get(running).gen.alive


@pytest.mark.tensorflow
@pytest.mark.slow
async def test_a_tensorflow_task_trains_and_controls_like_a_torch_one(api, make_config, models_dir):
    task_id = await api.start(make_config(backend="tensorflow", epochs=4, output_path="tf"))
    assert (await api.call("POST", "pause", task_id))[1]["training_state"] == "paused"
    assert (await api.call("POST", "resume", task_id))[1]["training_state"] == "running"
    events, _ = await api.stream(task_id)
    assert events[-1]["type"] == "complete" and events[-1]["training_state"] == "completed"
    history = (await api.call("GET", "history", task_id))[1]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and all(API_METRICS <= h.keys() for h in history)
    assert load_model(models_dir / "tf").metadata["backend"] == "tensorflow"


@pytest.mark.parametrize("name", ["data.csv.gz", "data.tsv"])
async def test_compressed_csv_and_tsv_files_train(api, make_config, jp_root_dir, name):
    # The server's path check and its workers' reader are trainer.data.tables: same files accepted.
    from trainer import datasets
    datasets.make_classification(400, seed=3).to_csv(jp_root_dir / name, index=False,
                                                      sep="\t" if name.endswith(".tsv") else ",")
    task_id = await api.start(make_config(epochs=2, data_path=name))
    assert (await api.wait_done(task_id))["training_state"] == "completed"
