"""Load check of the HTTP API on loopback: concurrent training tasks watched by many SSE clients.

    python benchmarks/load_api.py [--tasks 3] [--clients 50] [--epochs 20]

Starts the API server, starts the tasks and holds them paused until every client is connected,
so each client must receive every epoch's ``progress`` event and one ``complete``. Prints what it
saw: events delivered, lost or repeated events, how far apart the clients received the same
event, and whether the server kept any watcher, file descriptor or thread afterwards.
Exits 1 when an event was lost or repeated or something leaked.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests
import sseclient

from epoch_widgets.server.launch import BackgroundServer
from trainer import datasets


def _proc_figures(pid: int) -> dict[str, int]:
    proc = Path("/proc") / str(pid)
    threads = next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                   if line.startswith("Threads:"))
    return {"fds": len(list((proc / "fd").iterdir())), "threads": threads}


class Watcher(threading.Thread):
    """One SSE client: the guide's ``sseclient.SSEClient(requests.get(url, stream=True))`` loop."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        super().__init__(daemon=True)
        self.url, self.headers, self.timeout = url, headers, timeout
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.error: str = ""
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            response = requests.get(self.url, stream=True, headers=self.headers, timeout=self.timeout)
            response.raise_for_status()
            self.connected.set()
            for event in sseclient.SSEClient(response).events():
                data = json.loads(event.data)
                self.events.append((time.perf_counter(), data))
                if data["type"] in ("complete", "error"):
                    break
            response.close()
        except Exception as exc:  # reported, not raised: the figures say what went wrong
            self.error = f"{type(exc).__name__}: {exc}"
            self.connected.set()


