"""Training throughput on 1, 2, ... N GPUs through the trainer's own multi-device path.

For each device count the trainer trains the same MLP on the same synthetic data for a few
epochs; the figure is train samples per second from the median ``time_per_epoch`` after the
first (warm-up) epoch. The reference is devices=1 measured in the same run, so the table reads
as speed-up and efficiency (speed-up / N), never as an absolute number from elsewhere.

By default the per-device batch stays constant (global batch = ``--per-device-batch`` x N), the
usual way to scale; ``--fixed-global-batch`` keeps the global batch instead (same optimisation
steps as one device, smaller per-device work).

    python benchmarks/gpu_scaling.py                          # torch, every visible GPU
    python benchmarks/gpu_scaling.py --framework tensorflow   # MirroredStrategy
    python benchmarks/gpu_scaling.py --cpu-processes 2        # dry run on CPU processes (gloo)

On a machine without a GPU it says so and exits 0 without measuring, unless --cpu-processes is given.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Optional

import numpy as np
import pandas as pd

FEATURES = 32


def make_data(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    w = rng.standard_normal(FEATURES)
    y = ((x @ w + 0.3 * rng.standard_normal(rows)) > 0).astype(np.int64)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    df["label"] = y
    return df


def visible_gpus(framework: str) -> tuple[int, str]:
    from trainer.distributed.plan import gpu_count

    return gpu_count(framework)


def measure(framework: str, devices: int, device: str, df: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    from trainer import Trainer

    batch = args.per_device_batch * (1 if args.fixed_global_batch else devices)
    config = {"backend": framework, "device": device, "devices": devices, "seed": 0, "epochs": args.epochs,
              "batch_size": batch, "hidden_units": args.hidden_units, "dropout_rate": 0.0,
              "learning_rate": 1e-3, "learning_rate_scheduler": "none", "early_stopping": False,
              "target_column": "label", "mixed_precision": args.mixed_precision}
    started = time.perf_counter()
    run = Trainer(config, df).fit()
    total = time.perf_counter() - started
    if run.state.value != "completed":
        raise RuntimeError(f"devices={devices}: the run ended {run.state.value}: {run.reason}")
    epoch_times = [h["time_per_epoch"] for h in run.history[1:]] or [run.history[0]["time_per_epoch"]]
    per_epoch = statistics.median(epoch_times)
    return {"devices": devices, "global_batch": batch, "epoch_seconds": per_epoch,
            "samples_per_second": len(run.data.train_index) / per_epoch, "wall_seconds": total,
            "described": run.backend.device_name}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--framework", choices=["torch", "tensorflow"], default="torch")
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--per-device-batch", type=int, default=512)
    ap.add_argument("--fixed-global-batch", action="store_true", help="keep the global batch at --per-device-batch")
    ap.add_argument("--hidden-units", type=int, nargs="+", default=[1024, 512, 256])
    ap.add_argument("--mixed-precision", action="store_true")
    ap.add_argument("--max-devices", type=int, help="stop at this many (default: all visible)")
    ap.add_argument("--cpu-processes", type=int, help="no GPU needed: measure 1..N CPU processes/replicas instead")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)

    if args.cpu_processes:
        count, device, what = args.cpu_processes, "cpu", "CPU processes" if args.framework == "torch" else "CPU replicas"
    else:
        count, why = visible_gpus(args.framework)
        if count == 0:
            print(f"gpu_scaling: {args.framework} sees no GPU ({why}); scaling was not measured. "
                  f"Run this on a GPU machine, or pass --cpu-processes N for a dry run on the CPU.")
            return 0
        device, what = "cuda", "GPUs"
    count = min(count, args.max_devices or count)
    df = make_data(args.rows)
    print(f"{args.framework}: {args.rows} rows x {FEATURES} features, MLP {args.hidden_units}, "
          f"{'global' if args.fixed_global_batch else 'per-device'} batch {args.per_device_batch}, "
          f"{args.epochs} epochs per point, 1..{count} {what}")
    results = []
    counts = [n for n in range(1, count + 1)]
    if args.framework == "tensorflow" and device == "cpu":
        counts = [1, count]      # logical CPU devices are fixed once TensorFlow starts: largest first below
        counts.reverse()
    for n in counts:
        results.append(measure(args.framework, n, device, df, args))
    results.sort(key=lambda r: r["devices"])
    base = results[0]["samples_per_second"]
    print(f"{'devices':>7}  {'global batch':>12}  {'samples/s':>10}  {'speed-up':>8}  {'efficiency':>10}  where")
    for r in results:
        speedup = r["samples_per_second"] / base
        r["speedup"], r["efficiency"] = speedup, speedup / r["devices"]
        print(f"{r['devices']:>7}  {r['global_batch']:>12}  {r['samples_per_second']:>10.0f}  {speedup:>8.2f}  "
              f"{r['efficiency']:>10.2f}  {r['described']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"framework": args.framework, "rows": args.rows, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
