"""End to end: a real ``jupyter server`` process, driven by a plain requests + sseclient client, as docs/api.md shows.

The extension is not configured here: the auto-enable file installed with the package turns it
on, as in a user's JupyterLab.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests
import sseclient

from epoch_widgets.server.launch import BackgroundServer
from trainer import datasets

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def workdir(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    root.mkdir()
    datasets.make_classification(1000, features=3, seed=5).rename(
        columns={"f1": "feature1", "f2": "feature2", "f3": "feature3", "label": "target"}).to_csv(
        root / "train.csv", index=False)
    env_dirs = {name: tmp_path / name for name in ("config", "data", "runtime")}
    return {"root": root, "tasks": tmp_path / "tasks", **env_dirs}


def _server(workdir: dict[str, Path]) -> BackgroundServer:
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(workdir["config"]), "JUPYTER_DATA_DIR": str(workdir["data"]),
           "JUPYTER_RUNTIME_DIR": str(workdir["runtime"])}
    return BackgroundServer(workdir["root"], tasks_dir=workdir["tasks"], env=env, jupyter=True,
                            log_file=workdir["root"].parent / "server.log")


def test_a_client_flow_with_pause_resume_and_a_server_restart(workdir):
    server = _server(workdir).start(timeout=120)
    try:
        base_url = server.url
        headers = {"Authorization": f"Bearer {server.token}"}
        # --- a plain client, with a typical config (trimmed to train in seconds) ---
        config = {
            "name": "Deep learning model training", "algorithm_type": "deep_learning", "model_type": "mlp",
            "epochs": 8, "batch_size": 32, "learning_rate": 0.001, "hidden_units": [128, 64, 32],
            "dropout_rate": 0.2, "early_stopping_patience": 10, "learning_rate_scheduler": "step",
            "feature_columns": ["feature1", "feature2", "feature3"], "target_column": "target",
            "output_path": "/models/deep_learning_model", "data_path": "train.csv",
        }
        response = requests.post(f"{base_url}/api/v1/epoch-training/start", json=config, headers=headers)
        assert response.status_code == 200, response.text
        task_id = response.json()["task_id"]

        url = f"{base_url}/api/v1/epoch-training/stream-progress/{task_id}"
        client = sseclient.SSEClient(requests.get(url, stream=True, headers=headers))
        seen, states, paused, changes = [], [], False, []
        for event in client.events():
            data = json.loads(event.data)
            if data["type"] == "progress":
                progress = data["progress"]
                print(f"Epoch {progress['current_epoch']}: loss={progress['latest_metrics'].get('train_loss')}, "
                      f"accuracy={progress['latest_metrics'].get('train_accuracy')}")
                seen.append(progress["current_epoch"])
                if progress["current_epoch"] >= 2 and not paused:
                    paused = True
                    r = requests.post(f"{base_url}/api/v1/epoch-training/pause/{task_id}", headers=headers)
                    assert r.status_code == 200 and r.json()["training_state"] == "paused", r.text
                    held = requests.get(f"{base_url}/api/v1/epoch-training/progress/{task_id}", headers=headers).json()
                    time.sleep(0.5)
                    again = requests.get(f"{base_url}/api/v1/epoch-training/progress/{task_id}", headers=headers).json()
                    assert held["progress"]["training_state"] == again["progress"]["training_state"] == "paused"
                    assert again["progress"]["current_epoch"] == held["progress"]["current_epoch"]
                    # Steer it while paused: a lower rate and two more epochs (docs/api.md's example).
                    r = requests.post(f"{base_url}/api/v1/epoch-training/update/{task_id}", headers=headers,
                                      json={"learning_rate": 0.0005, "epochs": 10})
                    assert r.status_code == 200 and r.json()["training_state"] == "paused", r.text
                    assert r.json()["change"]["changes"]["epochs"] == {"old": 8, "new": 10}
                    r = requests.post(f"{base_url}/api/v1/epoch-training/resume/{task_id}", headers=headers)
                    assert r.status_code == 200 and r.json()["training_state"] == "running", r.text
            elif data["type"] == "state":
                states.append(data["new"])
            elif data["type"] == "config_change":
                changes.append(data["change"])
            elif data["type"] == "complete":
                print("Training complete:", data["best_metrics"])
                break
        assert data["type"] == "complete" and data["training_state"] == "completed"
        assert seen == list(range(seen[0], 11))
        assert "paused" in states and states[-1] == "completed"

        answer = requests.get(f"{base_url}/api/v1/epoch-training/history/{task_id}", headers=headers).json()
        history = answer["history"]
        assert [h["epoch"] for h in history] == list(range(1, 11))
        assert answer["config_changes"] == changes and len(changes) == 1
        assert history[-1]["learning_rate"] < 0.001
        assert (workdir["root"] / "models" / "deep_learning_model" / "metadata.json").exists()

        # A long task, then the server dies (SIGKILL): its worker notices and ends too.
        long_id = requests.post(f"{base_url}/api/v1/epoch-training/start", headers=headers,
                                json={**config, "epochs": 100_000, "output_path": None}).json()["task_id"]
        deadline = time.monotonic() + 120
        while requests.get(f"{base_url}/api/v1/epoch-training/progress/{long_id}",
                           headers=headers).json()["progress"]["current_epoch"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        workers = _children(server.process.pid)
        assert workers
        server.kill()
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.2)
    finally:
        server.stop()

    # The next server life still answers for both tasks.
    server = _server(workdir).start(timeout=120)
    try:
        headers = {"Authorization": f"token {server.token}"}
        done = requests.get(f"{server.url}/api/v1/epoch-training/progress/{task_id}", headers=headers).json()
        assert done["progress"]["training_state"] == "completed" and done["progress"]["current_epoch"] == 10
        again = requests.get(f"{server.url}/api/v1/epoch-training/history/{task_id}", headers=headers).json()
        assert again["history"] == history and again["config_changes"] == changes
        lost = requests.get(f"{server.url}/api/v1/epoch-training/progress/{long_id}", headers=headers).json()
        assert lost["progress"]["training_state"] == "interrupted" and "start it again" in lost["progress"]["error"]
        events = [json.loads(e.data) for e in sseclient.SSEClient(requests.get(
            f"{server.url}/api/v1/epoch-training/stream-progress/{long_id}", stream=True, headers=headers)).events()]
        assert [e["type"] for e in events] == ["progress", "error"]
    finally:
        assert server.stop() == 0          # a clean shutdown on SIGTERM
