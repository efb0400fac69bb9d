"""``python -m epoch_widgets.server`` serves the training API and nothing else: the token that
starts training never starts a kernel, reads a file or reaches another extension. The token comes
from the environment, never the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .api_only_server import api_only_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

# Jupyter's own endpoints and those of extensions installed with the package (JupyterLab, Voila,
# terminals): each would give the token's holder a shell, a file or a page.
NOT_SERVED = [("GET", "api/kernels"), ("POST", "api/kernels"), ("GET", "api/sessions"), ("POST", "api/sessions"),
              ("GET", "api/contents"), ("GET", "api/contents/data.csv"), ("PUT", "api/contents/planted.py"),
              ("GET", "files/data.csv"), ("GET", "view/data.csv"), ("GET", "api/terminals"),
              ("POST", "api/terminals"), ("GET", "lab"), ("GET", "tree"), ("GET", "voila"),
              ("GET", "api/kernelspecs"), ("GET", "kernelspecs/python3/logo-64x64.png"),
              ("GET", "nbconvert/html/data.csv"), ("GET", "api/nbconvert"), ("GET", "api/config/notebook"),
              ("GET", "api/resolvePath?path=data.csv"), ("POST", "api/shutdown"), ("GET", "api/events")]


@pytest.fixture
def server(tmp_path: Path):
    # A user config that enables other extensions, as `jupyter server extension enable` writes it:
    # the API-only server must not load them.
    enabled = {"ServerApp": {"jpserver_extensions": {
        "jupyterlab": True, "voila": True, "jupyter_server_terminals": True, "notebook_shim": True}}}
    with api_only_server(tmp_path, {"jupyter_server_config.json": json.dumps(enabled)}) as server:
        yield server


def test_the_api_alone_serves_no_kernels_files_or_other_extensions(server):
    for method, path in NOT_SERVED:
        response = requests.request(method, f"{server.url}/{path}", headers=server.headers, timeout=30,
                                    data="{}" if method in ("POST", "PUT") else None)
        assert response.status_code in (403, 404), (method, path, response.status_code, response.text[:200])
    assert not list(server.root_dir.glob("planted*")), "a PUT through the contents API wrote a file"
    # What the API-alone server does serve: the training API, and Jupyter's status for health checks.
    assert requests.get(f"{server.url}/api/status", headers=server.headers, timeout=30).status_code == 200
    assert requests.get(server.api_url("tasks"), headers=server.headers, timeout=30).status_code == 200


def test_the_token_comes_from_the_environment_and_a_task_trains_to_the_end(server, tmp_path):
    # Not on the command line, which every local user can read (ps, /proc/<pid>/cmdline) ...
    assert server.process is not None
    cmdline = (Path("/proc") / str(server.process.pid) / "cmdline").read_bytes().decode()
    assert server.token not in cmdline and server.token not in " ".join(server.command())
    # ... yet it is the server's token: with it the API answers, without it or with another it refuses.
    assert requests.get(server.api_url("tasks"), timeout=30).status_code in (401, 403)
    assert requests.get(server.api_url("tasks"), headers={"Authorization": "Bearer not-the-token"},
                        timeout=30).status_code in (401, 403)

    config = {"name": "API alone", "model_type": "mlp", "epochs": 3, "batch_size": 32, "learning_rate": 0.01,
              "hidden_units": [8], "feature_columns": ["f1", "f2", "f3"], "target_column": "label", "seed": 0,
              "device": "cpu", "data_path": "data.csv"}
    response = requests.post(server.api_url("start"), json=config, headers=server.headers, timeout=120)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + 120
    while True:
        progress = requests.get(server.api_url("progress", task_id), headers=server.headers, timeout=30).json()["progress"]
        if progress["training_state"] not in ("pending", "running"):
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)
    assert progress["training_state"] == "completed" and progress["current_epoch"] == 3, progress
    history = requests.get(server.api_url("history", task_id), headers=server.headers, timeout=30).json()["history"]
    assert [entry["epoch"] for entry in history] == [1, 2, 3]

    assert server.stop() == 0
    log = (tmp_path / "server.log").read_text()
    assert "epoch_widgets | extension was successfully loaded" in log
    assert "not loading the server extensions" in log and "jupyterlab" in log   # said, not done
    assert server.token not in log      # the printed URL shows '?token=...', never the token


def test_a_token_on_the_command_line_is_warned_about():
    result = subprocess.run([sys.executable, "-m", "epoch_widgets.server", "--IdentityProvider.token=visible", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "the token is on the command line" in result.stderr and "JUPYTER_TOKEN" in result.stderr
    quiet = subprocess.run([sys.executable, "-m", "epoch_widgets.server", "--help"], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "JUPYTER_TOKEN": "hidden"})
    assert "the token is on the command line" not in quiet.stderr
