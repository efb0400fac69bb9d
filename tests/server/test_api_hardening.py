"""Hostile or careless input: tokens in URLs stay out of the log, over-long paths and deep bodies are
400s, non-finite numbers are refused and never sent, answers never show the server's own paths, and
the OpenAPI document is served."""
from __future__ import annotations

import json
import logging

import pytest
from jupyter_server.utils import url_path_join
from tornado.httpclient import HTTPClientError

from trainer import TrainingConfig, config_fields

from .conftest import strict_json

pytestmark = pytest.mark.server

FLOAT_FIELDS = [f.name for f in config_fields() if f.type == "float"]


async def test_a_token_in_the_query_string_never_reaches_the_log(
        http_server_client, jp_base_url, jp_serverapp, make_config, caplog):
    token = jp_serverapp.identity_provider.token
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    api = url_path_join(jp_base_url, "api/v1/epoch-training")
    requests = [("GET", "progress/epoch_training_20240101_120000", None),        # 404
                ("POST", "pause/nope", ""),                                        # 404
                ("POST", "start", "{not json"),                                    # 400
                ("POST", "start", json.dumps(make_config(data_path="missing.csv"))),
                ("PUT", "start", "{}"),                                            # 405
                ("GET", "openapi.json", None)]                                     # 200
    for method, path, body in requests:
        try:
            await http_server_client.fetch(f"{api}/{path}?token={token}", method=method, body=body,
                                           allow_nonstandard_methods=True)
        except HTTPClientError as exc:
            assert exc.code in (400, 404, 405)
    assert "progress/epoch_training_20240101_120000" in caplog.text and "[secret]" in caplog.text
    assert token not in caplog.text


@pytest.mark.parametrize("field, value", [
    ("data_path", "x" * 300 + ".csv"),
    ("data_path", "a/" * 2100 + "data.csv"),
    ("output_path", "m" * 300),
    ("output_path", "/models/" + "m/" * 2100),
])
async def test_an_over_long_path_is_400_without_showing_the_servers_root(api, make_config, field, value, jp_root_dir):
    status, body = await api.call("POST", "start", body=make_config(**{field: value}))
    assert status == 400, body
    assert body["errors"][0]["field"] == field and "too long" in body["message"]
    assert str(jp_root_dir) not in json.dumps(body)


@pytest.mark.parametrize("raw, words", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"hidden_units": ' + "[" * 40 + "1" + "]" * 40 + "}", "nested too deeply"),
])
async def test_a_deeply_nested_body_is_400(api, raw, words):
    status, body = await api.call("POST", "start", raw=raw)
    assert status == 400 and words in body["message"], body


@pytest.mark.parametrize("field", [*FLOAT_FIELDS, "epochs"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_numbers_are_refused_naming_the_field(api, make_config, field, literal, tasks_dir):
    raw = json.dumps(make_config(**{field: 12345.5})).replace("12345.5", literal)
    status, body = await api.call("POST", "start", raw=raw)         # the answer must be standard JSON too
    assert status == 400, body
    assert body["errors"][0]["field"] == field and field in body["message"] and "finite number" in body["message"]
    assert not list(tasks_dir.glob("*.json"))


async def test_a_history_holding_nan_is_sent_as_null(api, make_config, extension):
    task_id = await api.start(make_config(epochs=2))
    await api.wait_done(task_id)
    task = extension.registry.get(task_id)
    task.history[-1]["val_loss"] = float("nan")          # as a diverged run's last epoch may hold
    task.progress["latest_metrics"] = dict(task.history[-1])
    status, body = await api.call("GET", "history", task_id)
    assert status == 200 and body["history"][-1]["val_loss"] is None
    assert (await api.progress(task_id))["latest_metrics"]["val_loss"] is None
    events, _ = await api.stream(task_id)
    assert events[0]["progress"]["latest_metrics"]["val_loss"] is None


async def test_answers_show_paths_as_the_client_gave_them(api, make_config, jp_root_dir, models_dir):
    status, started = await api.call("POST", "start", body=make_config(epochs=2, output_path="/models/shown"))
    assert status == 200 and started["output_dir"] == "/models/shown"
    task_id = started["task_id"]
    await api.wait_done(task_id)
    (models_dir / "a-file").write_text("not a folder")
    answers = [started, (await api.call("GET", "tasks", task_id))[1], (await api.call("GET", "tasks"))[1],
               (await api.call("POST", "start", body=make_config(output_path="a-file")))[1],
               (await api.call("POST", "start", body=make_config(data_path="nope/missing.csv")))[1],
               (await api.call("POST", "resume", task_id))[1]]
    assert answers[1]["task"]["output_dir"] == "/models/shown"
    for answer in answers:
        assert str(jp_root_dir) not in json.dumps(answer), answer


async def test_the_openapi_document_is_served_and_describes_every_endpoint(api, jp_fetch, jp_base_url, extension):
    from epoch_widgets.server.handlers import handlers

    response = await jp_fetch("api", "v1", "epoch-training", "openapi.json")
    doc = strict_json(response.body)
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": url_path_join(jp_base_url, "api/v1/epoch-training")}]
    # Every route the server serves is described, and nothing else.
    served = {pattern.split("api/v1/epoch-training", 1)[1].replace("(?P<task_id>[^/]+)", "{task_id}")
              .replace("(?P<sweep_id>[^/]+)", "{sweep_id}")
              for pattern, *_ in handlers(extension.registry, extension.sweeps)}
    assert {"/start", "/progress/{task_id}", "/stream-progress/{task_id}", "/tasks", "/evaluation/{task_id}"} <= served
    assert set(doc["paths"]) == served
    config = doc["components"]["schemas"]["TrainingConfig"]
    assert set(config["properties"]) == set(TrainingConfig.model_fields)
    start = doc["components"]["schemas"]["StartRequest"]
    assert start["properties"]["overwrite"]["type"] == "boolean" and start["required"] == ["data_path"]
    stream = doc["paths"]["/stream-progress/{task_id}"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    with pytest.raises(HTTPClientError) as err:          # authenticated like the rest
        await jp_fetch("api", "v1", "epoch-training", "openapi.json", headers={"Authorization": ""})
    assert err.value.code in (401, 403)
