"""What a task costs on a Ray actor against a local worker process, through the HTTP API.

    python benchmarks/bench_ray.py [--rounds 3] [--rows 20000] [--epochs 6] [--batch-size 64]

A local Ray instance is started here and kept for the whole run, as a cluster would be (its idle
processes run during every side). Each round starts one fresh API server per side, alternating, each
in its own process: ``local`` (a worker process per task), ``ray`` (joins the instance; one CPU per
task, the default) and ``ray-2cpu`` (``ray_cpus_per_task=2``). On each, one task is timed from the
client: the start latency (``POST start`` until it answers: the data is read, the run built and
about to train), the time to the first epoch's ``progress`` event, and the seconds per epoch (median
over the later epochs, between their SSE events; and the run's own ``time_per_epoch``). Prints each
side's medians and its ratio to ``local``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import sseclient

from epoch_widgets.server.launch import BackgroundServer
from trainer import datasets

SIDES = {"local": [], "ray": ["--EpochTrainingApp.executor=ray"],
         "ray-2cpu": ["--EpochTrainingApp.executor=ray", "--EpochTrainingApp.ray_cpus_per_task=2"]}


def time_one_task(side: str, root: Path, work: Path, address: str, config: dict[str, Any]) -> dict[str, float]:
    extra = ["--EpochTrainingApp.keepalive_interval=1", *SIDES[side]]
    if side != "local":
        extra.append(f"--EpochTrainingApp.ray_address={address}")
    server = BackgroundServer(root, tasks_dir=work / f"tasks-{side}", models_dir=work / f"models-{side}",
                              log_file=work / f"server-{side}.log", extra_args=extra)
    server.start(timeout=300)
    try:
        h = server.headers
        t0 = time.perf_counter()
        r = requests.post(server.api_url("start"), json=config, headers=h, timeout=300)
        r.raise_for_status()
        started = time.perf_counter() - t0
        task_id = r.json()["task_id"]
        arrivals: dict[int, float] = {}
        response = requests.get(server.api_url("stream-progress", task_id), stream=True, headers=h, timeout=300)
        for event in sseclient.SSEClient(response).events():
            data = json.loads(event.data)
            if data["type"] == "progress":
                arrivals.setdefault(data["progress"]["current_epoch"], time.perf_counter() - t0)
            if data["type"] in ("complete", "error"):
                break
        response.close()
        if data.get("training_state") != "completed":
            raise RuntimeError(f"{side}: the task ended {data.get('training_state')}: {data.get('message')}")
        history = requests.get(server.api_url("history", task_id), headers=h, timeout=60).json()["history"]
    finally:
        server.stop()
    epochs = sorted(e for e in arrivals if e >= 1)
    gaps = [arrivals[b] - arrivals[a] for a, b in zip(epochs, epochs[1:])]
    return {"start_s": started, "first_epoch_s": arrivals[1], "epoch_s": statistics.median(gaps),
            "run_epoch_s": statistics.median(h["time_per_epoch"] for h in history[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    args = parser.parse_args(argv)

    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False)
    address = ray.get_runtime_context().gcs_address
    config = {"epochs": args.epochs, "batch_size": args.batch_size, "hidden_units": [128, 64], "seed": 0,
              "early_stopping": False, "target_column": "label", "data_path": "data.csv", "device": "cpu",
              "output_path": "bench"}
    results: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    try:
        with tempfile.TemporaryDirectory(prefix="epoch-bench-ray-") as tmp:
            work = Path(tmp)
            root = work / "root"
            root.mkdir()
            datasets.make_classification(args.rows, seed=7).to_csv(root / "data.csv", index=False)
            for round_ in range(args.rounds):
                for side in SIDES:
                    figures = time_one_task(side, root, work, address, {**config, "output_path": f"bench{round_}"})
                    results[side].append(figures)
                    print(f"round {round_ + 1} {side:9s} " + "  ".join(f"{k} {v:.2f}" for k, v in figures.items()),
                          flush=True)
    finally:
        ray.shutdown()

    print(f"\nmedians of {args.rounds} rounds ({args.rows} rows, batch {args.batch_size}, MLP 128-64, "
          f"{args.epochs} epochs; ratio to local in brackets)")
    medians = {side: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for side, rows in results.items()}
    for side, m in medians.items():
        print(f"{side:9s} " + "  ".join(f"{k} {v:.2f} ({v / medians['local'][k]:.2f}x)" for k, v in m.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
