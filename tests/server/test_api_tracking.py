"""The task list as a team's run list: filters by state and name, and each task's logger locations
(relative to the models directory, never absolute server paths)."""
from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import API

pytestmark = [pytest.mark.server, pytest.mark.slow]


async def tasks(api, *params: tuple[str, str]) -> tuple[int, dict]:
    """GET tasks with query parameters (a parameter may repeat)."""
    try:
        response = await api.fetch(*API, "tasks", params=list(params), request_timeout=120)
    except HTTPClientError as exc:
        response = exc.response
    return response.code, json.loads(response.body)


async def test_tasks_filter_by_state_and_name_and_link_their_loggers(api, make_config, models_dir):
    tracked = await api.start(make_config(name="Alpha tracked", epochs=3, output_path="/models/alpha",
                                          loggers=["tensorboard", "mlflow"]))
    plain = await api.start(make_config(name="beta plain", epochs=100_000))
    assert (await api.wait_done(tracked, timeout=300))["training_state"] == "completed"
    await api.wait_for(plain, lambda p: p["current_epoch"] >= 1)

    status, body = await tasks(api)
    assert status == 200 and [t["task_id"] for t in body["tasks"]] == [tracked, plain]
    status, body = await tasks(api, ("state", "completed"))
    assert status == 200 and [t["task_id"] for t in body["tasks"]] == [tracked]
    status, body = await tasks(api, ("state", "running,paused"))
    assert [t["task_id"] for t in body["tasks"]] == [plain]
    status, body = await tasks(api, ("state", "completed"), ("state", "running"))
    assert [t["task_id"] for t in body["tasks"]] == [tracked, plain]
    status, body = await tasks(api, ("name", "ALPHA"))
    assert [t["task_id"] for t in body["tasks"]] == [tracked]
    status, body = await tasks(api, ("name", "plain"), ("state", "completed"))
    assert status == 200 and body["tasks"] == []

    status, body = await tasks(api, ("state", "done,running"))
    assert status == 400 and body["success"] is False
    assert "'done'" in body["message"] and "completed" in body["message"] and "interrupted" in body["message"]
    assert body["errors"][0]["field"] == "state"

    status, body = await tasks(api, ("state", "completed"))
    summary = body["tasks"][0]
    loggers = summary["loggers"]
    assert loggers["tensorboard"] == "alpha/tensorboard"
    assert (models_dir / loggers["tensorboard"]).is_dir()
    mlflow = loggers["mlflow"]
    assert mlflow["tracking_uri"] == "sqlite:///mlruns/mlflow.db"       # relative to the models directory
    assert mlflow["run_id"] and mlflow["experiment_id"]
    assert str(models_dir.resolve()) not in json.dumps(body)
    from mlflow.tracking import MlflowClient

    client = MlflowClient("sqlite:///" + (models_dir / "mlruns" / "mlflow.db").as_posix())
    assert [m.step for m in client.get_metric_history(mlflow["run_id"], "val_loss")] == [1, 2, 3]
    status, body = await tasks(api, ("name", "beta"))
    assert "loggers" not in body["tasks"][0]
    assert (await api.call("POST", "stop", plain))[0] == 200
    await api.wait_done(plain)


async def test_failing_loggers_are_reported_in_the_task_and_not_linked(api, make_config, models_dir, extension):
    import socket

    with socket.socket() as s:          # a port nothing listens on: the tracking server is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Over the API the tracking server is the server's setting (EpochTrainingApp.mlflow_tracking_uri).
    extension.registry.settings.mlflow_tracking_uri = f"http://127.0.0.1:{port}"
    (models_dir / "tbfail").mkdir(parents=True)
    (models_dir / "tbfail" / "tensorboard").write_text("a file where the logger wants its folder")
    task_id = await api.start(make_config(epochs=3, output_path="/models/tbfail", loggers=["tensorboard", "mlflow"]))
    events, _ = await api.stream(task_id)
    final = events[-1]
    assert final["type"] == "complete" and final["training_state"] == "completed", final
    assert sorted(e["logger"] for e in final["progress"]["logger_errors"]) == ["MLflow", "TensorBoard"]

    progress = await api.progress(task_id)
    assert progress["training_state"] == "completed" and progress["error"] is None
    errors = {e["logger"]: e["message"] for e in progress["logger_errors"]}
    assert "TensorBoard logging failed while starting" in errors["TensorBoard"]
    assert "the run goes on without TensorBoard" in errors["TensorBoard"]
    assert f"tracking server at http://127.0.0.1:{port} is reachable" in errors["MLflow"]
    assert str(models_dir.resolve()) not in json.dumps(progress)          # paths shown as /models/...

    status, body = await tasks(api)
    [summary] = [t for t in body["tasks"] if t["task_id"] == task_id]
    assert summary["loggers"] == {}                                        # no link to what was not written
    assert sorted(e["logger"] for e in summary["logger_errors"]) == ["MLflow", "TensorBoard"]
    status, body = await api.call("GET", "tasks", task_id)
    assert len(body["task"]["progress"]["logger_errors"]) == 2
