"""Peak memory and data-preparation time of ``Trainer(cfg, df).fit()`` against the DataFrame's size.

Each measurement runs in a fresh process of its own (``--child ROWS``), and the sizes take turns
over the rounds (0.5M, 1M, 2M, 4M, 0.5M, ...); each figure is the median over rounds. A child
builds the benchmark DataFrame (``make_benchmark``: 20 float32 features and an int64 label, 84
bytes a row), trains a tiny run first so that torch's lazy set-up is not counted, then resets the
process's peak resident set size (``/proc/self/clear_refs``; without it the peak so far is the
baseline) and measures:

- prep seconds: ``Trainer(cfg, df)`` (checks, split, scaling, encoding, the backend's tensors);
- peak added: the peak resident set size during ``Trainer(cfg, df).fit()`` (MLP 20-128-64-32-2,
  torch backend on the CPU, ``--epochs`` epochs, no artifacts) minus the baseline;
- ratio: peak added / the DataFrame's numeric bytes.

    python benchmarks/bench_data_prep.py                       # 0.5M..4M rows, 3 rounds
    python benchmarks/bench_data_prep.py --rows 500000 2000000 --rounds 1

Prints a markdown table with the machine and the date; exits 1 if a ratio is above
``--max-ratio`` (2.5) or a preparation takes longer than ``--max-prep`` seconds per 2M rows (2.0).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

MIB = 2**20
DEFAULT_ROWS = (500_000, 1_000_000, 2_000_000, 4_000_000)


def _rss_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> int:
    """Reset the peak RSS to the current one if the kernel allows it; return the baseline in KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss    # KiB on Linux


def child(rows: int, epochs: int, batch_size: int) -> dict[str, Any]:
    import torch  # noqa: F401  (imported before the baseline: its own memory is not the data's)

    from trainer import Trainer
    from trainer.datasets import make_benchmark

    config = {"model_type": "mlp", "hidden_units": [128, 64, 32], "batch_size": batch_size, "epochs": epochs,
              "seed": 0, "target_column": "label", "early_stopping": False, "device": "cpu",
              "learning_rate_scheduler": "none", "checkpoints": False}
    Trainer({**config, "epochs": 1}, make_benchmark(5_000)).fit()
    df = make_benchmark(rows)
    numeric_bytes = int(df.memory_usage(index=False).sum())
    gc.collect()
    baseline = _reset_peak()
    started, cpu = time.perf_counter(), time.process_time()
    run = Trainer(config, df)
    prep, prep_cpu = time.perf_counter() - started, time.process_time() - cpu
    prep_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run.fit()
    fit = time.perf_counter() - started - prep
    assert run.state.value == "completed", run.error
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": rows, "df_bytes": numeric_bytes, "prep_s": prep, "prep_cpu_s": prep_cpu, "fit_s": fit,
            "prep_peak_added_bytes": (prep_peak - baseline) * 1024, "peak_added_bytes": (peak - baseline) * 1024}


def _run_child(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(rows),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the child for {rows} rows failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--max-ratio", type=float, default=2.5)
    ap.add_argument("--max-prep", type=float, default=2.0, help="seconds per 2M rows")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.batch_size)))
        return 0

    import torch
    results: dict[int, list[dict[str, Any]]] = {r: [] for r in args.rows}
    for i in range(args.rounds):
        for rows in args.rows:
            results[rows].append(_run_child(rows, args))
            print(f"round {i + 1}/{args.rounds}: {rows:,} rows done", file=sys.stderr, flush=True)
    print(f"Data preparation and peak memory of Trainer(cfg, df).fit() (torch {torch.__version__}, CPU, "
          f"{args.epochs} epochs, batch {args.batch_size}); median of {args.rounds} round(s), each in its own process.")
    print(f"{_machine()}; {datetime.date.today().isoformat()}\n")
    print("| rows | DataFrame MiB | prep s | fit s | peak added MiB | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    failed = []
    for rows in args.rows:
        rs = results[rows]
        df_mib = rs[0]["df_bytes"] / MIB
        prep = statistics.median(r["prep_s"] for r in rs)
        fit = statistics.median(r["fit_s"] for r in rs)
        added = statistics.median(r["peak_added_bytes"] for r in rs) / MIB
        ratio = added / df_mib
        print(f"| {rows:,} | {df_mib:.0f} | {prep:.2f} | {fit:.1f} | {added:.0f} | {ratio:.2f} |")
        if ratio > args.max_ratio:
            failed.append(f"{rows:,} rows: peak {ratio:.2f}x the DataFrame, above {args.max_ratio}")
        if prep > args.max_prep * rows / 2_000_000:
            failed.append(f"{rows:,} rows: preparation {prep:.2f} s, above {args.max_prep} s per 2M rows")
    first, last = args.rows[0], args.rows[-1]
    if last != first:
        grow = lambda key: statistics.median(r[key] for r in results[last]) / statistics.median(r[key] for r in results[first])  # noqa: E731
        print(f"\nFrom {first:,} to {last:,} rows ({last / first:.0f}x): prep time x{grow('prep_s'):.1f}, "
              f"peak added x{grow('peak_added_bytes'):.1f}.")
    for line in failed:
        print("FAILED: " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
