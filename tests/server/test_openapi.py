"""The OpenAPI document as client generators read it: one name per schema, the event stream as text."""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterator

from epoch_widgets.server.openapi import openapi_document


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_"))


def _generated_names(name: str, schema: Any) -> Iterator[str]:
    """The names a generator gives the inline schemas that need a type of their own (objects with
    properties, enums, unions), as openapi-python-client derives them: parent name + property
    name, ``Type<i>`` for a union member, ``Item`` for array items."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return
    for key, child in (schema.get("properties") or {}).items():
        if isinstance(child, dict) and "$ref" not in child and (child.get("properties") or child.get("enum")
                                                                 or child.get("oneOf")):
            yield name + _pascal(key)
        yield from _generated_names(name + _pascal(key), child)
    for union in ("oneOf", "anyOf"):
        for i, child in enumerate(schema.get(union) or []):
            if isinstance(child, dict) and "$ref" not in child and (child.get("properties") or child.get("enum")):
                yield f"{name}Type{i}"
            yield from _generated_names(f"{name}Type{i}", child)
    if isinstance(schema.get("items"), dict):
        yield from _generated_names(name + "Item", schema["items"])


def test_every_schema_a_generator_names_has_a_name_of_its_own():
    schemas = openapi_document()["components"]["schemas"]
    names = list(schemas) + [n for component, schema in schemas.items() for n in _generated_names(component, schema)]
    duplicates = [n for n, count in Counter(names).items() if count > 1]
    assert not duplicates, duplicates
    # The events and what they share are components, so no generator invents names for them.
    assert all("$ref" in member for member in schemas["StreamEvent"]["oneOf"])
    assert schemas["CompleteEvent"]["properties"]["best_metrics"] == {"$ref": "#/components/schemas/BestMetrics"}
    assert not [n for n in names if n.startswith("StreamEvent") and n != "StreamEvent"]


def test_the_event_stream_is_described_as_text_with_its_event_schema_beside():
    doc = openapi_document()
    ok = doc["paths"]["/stream-progress/{task_id}"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["text/event-stream"]
    media = ok["content"]["text/event-stream"]
    assert media["schema"] == {"type": "string"}          # a client reads text, not one JSON document
    assert media["x-event-schema"] == {"$ref": "#/components/schemas/StreamEvent"}
    assert {m["$ref"].rsplit("/", 1)[1] for m in doc["components"]["schemas"]["StreamEvent"]["oneOf"]} == {
        "ProgressEvent", "StateEvent", "CompleteEvent", "ErrorEvent", "ConfigChangeEvent"}
    # Every $ref points at a component that exists.
    import json
    refs = {r.split('"')[0] for r in json.dumps(doc).split('"$ref": "#/components/schemas/')[1:]}
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])


def test_the_all_tasks_stream_is_described_as_text_with_its_own_event_schema():
    doc = openapi_document()
    media = doc["paths"]["/stream-tasks"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert media == {"schema": {"type": "string"}, "x-event-schema": {"$ref": "#/components/schemas/TasksStreamEvent"}}
    schemas = doc["components"]["schemas"]
    assert {m["$ref"].rsplit("/", 1)[1] for m in schemas["TasksStreamEvent"]["oneOf"]} == {
        "TasksSnapshotEvent", "TaskChangeEvent", "TaskDeletedEvent"}
    # A live task is a task summary plus what a live list shows.
    live, summary = schemas["TaskLive"], schemas["TaskSummary"]
    assert set(live["properties"]) - set(summary["properties"]) == {
        "model_type", "latest_metrics", "val_loss", "elapsed_s", "eta_s"}
    assert schemas["TaskChangeEvent"]["properties"]["change"] == {"enum": ["created", "state", "epoch"]}


def test_the_sweep_endpoints_are_described_with_their_request_answers_and_stream():
    doc = openapi_document()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    assert {"/sweep", "/sweeps", "/sweep/{sweep_id}", "/stream-sweep/{sweep_id}", "/pause-sweep/{sweep_id}",
            "/resume-sweep/{sweep_id}", "/stop-sweep/{sweep_id}"} <= set(paths)
    start = paths["/sweep"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SweepRequest"}
    assert {"400", "429"} <= set(start["responses"])
    request = schemas["SweepRequest"]
    assert request["required"] == ["config", "space"] and request["additionalProperties"] is False
    # The request cannot choose where trials are kept.
    assert schemas["SweepConfig"]["properties"]["output_path"]["type"] == "null"
    assert schemas["SweepSpace"]["additionalProperties"]["oneOf"] == [
        {"$ref": "#/components/schemas/SweepRange"}, {"$ref": "#/components/schemas/SweepChoice"}]
    media = paths["/stream-sweep/{sweep_id}"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert media == {"schema": {"type": "string"}, "x-event-schema": {"$ref": "#/components/schemas/SweepStreamEvent"}}
    assert {m["$ref"].rsplit("/", 1)[1] for m in schemas["SweepStreamEvent"]["oneOf"]} == {
        "SweepSnapshotEvent", "TrialStartEvent", "TrialEpochEvent", "TrialStateEvent", "TrialEndEvent",
        "SweepStateEvent"}
    assert {"sweep_id", "trial"} <= set(schemas["TaskSummary"]["properties"])
    assert any(p["name"] == "sweep_id" for p in paths["/tasks"]["get"]["parameters"])
