"""One request must not freeze the server: bodies over the size limit get a 413 with a message, a
body of the maximum size is answered within a second, and meanwhile another client's GET tasks is
answered within 0.2 s. Clients are threads with their own connections against the real server."""
from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from typing import Any, Optional

import pytest

from epoch_widgets.server.jsonio import MAX_BODY_BYTES

from .conftest import API

pytestmark = [pytest.mark.server]


class Client:
    """Blocking HTTP calls to the server on its own connection (so only the server's work is timed)."""

    def __init__(self, port: int, base_url: str, headers: dict[str, str]):
        self.port, self.headers = port, headers
        self.prefix = base_url.rstrip("/") + "/" + "/".join(API)

    def call(self, method: str, path: str, body: Optional[bytes] = None) -> tuple[int, dict[str, Any], float]:
        """(status, JSON answer, seconds from the request's last byte sent to the whole answer read)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, f"{self.prefix}/{path}", body=body,
                         headers={**self.headers, "Content-Type": "application/json"})
            sent = time.perf_counter()
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw), time.perf_counter() - sent
        finally:
            conn.close()


@pytest.fixture
def client(jp_fetch, jp_http_port, jp_base_url, jp_auth_header) -> Client:
    # jp_fetch: the server listens once its HTTP client fixture has started it.
    return Client(jp_http_port, jp_base_url, jp_auth_header)


def body_of_size(size: int, config: dict[str, Any]) -> bytes:
    """``config`` with as many feature columns as fit, padded with whitespace to exactly ``size`` bytes."""
    columns = [f"column_{i:06d}" for i in range((size - 1000) // 17)]
    raw = json.dumps({**config, "feature_columns": columns}).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def while_posting(client: Client, body: bytes) -> tuple[tuple[int, dict[str, Any], float], list[float]]:
    """POST start with ``body`` in one thread while another keeps asking GET tasks: the POST's
    answer and the GETs' times."""
    answer: list[Any] = []
    poster = threading.Thread(target=lambda: answer.append(client.call("POST", "start", body)))
    poster.start()
    times = []
    while poster.is_alive() or not times:
        status, listing, seconds = client.call("GET", "tasks")
        assert status == 200 and listing["success"] is True
        times.append(seconds)
    poster.join()
    return answer[0], times


async def test_a_body_of_the_maximum_size_is_answered_fast_and_holds_up_no_one(client, make_config):
    await asyncio.to_thread(client.call, "GET", "tasks")     # connections and the handler warmed up
    body = body_of_size(MAX_BODY_BYTES, make_config())
    assert len(body) == MAX_BODY_BYTES
    (status, answer, seconds), get_times = await asyncio.to_thread(while_posting, client, body)
    assert status == 400, answer
    assert answer["errors"][0]["field"] == "feature_columns" and "at most 10000" in answer["message"]
    assert len(json.dumps(answer)) < 5000        # no echo of the 61,000 columns
    assert seconds < 1.0, f"the 1 MiB body took {seconds:.2f} s"
    assert max(get_times) < 0.2, f"GET tasks took {max(get_times):.3f} s while the body was checked"


async def test_a_body_over_the_limit_is_413_with_a_message(client, make_config):
    for body in (body_of_size(MAX_BODY_BYTES + 1, make_config()),
                 json.dumps(make_config(feature_columns=[f"c{i}" for i in range(200_000)])).encode()):
        (status, answer, seconds), get_times = await asyncio.to_thread(while_posting, client, body)
        assert status == 413 and answer["success"] is False
        assert f"more than the {MAX_BODY_BYTES:,} bytes" in answer["message"]
        assert seconds < 1.0 and max(get_times) < 0.2


def test_the_served_schema_shows_the_limits():
    from epoch_widgets.server.openapi import openapi_document

    document = openapi_document()
    start = document["components"]["schemas"]["StartRequest"]["properties"]
    assert start["feature_columns"]["maxItems"] == 10_000
    assert start["feature_columns"]["items"]["maxLength"] == 1024
    assert start["name"]["maxLength"] == 1000 and start["data_path"]["maxLength"] == 4096
    assert {"maxLength": 2048, "type": "string"} in document["components"]["schemas"]["TrainingConfig"][
        "properties"]["mlflow_tracking_uri"]["anyOf"]
    assert "413" in document["paths"]["/start"]["post"]["responses"]


def test_the_api_server_reads_no_body_far_over_the_limit(monkeypatch):
    from epoch_widgets.server import __main__ as entry
    from epoch_widgets.server.app import EpochTrainingApp

    seen: list[list[str]] = []
    monkeypatch.setattr(EpochTrainingApp, "launch_instance", classmethod(lambda cls, argv: seen.append(argv)))
    entry.main([])
    entry.main(["--ServerApp.max_body_size=100"])
    assert f"--ServerApp.max_body_size={entry.MAX_BODY_SIZE}" in seen[0]
    assert [a for a in seen[1] if "max_body_size" in a] == ["--ServerApp.max_body_size=100"]
    assert MAX_BODY_BYTES < entry.MAX_BODY_SIZE
