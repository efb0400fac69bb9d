"""GET stream-tasks: one event stream follows every task of the server, from a snapshot on."""
from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import pytest

from epoch_widgets.server.openapi import openapi_document

from .conftest import strict_json

pytestmark = [pytest.mark.server, pytest.mark.slow]


class TasksStream:
    """A raw client of the stream (HTTP/1.0, so the body is the event text itself, unchunked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.keepalives = 0
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, port: int, path: str, token: str) -> "TasksStream":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode()
        assert " 200 " in head.splitlines()[0] and "text/event-stream" in head, head
        return cls(reader, writer)

    async def next(self, timeout: float = 120) -> dict[str, Any]:
        """The next event's data (keepalive comments are counted and skipped); TimeoutError when
        none comes within ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            line = (await asyncio.wait_for(self.reader.readline(), max(left, 0.001))).decode()
            assert line, "the stream ended"
            if line.startswith(": keepalive"):
                self.keepalives += 1
            elif line.startswith("data: "):
                self.events.append(strict_json(line[len("data: "):]))
                return self.events[-1]

    async def until(self, check: Any) -> list[dict[str, Any]]:
        """Every event up to and including the first for which ``check(event)`` holds."""
        events = []
        while True:
            events.append(await self.next())
            if check(events[-1]):
                return events

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def open_stream(jp_serverapp, http_server_client, jp_base_url):
    streams: list[TasksStream] = []

    async def open_() -> TasksStream:
        stream = await TasksStream.open(http_server_client.get_http_port(),
                                        f"{jp_base_url}api/v1/epoch-training/stream-tasks",
                                        jp_serverapp.identity_provider.token)
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


def _validator() -> jsonschema.Draft202012Validator:
    doc = openapi_document()
    media = doc["paths"]["/stream-tasks"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    return jsonschema.Draft202012Validator({**doc, **media["x-event-schema"]})


def _of(task_id: str, change: str, state: str | None = None) -> Any:
    return lambda e: (e["type"] == "task" and e["task"]["task_id"] == task_id and e["change"] == change
                      and (state is None or e["task"]["training_state"] == state))


async def test_one_stream_follows_every_task_from_a_snapshot_to_its_deletion(api, make_config, open_stream, extension):
    first = await api.start(make_config(name="First run", epochs=3))
    await api.wait_done(first)
    stream = await open_stream()
    snapshot = await stream.next()
    assert snapshot["type"] == "snapshot" and [t["task_id"] for t in snapshot["tasks"]] == [first]
    done = snapshot["tasks"][0]
    assert (done["name"], done["model_type"], done["training_state"]) == ("First run", "mlp", "completed")
    assert done["current_epoch"] == done["total_epochs"] == 3 and len(done["val_loss"]) == 3
    assert done["eta_s"] is None and done["elapsed_s"] > 0 and done["best_metrics"]["epoch"] >= 1
    assert set(done["latest_metrics"]) >= {"epoch", "val_loss", "val_accuracy"}

    # A task started by anyone appears, its epochs and state changes follow, each with its whole summary.
    second = await api.start(make_config(name="Second run", epochs=200))
    events = await stream.until(lambda e: e["type"] == "task" and e["task"]["task_id"] == second
                                and e["task"]["current_epoch"] >= 3)
    created = [e for e in events if _of(second, "created")(e)]
    assert len(created) == 1 and created[0]["task"]["training_state"] == "running"
    epochs = [e["task"] for e in events if _of(second, "epoch")(e)]
    assert [t["current_epoch"] for t in epochs] == [1, 2, 3]
    assert [len(t["val_loss"]) for t in epochs] == [1, 2, 3]
    assert all(t["eta_s"] > 0 and t["elapsed_s"] > 0 for t in epochs)
    assert epochs[-1]["val_loss"][-1] == epochs[-1]["latest_metrics"]["val_loss"]
    assert (await api.call("POST", "pause", second))[0] == 200
    await stream.until(_of(second, "state", "paused"))
    assert (await api.call("POST", "stop", second))[0] == 200
    events = await stream.until(_of(second, "state", "stopped"))
    assert events[-1]["task"]["eta_s"] is None

    # A second client starts from a snapshot too: newest first.
    other = await open_stream()
    assert [t["task_id"] for t in (await other.next())["tasks"]] == [second, first]
    assert len(extension.registry.feed.subscribers) == 2

    assert (await api.call("DELETE", "tasks", first))[0] == 200
    for client in (stream, other):
        assert (await client.until(lambda e: e["type"] == "deleted"))[-1] == {"type": "deleted", "task_id": first}
    # Every event is what the OpenAPI document says.
    validator = _validator()
    for event in [*stream.events, *other.events]:
        validator.validate(event)

    # A client that goes is unsubscribed at once.
    stream.close()
    other.close()
    for _ in range(200):
        if not extension.registry.feed.subscribers:
            break
        await asyncio.sleep(0.05)
    assert not extension.registry.feed.subscribers


async def test_an_idle_stream_sends_keepalives_and_a_refused_start_leaves_no_event(api, make_config, open_stream):
    stream = await open_stream()
    assert await stream.next() == {"type": "snapshot", "tasks": []}
    # Refused by its worker, which checks the config against the data: the task never existed.
    status, body = await api.call("POST", "start", body=make_config(target_column="no_such_column"))
    assert status == 400 and "no_such_column" in body["message"], body
    with pytest.raises(asyncio.TimeoutError):
        await stream.next(timeout=1.0)
    assert stream.keepalives >= 2            # keepalive_interval is 0.3 s in these tests
