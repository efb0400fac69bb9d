"""Refusals: authentication, invalid configs, path escapes and unknown tasks change nothing."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from jupyter_server.utils import url_path_join
from tornado.httpclient import HTTPClientError

from epoch_widgets.server.ids import is_task_id

pytestmark = pytest.mark.server

ENDPOINTS = [("POST", "start"), ("GET", "progress/epoch_training_20240101_120000"),
             ("GET", "history/epoch_training_20240101_120000"),
             ("GET", "stream-progress/epoch_training_20240101_120000"), ("GET", "stream-tasks"),
             ("POST", "pause/epoch_training_20240101_120000"), ("POST", "resume/epoch_training_20240101_120000"),
             ("POST", "stop/epoch_training_20240101_120000"), ("GET", "tasks"),
             ("GET", "tasks/epoch_training_20240101_120000"), ("DELETE", "tasks/epoch_training_20240101_120000")]


def _nothing_started(api_tasks: list, tasks_dir: Path, models_dir: Path) -> None:
    assert api_tasks == []
    assert not list(tasks_dir.glob("*.json"))
    assert not models_dir.exists()


async def test_every_endpoint_refuses_requests_without_the_token(
        api, http_server_client, jp_base_url, make_config, tasks_dir, models_dir):
    for method, path in ENDPOINTS:
        body = json.dumps(make_config(output_path="x")) if method == "POST" else None
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "token wrong-token"}):
            with pytest.raises(HTTPClientError) as err:
                await http_server_client.fetch(url_path_join(jp_base_url, "api/v1/epoch-training", path),
                                               method=method, body=body, headers=headers,
                                               allow_nonstandard_methods=True)
            assert err.value.code in (401, 403), (method, path, headers)
            reply = json.loads(err.value.response.body)
            assert reply["success"] is False and "token" in reply["message"]
    status, body = await api.call("GET", "tasks")
    _nothing_started(body["tasks"], tasks_dir, models_dir)


@pytest.mark.parametrize("scheme", ["Bearer", "token"])
async def test_both_authorization_schemes_work(api, jp_serverapp, scheme):
    token = jp_serverapp.identity_provider.token
    status, body = await api.call("GET", "tasks", headers={"Authorization": f"{scheme} {token}"})
    assert status == 200 and body == {"success": True, "tasks": []}


@pytest.mark.parametrize("change, field, words", [
    ({"learning_rat": 0.01}, "learning_rat", "learning_rate"),                 # typo: suggests the field
    ({"epochs": "10"}, "epochs", "int"),                                      # strict types
    ({"dropout_rate": 1.5}, "dropout_rate", "1.5"),                            # out of range
    ({"model_type": "transformer"}, "model_type", "mlp"),
    ({"data_path": None}, "data_path", "required"),
    ({"data_path": "missing.csv"}, "data_path", "no such file"),
    ({"data_path": "notes.txt"}, "data_path", "unsupported file type"),
    ({"target_column": "lable"}, "target_column", "label"),                    # checked against the data
    ({"feature_columns": ["f1", "nope"]}, "feature_columns", "nope"),
])
async def test_invalid_config_is_400_naming_the_field(api, make_config, change, field, words, tasks_dir, models_dir):
    status, body = await api.call("POST", "start", body=make_config(output_path="m", **change))
    assert status == 400, body
    assert body["success"] is False and field in body["message"] and words in body["message"]
    assert any(e["field"] == field for e in body["errors"])
    _nothing_started((await api.call("GET", "tasks"))[1]["tasks"], tasks_dir, models_dir)


@pytest.mark.parametrize("raw, words", [("", "empty"), ("{not json", "not valid JSON"), ("[1, 2]", "JSON object")])
async def test_a_body_that_is_not_a_config_object_is_400(api, raw, words):
    status, body = await api.call("POST", "start", raw=raw)
    assert status == 400 and body["success"] is False and words in body["message"]


@pytest.fixture
def outside_file(jp_root_dir: Path) -> Path:
    """A real CSV just outside the root directory, and a link to it from inside."""
    target = jp_root_dir.parent / "outside.csv"
    target.write_text((jp_root_dir / "data.csv").read_text() if (jp_root_dir / "data.csv").exists() else "f1,label\n1,0\n")
    os.symlink(target, jp_root_dir / "link.csv")
    return target


@pytest.mark.parametrize("field, value", [
    ("data_path", "../outside.csv"),
    ("data_path", "link.csv"),                   # a link inside the root pointing out
    ("data_path", "/etc/passwd"),
    ("data_path", "sub/../../outside.csv"),
    ("output_path", "../escaped"),
    ("output_path", "/models/../../escaped"),
    ("output_path", "/tmp/elsewhere"),
    ("output_path", "/models"),                  # the models directory itself
])
async def test_paths_that_escape_are_refused(api, make_config, outside_file, jp_root_dir, field, value, tasks_dir):
    status, body = await api.call("POST", "start", body=make_config(**{field: value}))
    assert status == 400, body
    assert body["errors"][0]["field"] == field and field in body["message"]
    assert not list(tasks_dir.glob("*.json"))
    assert not (jp_root_dir.parent / "escaped").exists()


@pytest.mark.parametrize("method, path", [(m, p) for m, p in ENDPOINTS if "/" in p] +
                         [("GET", "progress/..%2F..%2Fetc%2Fpasswd"), ("GET", "history/nope")])
async def test_unknown_task_is_404(api, method, path):
    status, body = await api.call(method, *path.split("/"))
    assert status == 404, body
    assert body["success"] is False and "no task" in body["message"]


async def test_a_worker_that_does_not_get_ready_in_time_is_504_and_leaves_nothing(
        api, make_config, extension, tasks_dir, models_dir):
    extension.registry.settings.start_timeout = 0.05     # no worker loads torch and the data this fast
    status, body = await api.call("POST", "start", body=make_config(output_path="slow"))
    assert status == 504 and body["success"] is False and "within 0.05 s" in body["message"]
    _nothing_started((await api.call("GET", "tasks"))[1]["tasks"], tasks_dir, models_dir)
    extension.registry.settings.start_timeout = 120
    assert is_task_id(await api.start(make_config(epochs=1)))    # the id it held is free again
