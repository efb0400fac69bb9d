"""GET evaluation/{task_id}: a finished task's evaluation.json, or why there is none."""
from __future__ import annotations

import json

import pytest
from sklearn import metrics as skm

pytestmark = pytest.mark.server

LONG = 100_000   # epochs for a run that only ends when told to


async def test_evaluation_of_a_finished_task_and_the_refusals(api, make_config, models_dir):
    task_id = await api.start(make_config(epochs=3, output_path="/models/evaluated"))
    running = await api.start(make_config(epochs=LONG))               # no output_path either
    status, body = await api.call("GET", "evaluation", running)
    assert status == 409 and body["success"] is False and "still" in body["message"], body

    await api.wait_done(task_id)
    status, body = await api.call("GET", "evaluation", task_id)
    assert status == 200 and body["success"] is True and body["task_id"] == task_id, body
    evaluation = body["evaluation"]
    assert evaluation == json.loads((models_dir / "evaluated" / "evaluation.json").read_text())
    assert evaluation["task"] == "classification" and evaluation["split"] == "validation"
    assert evaluation["classes"] == [0, 1]
    cm = evaluation["confusion_matrix"]
    assert sum(map(sum, cm)) == evaluation["n_samples"]
    # The reported accuracy is the confusion matrix's diagonal share, as scikit-learn counts it.
    true = [a for a in (0, 1) for p in (0, 1) for _ in range(cm[a][p])]
    pred = [p for a in (0, 1) for p in (0, 1) for _ in range(cm[a][p])]
    assert evaluation["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(true, pred))

    assert (await api.call("POST", "stop", running))[0] == 200
    await api.wait_done(running)
    status, body = await api.call("GET", "evaluation", running)
    assert status == 409 and "without output_path" in body["message"], body

    status, body = await api.call("GET", "evaluation", "epoch_training_20240101_120000")
    assert status == 404 and "no task" in body["message"]


async def test_a_damaged_evaluation_file_is_a_clear_refusal_and_a_link_is_not_followed(api, make_config, models_dir,
                                                                                      tmp_path):
    task_id = await api.start(make_config(epochs=1, output_path="/models/damaged"))
    await api.wait_done(task_id)
    path = models_dir / "damaged" / "evaluation.json"

    path.write_text("{not json")
    status, body = await api.call("GET", "evaluation", task_id)
    assert status == 409 and "evaluation is unreadable" in body["message"] and "not JSON" in body["message"], body

    path.unlink()
    path.mkdir()
    status, body = await api.call("GET", "evaluation", task_id)
    assert status == 409 and "evaluation is unreadable" in body["message"], body

    path.rmdir()
    secret = tmp_path / "outside.json"
    secret.write_text(json.dumps({"secret": "outside the models folder"}))
    path.symlink_to(secret)
    status, body = await api.call("GET", "evaluation", task_id)
    assert status == 409 and "symbolic link" in body["message"] and "secret" not in json.dumps(body), body
