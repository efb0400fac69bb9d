"""Competing control calls on one task, from several threads with random delays, against a real
server with real workers: never two workers for a task, one contiguous history, and always a way out
(stop, then delete)."""
from __future__ import annotations

import random
import threading
from collections import Counter
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from epoch_widgets.server.launch import BackgroundServer
from trainer import datasets

from .conftest import epochs_of, worker_pids

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROUNDS = 2
THREADS = 5
CALLS_PER_THREAD = 8
# resume twice: on a paused task it resumes in the worker, on a stopped one it relaunches from the
# checkpoint. Deleting joins in the second half of each thread's calls, so a round is not over at once.
CONTROL = ["pause", "resume", "resume", "stop"]
ACTIONS = [*CONTROL, *CONTROL, "delete"]


class WorkerWatch(threading.Thread):
    """Samples the server's worker processes; ``most`` is the largest number seen at once."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.most = 0
        self.samples = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.most = max(self.most, len(worker_pids(self.server_pid)))
            self.samples += 1
            time.sleep(0.01)


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    datasets.make_classification(320, seed=1).to_csv(root / "data.csv", index=False)
    server = BackgroundServer(root, tasks_dir=tmp_path / "tasks", log_file=tmp_path / "server.log",
                              extra_args=["--EpochTrainingApp.stop_timeout=30"])
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


def call(server: BackgroundServer, method: str, *parts: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    response = requests.request(method, server.api_url(*parts), json=body, headers=server.headers, timeout=300)
    return response.status_code, response.json()


def wait_for(server: BackgroundServer, task_id: str, check: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = call(server, "GET", "progress", task_id)
        assert status == 200, body
        if check(body["progress"]):
            return body["progress"]
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_competing_control_calls_keep_one_worker_per_task_and_a_way_out(server):
    watch = WorkerWatch(server.process.pid)
    watch.start()
    outcomes: list[tuple[str, int, str]] = []
    try:
        for round_ in range(ROUNDS):
            config = {"epochs": 100_000, "batch_size": 16, "hidden_units": [8], "seed": round_, "device": "cpu",
                      "feature_columns": ["f1", "f2", "f3"], "target_column": "label", "data_path": "data.csv",
                      "early_stopping": False, "output_path": f"race{round_}", "checkpoint_every_batches": 4}
            status, body = call(server, "POST", "start", body=config)
            assert status == 200, body
            task_id = body["task_id"]
            wait_for(server, task_id, lambda p: p["current_epoch"] >= 1)

            def hammer(seed: int) -> list[tuple[str, int, str]]:
                rng = random.Random(round_ * 100 + seed)
                seen = []
                for i in range(CALLS_PER_THREAD):
                    time.sleep(rng.uniform(0.0, 0.4))
                    action = rng.choice(CONTROL if i < CALLS_PER_THREAD // 2 else ACTIONS)
                    if action == "delete":
                        status, body = call(server, "DELETE", "tasks", task_id)
                    else:
                        status, body = call(server, "POST", action, task_id)
                    seen.append((action, status, body.get("message", "")))
                return seen

            with ThreadPoolExecutor(THREADS) as pool:
                for seen in pool.map(hammer, range(THREADS)):
                    outcomes += seen
            assert {status for _, status, _ in outcomes} <= {200, 404, 409}, outcomes

            status, body = call(server, "GET", "history", task_id)
            if status == 404:                # a delete won: the task had ended, so no worker is left
                continue
            history = body["history"]
            assert epochs_of(history) == list(range(1, len(history) + 1)), epochs_of(history)
            status, body = call(server, "POST", "stop", task_id)
            assert status == 200 or (status == 409 and "already ended" in body["message"]), body
            wait_for(server, task_id, lambda p: p["training_state"] not in ("pending", "running", "paused"))
            status, body = call(server, "DELETE", "tasks", task_id)
            assert status == 200, body
    finally:
        watch.running = False
        watch.join()
    deadline = time.monotonic() + 60
    while worker_pids(server.process.pid):
        assert time.monotonic() < deadline, "a worker outlived its task"
        time.sleep(0.1)
    assert watch.samples > 100 and watch.most == 1
    print("\nrace outcomes:", sorted(Counter((action, status) for action, status, _ in outcomes).items()))
    # Which calls win is timing: a stop answers at once and cancels a resume whose worker is still
    # starting, so a round may never run again after its first stop. Some stop always wins.
    succeeded = {action for action, status, _ in outcomes if status == 200}
    assert "stop" in succeeded, outcomes
    # A resume from checkpoint either continued the task or was cancelled by a stop or delete meanwhile
    # (answered at once instead of waiting for the new worker).
    relaunched = [m for action, status, m in outcomes
                  if (status == 200 and "from its checkpoint" in m)
                  or (status == 409 and ("resume from the checkpoint was cancelled" in m or "deleted while it resumed" in m))]
    assert relaunched, "no resume tried to continue a stopped task from its checkpoint"
