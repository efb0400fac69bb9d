"""docs/security.md's Authorizer example, run as written: its config file, read by a real
``python -m epoch_widgets.server``, gives a second token that may watch training but not change it."""
from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import pytest
import requests

from .api_only_server import api_only_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def authorizer_example() -> str:
    section = DOC.read_text().split("### An Authorizer", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/security.md has no python block under '### An Authorizer'"
    return match.group(1)


@pytest.fixture
def server(tmp_path: Path):
    viewer = secrets.token_hex(16)
    with api_only_server(tmp_path, {"jupyter_server_config.py": authorizer_example()}, seed=4,
                         env={"TRAINING_VIEWER_TOKEN": viewer}) as server:
        server.viewer_headers = {"Authorization": f"Bearer {viewer}"}   # type: ignore[attr-defined]
        yield server


def test_the_documented_viewer_token_reads_but_cannot_start_or_stop(server):
    operator, viewer = server.headers, server.viewer_headers
    # Far more epochs than the test lasts: the task is still running when the viewer tries to stop it.
    config = {"name": "watched", "model_type": "mlp", "epochs": 100_000, "batch_size": 32, "hidden_units": [8],
              "feature_columns": ["f1", "f2", "f3"], "target_column": "label", "device": "cpu",
              "data_path": "data.csv"}
    refused = requests.post(server.api_url("start"), json=config, headers=viewer, timeout=60)
    assert refused.status_code == 403, refused.text
    assert "not authorized to write on resource: epoch_training" in refused.json()["message"]
    assert requests.get(server.api_url("tasks"), headers=viewer, timeout=30).json()["tasks"] == []

    started = requests.post(server.api_url("start"), json=config, headers=operator, timeout=120)
    assert started.status_code == 200, started.text
    task_id = started.json()["task_id"]
    for parts in (("tasks",), ("tasks", task_id), ("progress", task_id), ("history", task_id)):
        response = requests.get(server.api_url(*parts), headers=viewer, timeout=30)
        assert response.status_code == 200, (parts, response.text)
    for action in ("pause", "stop"):
        response = requests.post(server.api_url(action, task_id), headers=viewer, timeout=30)
        assert response.status_code == 403, (action, response.text)
    assert requests.delete(server.api_url("tasks", task_id), headers=viewer, timeout=30).status_code == 403
    # The viewer reads training tasks only: none of Jupyter's other resources.
    assert requests.get(f"{server.url}/api/status", headers=viewer, timeout=30).status_code == 403
    assert requests.get(f"{server.url}/api/status", headers=operator, timeout=30).status_code == 200

    progress = requests.get(server.api_url("progress", task_id), headers=viewer, timeout=30).json()["progress"]
    assert progress["training_state"] in ("pending", "running"), progress
    response = requests.post(server.api_url("stop", task_id), headers=operator, timeout=60)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 60
    while progress["training_state"] in ("pending", "running"):
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)
        progress = requests.get(server.api_url("progress", task_id), headers=viewer, timeout=30).json()["progress"]
    assert progress["training_state"] == "stopped", progress