def run_load(tasks: int = 3, clients: int = 50, epochs: int = 20, rows: int = 2000, batch_size: int = 16,
             timeout: float = 150.0, log: Any = print) -> dict[str, Any]:
    """Run the scenario and return its figures (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="epoch-load-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        datasets.make_classification(rows, seed=7).to_csv(root / "data.csv", index=False)
        server = BackgroundServer(root, tasks_dir=Path(tmp) / "tasks", log_file=Path(tmp) / "server.log",
                                  extra_args=["--EpochTrainingApp.keepalive_interval=1"])
        server.start(timeout=120)
        try:
            return _scenario(server, tasks, clients, epochs, batch_size, timeout, log)
        finally:
            server.stop()


def _scenario(server: BackgroundServer, n_tasks: int, n_clients: int, epochs: int, batch_size: int,
              timeout: float, log: Any) -> dict[str, Any]:
    h = server.headers
    deadline = time.monotonic() + timeout
    before = _proc_figures(server.process.pid)
    config = {"epochs": epochs, "batch_size": batch_size, "hidden_units": [32, 16], "learning_rate": 0.005,
              "early_stopping": False, "target_column": "label", "data_path": "data.csv", "seed": 0,
              "device": "cpu"}
    ids, start_seconds = [], []
    for i in range(n_tasks):
        t0 = time.perf_counter()
        r = requests.post(server.api_url("start"), json={**config, "name": f"load {i}"}, headers=h, timeout=timeout)
        r.raise_for_status()
        ids.append(r.json()["task_id"])
        start_seconds.append(time.perf_counter() - t0)
        requests.post(server.api_url("pause", ids[-1]), headers=h, timeout=timeout).raise_for_status()

    watchers = [Watcher(server.api_url("stream-progress", ids[i % n_tasks]), h, timeout) for i in range(n_clients)]
    for w in watchers:
        w.start()
    for w in watchers:
        w.connected.wait(max(0.0, deadline - time.monotonic()))
    while sum(t["watchers"] for t in requests.get(server.api_url("tasks"), headers=h).json()["tasks"]) < n_clients:
        if time.monotonic() > deadline or any(w.error for w in watchers):
            break
        time.sleep(0.05)
    connected = sum(t["watchers"] for t in requests.get(server.api_url("tasks"), headers=h).json()["tasks"])

    t0 = time.perf_counter()
    for task_id in ids:
        requests.post(server.api_url("resume", task_id), headers=h, timeout=timeout).raise_for_status()
    for w in watchers:
        w.join(max(0.0, deadline - time.monotonic()))
    run_seconds = time.perf_counter() - t0

    # Every client must hold, after its first (current) progress, each later epoch exactly once.
    lost = repeated = incomplete = expected_events = 0
    arrival: dict[tuple[str, int], list[float]] = defaultdict(list)
    for w in watchers:
        progress = [(ts, e) for ts, e in w.events if e["type"] == "progress"]
        got = [e["progress"]["current_epoch"] for _, e in progress]
        if not got or not w.events or w.events[-1][1]["type"] != "complete":
            incomplete += 1
            continue
        later = got[1:]
        expected = list(range(got[0] + 1, epochs + 1))
        # The first (current) progress, each later epoch, the states running and completed, complete.
        # A task may finish an epoch before its start-then-pause lands, so got[0] can be 1, not 0.
        expected_events += 1 + len(expected) + 2 + 1
        lost += len(set(expected) - set(later))
        repeated += len(later) - len(set(later))
        for ts, e in progress[1:]:
            arrival[(e["task_id"], e["progress"]["current_epoch"])].append(ts)
    spread = max((max(v) - min(v) for v in arrival.values()), default=0.0)

    states = [requests.get(server.api_url("progress", i), headers=h).json()["progress"]["training_state"] for i in ids]
    time.sleep(1.0)                      # let the workers' reader threads finish after exit
    tasks_after = requests.get(server.api_url("tasks"), headers=h).json()["tasks"]
    after = _proc_figures(server.process.pid)
    figures = {
        "tasks": n_tasks, "clients": n_clients, "epochs": epochs, "clients_connected": connected,
        "client_errors": [w.error for w in watchers if w.error], "clients_incomplete": incomplete,
        "events_received": sum(len(w.events) for w in watchers), "events_expected": expected_events,
        "lost_events": lost, "repeated_events": repeated,
        "final_states": states, "start_seconds": [round(s, 2) for s in start_seconds],
        "run_seconds": round(run_seconds, 2),
        "events_per_second": round(sum(len(w.events) for w in watchers) / max(run_seconds, 1e-9), 1),
        "max_fanout_spread_ms": round(spread * 1000, 1),
        "watchers_after": sum(t["watchers"] for t in tasks_after),
        "server_fds": (before["fds"], after["fds"]), "server_threads": (before["threads"], after["threads"]),
    }
    log(json.dumps(figures, indent=2))
    return figures


def problems(f: dict[str, Any]) -> list[str]:
    """What went wrong in a run's figures; empty when the API held the load."""
    out = []
    if f["client_errors"] or f["clients_incomplete"] or f["clients_connected"] != f["clients"]:
        out.append(f"clients: {f['clients_connected']}/{f['clients']} connected, {f['clients_incomplete']} "
                   f"incomplete, errors {f['client_errors'][:3]}")
    if f["lost_events"] or f["repeated_events"]:
        out.append(f"{f['lost_events']} events lost, {f['repeated_events']} repeated")
    if f["final_states"] != ["completed"] * f["tasks"]:
        out.append(f"final states {f['final_states']}")
    if f["watchers_after"]:
        out.append(f"{f['watchers_after']} watchers left after every stream ended")
    # A few descriptors of slack for the server's own housekeeping (log files, sockets it reuses).
    if f["server_fds"][1] > f["server_fds"][0] + 5:
        out.append(f"file descriptors grew from {f['server_fds'][0]} to {f['server_fds'][1]}")
    if f["server_threads"][1] > f["server_threads"][0] + 2:
        out.append(f"threads grew from {f['server_threads'][0]} to {f['server_threads'][1]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=150.0)
    args = ap.parse_args()
    found = problems(run_load(args.tasks, args.clients, args.epochs, timeout=args.timeout))
    for p in found:
        print("PROBLEM:", p)
    print("OK" if not found else "FAILED")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
