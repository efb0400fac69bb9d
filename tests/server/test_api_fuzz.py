"""Fuzzing the real server against its own OpenAPI document (schemathesis): schema-valid and
schema-violating requests to every endpoint; no answer may be a 500, every answer must match the
document (status code, content type, body schema), and invalid requests must be refused."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,  # noqa: E402
                                               response_schema_conformance, status_code_conformance)

from epoch_widgets.server.launch import BackgroundServer  # noqa: E402
from trainer import datasets  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]

POSITIVE_EXAMPLES = 25
NEGATIVE_EXAMPLES = 15
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    datasets.make_classification(200, seed=2).to_csv(root / "train.csv", index=False)
    server = BackgroundServer(root, tasks_dir=tmp_path / "tasks", log_file=tmp_path / "server.log",
                              extra_args=["--EpochTrainingApp.max_running_tasks=2"])
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


STREAM = "GET /stream-progress/{task_id}"
TASKS_STREAM = "GET /stream-tasks"


def _stream_events_conform(doc: dict, response) -> None:
    """Each event's data is a StreamEvent (the stream operation's ``x-event-schema``). Checked here:
    its body is described as a string (a client reads text), and schemathesis reads a pre-3.2
    stream schema as describing each event."""
    import json

    import jsonschema

    media = doc["paths"]["/stream-progress/{task_id}"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    validator = jsonschema.Draft202012Validator({**doc, **media["x-event-schema"]})
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events
    for event in events:
        validator.validate(event)


def _fuzz(operation, mode, examples: int, server: BackgroundServer, calls: Counter, doc: dict, **fixed) -> None:
    strategy = operation.as_strategy(generation_mode=mode, **fixed)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case) -> None:
        response = case.call(base_url=server.api_url(), headers=server.headers, timeout=120)
        checks = CONFORMANCE + ([negative_data_rejection] if mode == schemathesis.GenerationMode.NEGATIVE else [])
        if operation.label == STREAM and response.status_code == 200:
            checks = [c for c in checks if c is not response_schema_conformance]
            _stream_events_conform(doc, response)
        case.validate_response(response, checks=checks, headers=server.headers)
        calls[operation.label, response.status_code] += 1

    check()


def test_fuzzing_the_server_against_its_openapi_document_finds_no_500_and_no_undocumented_answer(server):
    import requests

    schema = schemathesis.openapi.from_url(server.api_url("openapi.json"), headers=server.headers)
    # GET stream-tasks stays open and takes no input to fuzz: test_api_stream_tasks.py checks its
    # events against the document.
    operations = [result.ok() for result in schema.get_all_operations()]
    assert TASKS_STREAM in {op.label for op in operations}
    operations = [op for op in operations if op.label != TASKS_STREAM]
    # (Loaded from its URL, schemathesis leaves out the operation serving the document itself.)
    assert {op.label for op in operations} >= {
        "POST /start", "GET /progress/{task_id}", "GET /history/{task_id}", "GET /stream-progress/{task_id}",
        "POST /pause/{task_id}", "POST /resume/{task_id}", "POST /stop/{task_id}", "GET /tasks",
        "GET /tasks/{task_id}", "DELETE /tasks/{task_id}"}

    # A finished task, so the task endpoints also answer 200 and 409, not only 404.
    started = requests.post(server.api_url("start"), headers=server.headers, timeout=300, json={
        "epochs": 2, "hidden_units": [4], "target_column": "label", "data_path": "train.csv", "device": "cpu"})
    assert started.status_code == 200, started.text
    task_id = started.json()["task_id"]
    doc = requests.get(server.api_url("openapi.json"), headers=server.headers, timeout=60).json()

    calls: Counter = Counter()
    # Deleting goes last: until then the finished task answers every other endpoint.
    for operation in sorted(operations, key=lambda op: op.method == "delete"):
        for mode, examples in ((schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
                               (schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)):
            try:
                _fuzz(operation, mode, examples, server, calls, doc)
            except schemathesis.errors.InvalidSchema:    # noqa: PERF203
                raise
            except Exception as exc:
                if "Unsatisfiable" in type(exc).__name__ and mode == schemathesis.GenerationMode.NEGATIVE:
                    continue       # nothing about a plain string path parameter can be invalid
                raise
        if "task_id" in operation.path:
            _fuzz(operation, schemathesis.GenerationMode.POSITIVE, 5, server, calls, doc,
                  path_parameters={"task_id": task_id})

    per_operation = Counter()
    for (operation, _status), count in calls.items():
        per_operation[operation] += count
    print("\nfuzzing calls per operation:", dict(per_operation), "\nby status:",
          dict(Counter(status for (_, status) in calls.elements())))
    assert set(per_operation) == {op.label for op in operations}
    assert all(count >= 10 for count in per_operation.values()), per_operation
    assert sum(per_operation.values()) >= 200
    statuses = {status for (_, status) in calls}
    assert 500 not in statuses and {200, 400, 404, 409} <= statuses, calls
