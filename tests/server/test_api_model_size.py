"""The model's size over the API: the start answer's parameter count, and a model too big to train
refused with a 400 that names the field to change, starting nothing."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.server


async def test_the_start_answer_counts_the_models_parameters(api, make_config):
    status, started = await api.call("POST", "start", body=make_config(epochs=2))
    assert status == 200, started
    # 3 features -> 16 -> 8 -> 2 classes, each layer with its biases.
    assert started["parameters"] == (3 * 16 + 16) + (16 * 8 + 8) + (8 * 2 + 2)
    await api.wait_done(started["task_id"])


async def test_a_model_too_big_to_train_is_refused_naming_hidden_units(api, make_config, tasks_dir):
    status, body = await api.call("POST", "start", body=make_config(hidden_units=[65536] * 16, output_path="big"))
    assert status == 400, body
    assert body["success"] is False and body["errors"][0]["field"] == "hidden_units"
    assert "parameters" in body["message"] and "GiB" in body["message"]
    status, listed = await api.call("GET", "tasks")
    assert listed["tasks"] == []
