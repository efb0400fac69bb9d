"""Where a task writes and connects is the server's decision: a request that names an MLflow
tracking location is refused (no file created, no connection made), tasks log to the store the
server's EpochTrainingApp.mlflow_tracking_uri names, and no answer, record or saved file holds the
credentials of a URI."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from traitlets.config import Config

pytestmark = [pytest.mark.server]

SECRET = "S3cretPW"


@pytest.fixture
def server_store(tmp_path: Path) -> Path:
    return tmp_path / "server-store"


@pytest.fixture
def jp_server_config(tasks_dir: Path, server_store: Path) -> Config:  # noqa: F811
    uri = "sqlite:///" + (server_store / "mlflow.db").as_posix()
    return Config({"ServerApp": {"jpserver_extensions": {"epoch_widgets": True}},
                   "EpochTrainingApp": {"tasks_dir": str(tasks_dir), "keepalive_interval": 0.3,
                                        "mlflow_tracking_uri": uri}})


@pytest.fixture
def listener() -> Iterator[dict[str, Any]]:
    """A TCP listener on 127.0.0.1 that counts the connections it receives."""
    seen = {"connections": 0}
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    seen["port"] = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            seen["connections"] += 1
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join(5)
    server.close()


def files_holding(folder: Path, needle: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


async def test_a_request_naming_a_store_is_refused_and_creates_nothing(api, make_config, tmp_path, tasks_dir):
    escape = tmp_path / "x" / "escape.db"
    status, body = await api.call("POST", "start", body=make_config(
        loggers=["mlflow"], output_path="/models/escape", mlflow_tracking_uri="sqlite:///" + escape.as_posix()))
    assert status == 400 and body["success"] is False
    [error] = body["errors"]
    assert error["field"] == "mlflow_tracking_uri"
    assert "--EpochTrainingApp.mlflow_tracking_uri=" in error["message"] and "administrator" in error["message"]
    assert "mlflow_tracking_uri" in body["message"]
    assert not escape.parent.exists()
    assert (await api.call("GET", "tasks"))[1]["tasks"] == []
    assert not tasks_dir.exists() or not any(tasks_dir.glob("*.json"))


async def test_a_request_cannot_make_the_server_connect_to_a_host_it_chose(api, make_config, listener):
    uri = f"http://alice:{SECRET}@127.0.0.1:{listener['port']}/probe"
    status, body = await api.call("POST", "start", body=make_config(loggers=["mlflow"], mlflow_tracking_uri=uri))
    assert status == 400 and body["errors"][0]["field"] == "mlflow_tracking_uri"
    assert SECRET not in json.dumps(body)
    await asyncio.sleep(1.0)     # a worker, had one started, would have connected by now
    assert listener["connections"] == 0


def test_the_start_request_schema_says_the_server_decides_the_tracking_store():
    from epoch_widgets.server.openapi import start_request_schema

    prop = start_request_schema()["properties"]["mlflow_tracking_uri"]
    assert prop["type"] == "null" and "--EpochTrainingApp.mlflow_tracking_uri" in prop["description"]


@pytest.mark.slow
async def test_tasks_log_to_the_servers_store_and_never_show_credentials(
        api, make_config, server_store, models_dir, tasks_dir):
    from mlflow.tracking import MlflowClient

    name = f"tracked http://alice:{SECRET}@example.org/"
    status, started = await api.call("POST", "start", body=make_config(
        name=name, epochs=2, loggers=["mlflow"], output_path="/models/tracked", mlflow_tracking_uri=None))
    assert status == 200, started
    task_id = started["task_id"]
    assert (await api.wait_done(task_id, timeout=300))["training_state"] == "completed"

    uri = "sqlite:///" + (server_store / "mlflow.db").as_posix()
    client = MlflowClient(uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "epoch-widgets"]
    [run] = client.search_runs([experiment.experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert run.data.params["mlflow_tracking_uri"] == uri
    assert (server_store / "artifacts").is_dir()          # beside the store, not in the server's folder
    assert not (models_dir / "mlruns").exists()

    _, task = await api.call("GET", "tasks", task_id)
    _, listing = await api.call("GET", "tasks")
    assert task["task"]["config"]["mlflow_tracking_uri"] is None
    assert task["task"]["config"]["name"] == "tracked http://***@example.org/"
    [summary] = listing["tasks"]
    assert summary["loggers"]["mlflow"]["tracking_uri"] == uri and summary["loggers"]["mlflow"]["run_id"] == run.info.run_id
    for answer in (started, task, listing):
        assert SECRET not in json.dumps(answer)
    assert files_holding(tasks_dir, SECRET) == [] and files_holding(models_dir, SECRET) == []
    assert SECRET not in str(run.data.params) + str(run.data.tags) + str(run.info.run_name)
