"""Fixtures for the HTTP API tests: a Jupyter server from pytest-jupyter with the extension on.

pytest-jupyter's fixtures (and its async-test hooks) are imported here rather than registered
globally, so its autouse fixtures run only for the server tests.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from pytest_jupyter.jupyter_server import *  # noqa: F401,F403  (jp_fetch, jp_serverapp, ...)
from trainer import datasets

API = ("api", "v1", "epoch-training")
API_METRICS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "time_per_epoch"}
API_PROGRESS = {"current_epoch", "total_epochs", "training_state", "latest_metrics", "best_metrics"}


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    return tmp_path / "task-records"


@pytest.fixture
def models_dir(jp_root_dir: Path) -> Path:
    return jp_root_dir / "models"


@pytest.fixture
def jp_server_config(tasks_dir: Path) -> Config:
    # Short keepalive so the tests see it; the rest are the defaults a user gets.
    return Config({"ServerApp": {"jpserver_extensions": {"epoch_widgets": True}},
                   "EpochTrainingApp": {"tasks_dir": str(tasks_dir), "keepalive_interval": 0.3}})


@pytest.fixture
def data_csv(jp_root_dir: Path) -> str:
    """A small learnable classification file in the server's root directory; its data_path."""
    datasets.make_classification(800, seed=3).to_csv(jp_root_dir / "data.csv", index=False)
    return "data.csv"


@pytest.fixture
def make_config(data_csv: str) -> Callable[..., dict[str, Any]]:
    """The documented start request body, shrunk to train in well under a second per epoch."""

    def make(**overrides: Any) -> dict[str, Any]:
        cfg = {"name": "API test", "algorithm_type": "deep_learning", "model_type": "mlp", "epochs": 6,
               "batch_size": 32, "learning_rate": 0.005, "hidden_units": [16, 8], "dropout_rate": 0.1,
               "early_stopping": False, "learning_rate_scheduler": "step", "step_size": 3, "gamma": 0.5,
               "feature_columns": ["f1", "f2", "f3"], "target_column": "label", "seed": 0, "device": "cpu",
               "data_path": data_csv}
        cfg.update(overrides)
        return cfg

    return make


def strict_json(text: bytes | str) -> Any:
    """Parse as standard JSON: NaN and Infinity literals (which Python writes and JavaScript's
    JSON.parse refuses) fail the test."""
    def refuse(literal: str) -> Any:
        raise AssertionError(f"the answer holds {literal}, which is not standard JSON: {text[:300]!r}")
    return json.loads(text, parse_constant=refuse)


class Api:
    """Calls the API through jp_fetch (auth header and base URL included) and returns
    ``(status, json)`` for errors too, instead of raising."""

    def __init__(self, fetch: Callable[..., Any]):
        self.fetch = fetch

    async def call(self, method: str, *parts: str, body: Any = None, raw: Optional[str] = None,
                   headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, Any]]:
        if raw is None:
            raw = json.dumps(body) if body is not None else ("" if method == "POST" else None)
        try:
            response = await self.fetch(*API, *parts, method=method, body=raw, headers=headers,
                                        allow_nonstandard_methods=True, request_timeout=120)
        except HTTPClientError as exc:
            response = exc.response
            assert response is not None, exc
        return response.code, strict_json(response.body)

    async def start(self, config: dict[str, Any]) -> str:
        status, body = await self.call("POST", "start", body=config)
        assert status == 200, body
        return body["task_id"]

    async def progress(self, task_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", "progress", task_id)
        assert status == 200, body
        return body["progress"]

    async def wait_for(self, task_id: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
        """Poll the progress endpoint until ``check(progress)``; generous timeout, shared CPUs."""
        deadline = time.monotonic() + timeout
        while True:
            progress = await self.progress(task_id)
            if check(progress):
                return progress
            assert time.monotonic() < deadline, f"timed out waiting; last progress {progress}"
            await asyncio.sleep(0.05)

    async def pause_after_an_epoch(self, task_id: str) -> dict[str, Any]:
        """Wait for the task's first epoch, then pause it; the pause's answer (the task paused)."""
        await self.wait_for(task_id, lambda p: p["current_epoch"] >= 1)
        status, body = await self.call("POST", "pause", task_id)
        assert status == 200 and body["training_state"] == "paused", body
        return body

    async def wait_done(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        return await self.wait_for(task_id, lambda p: p["training_state"] not in ("pending", "running", "paused"),
                                   timeout)

    async def stream(self, task_id: str, on_event: Optional[Callable[[dict[str, Any]], Any]] = None,
                     endpoint: str = "stream-progress") -> tuple[list[dict[str, Any]], list[str]]:
        """Read the SSE stream to its end: (events' data, every raw line); ``endpoint``
        "stream-sweep" reads a sweep's."""
        events: list[dict[str, Any]] = []
        lines: list[str] = []
        buffer = b""

        def chunk(data: bytes) -> None:
            nonlocal buffer
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode()
                lines.append(text)
                if text.startswith("data: "):
                    event = strict_json(text[len("data: "):])
                    events.append(event)
                    if on_event is not None:
                        on_event(event)

        response = await self.fetch(*API, endpoint, task_id, streaming_callback=chunk,
                                    request_timeout=300)
        assert response.code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return events, lines


@pytest.fixture
def api(jp_fetch: Callable[..., Any]) -> Api:
    return Api(jp_fetch)


@pytest.fixture
def extension(jp_serverapp: Any) -> Any:
    """The running EpochTrainingApp (its registry gives the tests the worker processes)."""
    return jp_serverapp.web_app.settings["epoch_widgets"]


def worker_pids(parent: int) -> set[int]:
    """The live (not zombie) task worker processes that ``parent`` started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z" and b"epoch_widgets.server.worker" in cmdline:
            found.add(int(entry.name))
    return found


def epochs_of(history: list[dict[str, Any]]) -> list[int]:
    return [entry["epoch"] for entry in history]
