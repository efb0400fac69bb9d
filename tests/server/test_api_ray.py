"""The HTTP API with EpochTrainingApp.executor = "ray": tasks train on Ray actors of a real local
Ray instance (one per module, two CPUs), and clients see what they see with local workers."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from tests.ray_cluster import actor_names
from epoch_widgets.server.launch import free_port
from trainer import Trainer, datasets, load_model
from trainer.ray_executor.actor import FOLDER_PREFIX

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.ray]

LONG = 100_000     # epochs for a run that only ends when told to
TIMING_KEYS = ("time_per_epoch",)


@pytest.fixture
def jp_server_config(tasks_dir: Path, ray_instance: Any) -> Config:  # noqa: F811
    return Config({"ServerApp": {"jpserver_extensions": {"epoch_widgets": True}},
                   "EpochTrainingApp": {"tasks_dir": str(tasks_dir), "keepalive_interval": 0.3, "executor": "ray"}})


def without_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


def live_actor_folders(folder: Path) -> list[Path]:
    """The temporary output folders in ``folder`` (the test Ray workers' TMPDIR) of actors whose
    process is still alive."""
    out = []
    for path in folder.glob(FOLDER_PREFIX + "*"):
        pid = int(path.name[len(FOLDER_PREFIX):].split("-")[0])
        if Path(f"/proc/{pid}").exists():
            out.append(path)
    return out


async def test_two_tasks_train_on_actors_at_once_and_stream_every_epoch(api, make_config, models_dir, extension,
                                                                    ray_workers_tmp):
    assert extension.executor == "ray"
    ids = [await api.start(make_config(epochs=5, output_path=f"/models/ray{i}", seed=i)) for i in range(2)]
    seen: dict[str, list[float]] = {task_id: [] for task_id in ids}

    async def watch(task_id: str) -> list[dict[str, Any]]:
        events, _ = await api.stream(task_id, lambda e: seen[task_id].append(time.monotonic()))
        return events

    streams = await asyncio.wait_for(asyncio.gather(*(watch(t) for t in ids)), 300)
    for task_id, events in zip(ids, streams):
        types = [e["type"] for e in events]
        assert types[0] == "progress" and types[-1] == "complete" and "error" not in types, types
        epochs = [e["progress"]["current_epoch"] for e in events if e["type"] == "progress"]
        # From where the client came in, every epoch once and in order: nothing lost, nothing twice.
        assert epochs == list(range(epochs[0], 6)), epochs
        assert events[-1]["training_state"] == "completed"
        status, body = await api.call("GET", "history", task_id)
        assert [h["epoch"] for h in body["history"]] == [1, 2, 3, 4, 5]
        assert events[-1]["best_metrics"] == (await api.progress(task_id))["best_metrics"]
    # Both were training at once: each stream's first event came before the other's last.
    first, second = (seen[t] for t in ids)
    assert first[0] < second[-1] and second[0] < first[-1]

    for i, task_id in enumerate(ids):
        out = models_dir / f"ray{i}"
        model = load_model(out)                           # the artifacts came back from the actor
        assert len(model.history) == 5
        assert json.loads((out / "config.json").read_text())["output_path"] == str(out)   # not the node's folder
        assert sorted(p.name for p in (out / "checkpoints").glob("ckpt-*.zip"))       # rotated as locally
        assert (out / "evaluation.json").is_file()
        status, body = await api.call("GET", "evaluation", task_id)
        assert status == 200 and body["evaluation"]["metrics"]["accuracy"] is not None
    # Each actor removes its folder once it has sent everything, which may be just after the task ended.
    deadline = time.monotonic() + 30
    while live_actor_folders(ray_workers_tmp) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert live_actor_folders(ray_workers_tmp) == []


async def test_a_streamed_parquet_folder_is_read_by_ray_data_on_the_cluster_to_the_local_streamed_history(
        api, make_config, jp_root_dir, tmp_path):
    df = datasets.make_classification(1200, seed=3)
    (jp_root_dir / "sets").mkdir()
    for i in range(3):
        df.iloc[i * 400:(i + 1) * 400].to_parquet(jp_root_dir / "sets" / f"part-{i}.parquet", index=False,
                                                  row_group_size=150)
    config = make_config(epochs=2, data_path="sets", streaming=True)
    task_id = await api.start(config)
    assert (await api.wait_done(task_id))["training_state"] == "completed"
    status, body = await api.call("GET", "history", task_id)
    assert status == 200, body
    local = Trainer({**config, "data_path": None}, str(jp_root_dir / "sets")).fit()
    assert without_timing(body["history"]) == without_timing(local.history)
    # A link taken in is refused by the actor, naming only the link.
    df.iloc[:10].to_parquet(tmp_path / "secret.parquet", index=False)
    (jp_root_dir / "sets" / "part-9.parquet").symlink_to(tmp_path / "secret.parquet")
    status, body = await api.call("POST", "start", body=config)
    assert status == 400 and "'sets/part-9.parquet' is a symbolic link" in body["message"], body


async def test_pause_resume_stop_are_actor_calls_that_take_effect(api, make_config, models_dir):
    task_id = await api.start(make_config(epochs=LONG, output_path="/models/ctl"))
    stream = asyncio.ensure_future(api.stream(task_id))
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 1)

    status, body = await api.call("POST", "pause", task_id)
    assert status == 200 and body["training_state"] == "paused", body
    paused = await api.progress(task_id)
    await asyncio.sleep(1.0)
    assert (await api.progress(task_id))["current_epoch"] == paused["current_epoch"]      # it holds
    assert (await api.call("POST", "pause", task_id))[0] == 409

    status, body = await api.call("POST", "resume", task_id)
    assert status == 200 and body["training_state"] == "running", body
    await api.wait_for(task_id, lambda p: p["current_epoch"] > paused["current_epoch"])

    status, body = await api.call("POST", "stop", task_id)
    assert status == 200 and body["training_state"] == "stopped", body
    events, _ = await asyncio.wait_for(stream, 120)
    states = [e["new"] for e in events if e["type"] == "state"]
    assert states[:2] == ["paused", "running"] and states[-1] == "stopped", states
    assert events[-1]["type"] == "complete" and events[-1]["training_state"] == "stopped"
    final = await api.progress(task_id)
    assert load_model(models_dir / "ctl").history[-1]["epoch"] == final["current_epoch"]   # artifacts at stop


async def test_a_task_on_an_actor_is_steered_through_the_api_and_the_change_is_recorded(api, make_config, models_dir):
    task_id = await api.start(make_config(epochs=LONG, learning_rate_scheduler="none", output_path="/models/steer"))
    done = (await api.pause_after_an_epoch(task_id))["progress"]["current_epoch"]
    status, body = await api.call("POST", "update", task_id, body={"learning_rate": 0.002, "epochs": done + 2})
    assert status == 200, body
    change = body["change"]
    assert change["changes"]["epochs"] == {"old": LONG, "new": done + 2} and change["epoch"] == done + 1
    assert body["progress"]["config_changes"] == [change] and body["progress"]["total_epochs"] == done + 2
    status, body = await api.call("POST", "update", task_id, body={"model_type": "cnn"})
    assert status == 400 and "model_type" in body["message"]
    assert (await api.call("POST", "resume", task_id))[0] == 200
    final = await api.wait_done(task_id)
    assert final["training_state"] == "completed" and final["current_epoch"] == done + 2
    status, body = await api.call("GET", "history", task_id)
    assert body["config_changes"] == [change]
    assert [h["learning_rate"] for h in body["history"]][done:] == [0.002, 0.002]
    assert load_model(models_dir / "steer").history == body["history"]     # the actor's artifacts came back


async def test_a_sweeps_trials_train_as_tasks_on_actors(api, make_config):
    space = {"learning_rate": {"distribution": "choice", "values": [0.001, 0.01]}}
    body = {"config": make_config(epochs=2), "space": space, "trials": 2, "parallel": 2, "sampler": "grid",
            "pruner": None, "seed": 1}
    status, started = await api.call("POST", "sweep", body=body)
    assert status == 200, started
    sweep_id = started["sweep_id"]
    events, _ = await asyncio.wait_for(api.stream(sweep_id, endpoint="stream-sweep"), 300)
    assert events[-1]["type"] == "sweep_end" and events[-1]["sweep"]["state"] == "completed", events[-1]
    status, body = await api.call("GET", "sweep", sweep_id)
    trials = body["sweep"]["trials"]
    assert sorted(t["params"]["learning_rate"] for t in trials) == [0.001, 0.01]
    assert all(t["state"] == "completed" and t["epochs"] == 2 for t in trials), trials
    for trial in trials:                       # each trial's actor sent its run back to the server's folder
        status, history = await api.call("GET", "history", trial["task_id"])
        assert status == 200 and [h["epoch"] for h in history["history"]] == [1, 2]


async def test_a_killed_actor_fails_the_task_and_resume_continues_to_the_uninterrupted_history(
        api, make_config, models_dir, ray_instance):  # noqa: F811
    config = make_config(epochs=8, output_path="/models/killed", checkpoint_every_epochs=1)
    task_id = await api.start(config)
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 3)
    [name] = actor_names(ray_instance, task_id)
    ray_instance.kill(ray_instance.get_actor(name, namespace="epoch-widgets"))

    failed = await api.wait_done(task_id)
    assert failed["training_state"] == "failed", failed
    assert "Ray actor" in failed["error"] and "ray.kill" in failed["error"], failed["error"]
    status, body = await api.call("GET", "history", task_id)
    kept = body["history"]
    assert len(kept) >= 3                                  # the history survives the actor
    assert (models_dir / "killed" / "checkpoints").is_dir()

    status, body = await api.call("POST", "resume", task_id)
    assert status == 200 and "resumed from its checkpoint" in body["message"], body
    done = await api.wait_done(task_id)
    assert done["training_state"] == "completed", done
    status, body = await api.call("GET", "history", task_id)
    resumed = body["history"]

    reference = await api.start({**config, "output_path": "/models/reference"})
    assert (await api.wait_done(reference))["training_state"] == "completed"
    status, body = await api.call("GET", "history", reference)
    assert without_timing(resumed) == without_timing(body["history"])
    assert without_timing(resumed[:len(kept)]) == without_timing(kept)


async def test_a_server_shutdown_stops_the_actors_and_keeps_what_they_wrote(
        api, make_config, models_dir, extension, ray_instance):  # noqa: F811
    task_id = await api.start(make_config(epochs=LONG, output_path="/models/shutdown"))
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 1)
    registry = extension.registry
    await extension.stop_extension()          # the actor stops its run and sends its artifacts back
    task = registry.get(task_id)
    assert task.state == "interrupted" and f"POST resume/{task_id}" in task.reason
    assert load_model(models_dir / "shutdown").history[-1]["epoch"] == task.progress["current_epoch"]
    deadline = time.monotonic() + 60
    while actor_names(ray_instance, task_id):
        assert time.monotonic() < deadline, "the actor was not released"
        await asyncio.sleep(0.2)


async def test_overwrite_replaces_the_checkpoints_on_the_server_only_once_the_new_run_starts(
        api, make_config, models_dir):
    first = await api.start(make_config(epochs=4, output_path="/models/ow"))
    await api.wait_done(first)
    folder = models_dir / "ow" / "checkpoints"
    before = sorted(p.name for p in folder.iterdir())
    assert (await api.call("POST", "start", body=make_config(epochs=3, output_path="/models/ow")))[0] == 409
    # Refused by the actor (no such column): the earlier run's checkpoints stay.
    status, body = await api.call("POST", "start", body={**make_config(epochs=3, output_path="/models/ow",
                                                                       feature_columns=["nope"]), "overwrite": True})
    assert status == 400 and body["errors"][0]["field"] == "feature_columns", body
    assert sorted(p.name for p in folder.iterdir()) == before

    second = await api.start({**make_config(epochs=2, output_path="/models/ow"), "overwrite": True})
    assert (await api.wait_done(second))["training_state"] == "completed"
    # Only the new run's checkpoints (the old run's epochs 3 and 4 would outrank them on a resume).
    assert sorted(p.name for p in folder.glob("ckpt-*")) == ["ckpt-000001-000000.zip", "ckpt-000002-000000.zip"]
    assert load_model(models_dir / "ow").history[-1]["epoch"] == 2


async def test_a_config_asking_for_gpus_the_cluster_lacks_is_refused_naming_device(api, make_config):
    status, body = await api.call("POST", "start", body=make_config(device="cuda", output_path="/models/gpu"))
    assert status == 400, body
    [error] = body["errors"]
    assert error["field"] == "device" and "GPU" in error["message"] and "cluster" in error["message"]
    assert (await api.call("GET", "tasks"))[1]["tasks"] == []       # a refused start leaves no task


def test_an_unreachable_cluster_stops_the_server_at_start_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "epoch_widgets.server", "--port", str(free_port()), "--allow-root",
                           f"--ServerApp.root_dir={tmp_path}", "--EpochTrainingApp.executor=ray",
                           f"--EpochTrainingApp.ray_address=127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in proc.stderr, proc.stderr[-2000:]
    assert "ray start --head" in proc.stderr
    assert time.monotonic() - started < 100


def _processes_under(folder: str) -> list[str]:
    """The live processes whose command line names ``folder`` (a Ray instance's temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if folder in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_a_server_that_starts_its_own_ray_trains_tasks_and_leaves_no_ray_process(tmp_path: Path) -> None:
    """As a user runs it: a fresh server with executor='ray' and no ray_address starts a local Ray
    instance (none runs before), which must outlive the thread that started it."""
    import urllib.request

    from trainer import datasets

    datasets.make_classification(300, seed=3).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "sets").mkdir()         # the second task streams a folder of Parquet files with Ray Data
    for i in range(2):
        datasets.make_classification(300, seed=4 + i).to_parquet(tmp_path / "sets" / f"p{i}.parquet", index=False)
    # Ray's own folder, short (socket paths) and ours: its processes name it on their command lines.
    ray_tmp = tempfile.mkdtemp(prefix="ewray-", dir="/tmp")
    port, token = free_port(), "t0ken"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "RAY_TMPDIR": ray_tmp, "TMPDIR": ray_tmp,
           "RAY_memory_monitor_refresh_ms": "0"}
    env.pop("RAY_ADDRESS", None)
    log_file = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "epoch_widgets.server", "--port", str(port), "--allow-root",
                               f"--ServerApp.root_dir={tmp_path}", f"--IdentityProvider.token={token}",
                               f"--EpochTrainingApp.tasks_dir={tmp_path / 'tasks'}",
                               "--EpochTrainingApp.executor=ray"], env=env, stdout=log_file, stderr=log_file)
    base = f"http://127.0.0.1:{port}/api/v1/epoch-training/"

    def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
        request = urllib.request.Request(base + path, method=method, headers={"Authorization": f"token {token}"},
                                         data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 150
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                call("GET", "tasks")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(0.5)
        time.sleep(3)       # the instance's processes died within about 2 s of its start before the fix
        assert _processes_under(ray_tmp), "the server's Ray instance is not running"
        config = {"name": "own ray", "algorithm_type": "deep_learning", "model_type": "mlp", "epochs": 2,
                  "batch_size": 32, "hidden_units": [8], "feature_columns": ["f1", "f2", "f3"],
                  "target_column": "label", "seed": 0, "device": "cpu", "data_path": "data.csv"}
        ids = [call("POST", "start", body)["task_id"]
               for body in (config, {**config, "data_path": "sets", "streaming": True})]
        for task_id in ids:
            while (progress := call("GET", f"progress/{task_id}")["progress"])["training_state"] in (
                    "pending", "running"):
                assert time.monotonic() < deadline + 150, progress
                time.sleep(0.2)
            assert progress["training_state"] == "completed", progress
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        # Ray's processes end with the server: none of the instance it started is left.
        left = _processes_under(ray_tmp)
        for _ in range(50):
            if not left:
                break
            time.sleep(0.2)
            left = _processes_under(ray_tmp)
        assert left == [], left
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log_file.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
