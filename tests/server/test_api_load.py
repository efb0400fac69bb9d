"""Load on loopback: 3 training tasks and 50 SSE clients, no lost events, nothing leaked."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load_api.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("load_api", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_tasks_and_fifty_stream_clients_lose_no_events_and_leak_nothing(capsys):
    load = _load_module()
    figures = load.run_load(tasks=3, clients=50, epochs=20, timeout=150)
    with capsys.disabled():
        print("\nload figures:", {k: figures[k] for k in ("events_received", "run_seconds", "events_per_second",
                                                         "max_fanout_spread_ms", "server_fds", "server_threads")})
    assert figures["clients_connected"] == 50
    # Every client got its first progress, one per later epoch, two states and complete: nothing more
    # or less. (A task may have finished epoch 1 before its pause landed, so not always 50 * 24.)
    assert figures["events_received"] == figures["events_expected"] >= 50 * (1 + 19 + 2 + 1)
    assert load.problems(figures) == []
