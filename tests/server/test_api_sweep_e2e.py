"""End to end: a sweep through a real ``jupyter server`` process with a plain requests + sseclient
client, as docs/api.md shows; a sweep the server's shutdown interrupts, read back and continued by
the next server life."""
from __future__ import annotations

import json
import time

import pytest
import requests
import sseclient

from .test_api_e2e import _server, workdir  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_a_documented_sweep_and_one_continued_after_a_server_restart(workdir):  # noqa: F811
    config = {"model_type": "mlp", "epochs": 2, "batch_size": 64, "hidden_units": [16],
              "feature_columns": ["feature1", "feature2", "feature3"], "target_column": "target",
              "data_path": "train.csv", "device": "cpu"}
    server = _server(workdir).start(timeout=120)
    try:
        api, headers = f"{server.url}/api/v1/epoch-training", {"Authorization": f"Bearer {server.token}"}
        body = {"config": config,
                "space": {"learning_rate": {"distribution": "log_uniform", "low": 0.0001, "high": 0.1},
                          "hidden_units": {"distribution": "choice", "values": [[16], [32, 16]]}},
                "trials": 2, "parallel": 2, "metric": "val_loss", "sampler": "tpe", "pruner": "median"}
        response = requests.post(f"{api}/sweep", json=body, headers=headers)
        assert response.status_code == 200, response.text
        sweep_id = response.json()["sweep_id"]
        client = sseclient.SSEClient(requests.get(f"{api}/stream-sweep/{sweep_id}", stream=True, headers=headers))
        ended = []
        for event in client.events():
            data = json.loads(event.data)
            if data["type"] == "trial_end":
                ended.append((data["trial"], data["state"], data["task_id"]))
            elif data["type"] == "sweep_end":
                best = data["sweep"]["best"]
                break
        assert sorted(n for n, _s, _t in ended) == [0, 1] and all(s == "completed" for _n, s, _t in ended)
        assert best["task_id"] in {t for _n, _s, t in ended}
        listed = requests.get(f"{api}/tasks", params={"sweep_id": sweep_id}, headers=headers).json()["tasks"]
        assert {t["task_id"] for t in listed} == {t for _n, _s, t in ended}

        # A long sweep, interrupted by the server's shutdown.
        long = {**body, "config": {**config, "epochs": 100_000}, "trials": 2, "parallel": 1}
        long_id = requests.post(f"{api}/sweep", json=long, headers=headers).json()["sweep_id"]
        deadline = time.monotonic() + 120
        while not any(t["epochs"] >= 1 for t in requests.get(f"{api}/sweep/{long_id}",
                                                             headers=headers).json()["sweep"]["trials"]):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        server.stop()

    server = _server(workdir).start(timeout=120)
    try:
        api, headers = f"{server.url}/api/v1/epoch-training", {"Authorization": f"token {server.token}"}
        sweeps = {s["sweep_id"]: s for s in requests.get(f"{api}/sweeps", headers=headers).json()["sweeps"]}
        assert sweeps[sweep_id]["state"] == "completed" and sweeps[long_id]["state"] == "stopped"
        response = requests.post(f"{api}/resume-sweep/{long_id}", headers=headers)
        assert response.status_code == 200 and response.json()["sweep"]["state"] == "running", response.text
        deadline = time.monotonic() + 120
        while True:
            trials = requests.get(f"{api}/sweep/{long_id}", headers=headers).json()["sweep"]["trials"]
            if any(t["state"] == "running" and t["epochs"] >= 1 for t in trials):
                break
            assert time.monotonic() < deadline, trials
            time.sleep(0.2)
        assert requests.post(f"{api}/stop-sweep/{long_id}", headers=headers).status_code == 200
        client = sseclient.SSEClient(requests.get(f"{api}/stream-sweep/{long_id}", stream=True, headers=headers))
        last = [json.loads(e.data) for e in client.events()][-1]
        assert last["type"] == "sweep_end" and last["sweep"]["state"] == "stopped"
    finally:
        server.stop()
