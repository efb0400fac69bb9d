"""Peak memory and data-preparation time of ``Trainer(cfg, df).fit()`` against the DataFrame's size.

Each measurement runs in a fresh process of its own (``--child ROWS``), and the sizes take turns
over the rounds (0.5M, 1M, 2M, 4M, 0.5M, ...); each figure is the median over rounds. A child
builds the benchmark DataFrame (``make_benchmark``: 20 float32 features and an int64 label, 88
bytes a row), trains a tiny run first so that torch's lazy set-up is not counted, then resets the
process's peak resident set size (``/proc/self/clear_refs``; without it the peak so far is the
baseline) and measures:

- prep seconds: ``Trainer(cfg, df)`` (checks, split, scaling, encoding, the backend's tensors),
  wall-clock and CPU time (on a busy machine the CPU time is the steadier figure);
- peak added: the peak resident set size during ``Trainer(cfg, df).fit()`` (MLP 20-128-64-32-2,
  ``--backend`` (torch) on the CPU, ``--epochs`` epochs, no artifacts) minus the baseline;
- ratio: peak added / the DataFrame's numeric bytes.

    python benchmarks/bench_data_prep.py                       # 0.5M..4M rows, 3 rounds
    python benchmarks/bench_data_prep.py --rows 500000 2000000 --rounds 1
    python benchmarks/bench_data_prep.py --backend tensorflow --rows 2000000 --rounds 1
    git worktree add /tmp/before HEAD~3 && python benchmarks/bench_data_prep.py --compare /tmp/before

Prints a markdown table with the machine, its load and the date; exits 1 if, with the torch
backend from 2M rows up, a ratio is above ``--max-ratio`` (2.5) or a preparation takes longer than ``--max-prep`` seconds per
2M rows (2.0; ``--clock cpu`` checks CPU time instead of wall-clock time).
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
# The limits are checked from the 2M rows up; smaller frames carry a fixed ~20 MiB
# (allocator arenas, per-batch buffers) that is no multiple of the data.
CHECKED_FROM = 2_000_000


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


def child(rows: int, epochs: int, batch_size: int, backend: str) -> dict[str, Any]:
    # The framework is imported before the baseline: its own memory is not the data's.
    import importlib
    importlib.import_module("torch" if backend == "torch" else "tensorflow")

    from trainer import Trainer
    from trainer.datasets import make_benchmark

    config = {"model_type": "mlp", "hidden_units": [128, 64, 32], "batch_size": batch_size, "epochs": epochs,
              "seed": 0, "target_column": "label", "early_stopping": False, "device": "cpu",
              "learning_rate_scheduler": "none", "checkpoints": False, "backend": backend}
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


def _run_child(rows: int, args: argparse.Namespace, code: Optional[str] = None) -> Optional[dict[str, Any]]:
    """One measurement in a fresh interpreter; ``code``: a checkout whose ``trainer`` it imports."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(rows),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--backend", args.backend]
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(code).resolve()), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode < 0:
        # Killed, most likely by the kernel's out-of-memory killer on a machine others share too.
        print(f"the child for {rows:,} rows ({code or 'this checkout'}) was killed by signal "
              f"{-proc.returncode}; left out", file=sys.stderr, flush=True)
        return None
    if proc.returncode != 0:
        raise SystemExit(f"the child for {rows} rows ({code or 'this checkout'}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _medians(rs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rs) for k in rs[0]}


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
    ap.add_argument("--backend", choices=["torch", "tensorflow"], default="torch")
    ap.add_argument("--max-ratio", type=float, default=2.5)
    ap.add_argument("--max-prep", type=float, default=2.0, help="seconds per 2M rows")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="which preparation time --max-prep checks (cpu: steadier on a busy machine)")
    ap.add_argument("--compare", metavar="CHECKOUT",
                    help="also measure the trainer package of another checkout (e.g. a git worktree of the "
                         "commit before a change), alternating with this one")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.batch_size, args.backend)))
        return 0

    sides = ["this"] + (["compare"] if args.compare else [])
    results: dict[tuple[str, int], list[dict[str, Any]]] = {(side, r): [] for side in sides for r in args.rows}
    for i in range(args.rounds):
        for rows in args.rows:
            # Sides alternate within a round and swap order between rounds.
            for side in (sides if i % 2 == 0 else sides[::-1]):
                result = _run_child(rows, args, args.compare if side == "compare" else None)
                if result is not None:
                    results[side, rows].append(result)
                    print(f"round {i + 1}/{args.rounds}, {side}: {json.dumps(result)}", file=sys.stderr, flush=True)
    print(f"Data preparation and peak memory of Trainer(cfg, df).fit() ({args.backend}, CPU, {args.epochs} epochs, "
          f"batch {args.batch_size}); median of {args.rounds} round(s), each in its own process.")
    print(f"{_machine()}; load average {os.getloadavg()[0]:.1f}; {datetime.date.today().isoformat()}\n")
    header = "| rows | DataFrame MiB | prep s | prep CPU s | fit s | peak added MiB | ratio |"
    if args.compare:
        header += " compare: prep s | prep CPU s | peak added MiB | ratio |"
    print(header)
    print("|" + "---:|" * (header.count("|") - 1))
    failed = []
    for rows in args.rows:
        if not all(results[side, rows] for side in sides):
            print(f"| {rows:,} | every measurement of a side was killed |")
            failed.append(f"{rows:,} rows: no measurement")
            continue
        m = _medians(results["this", rows])
        df_mib = m["df_bytes"] / MIB
        added = m["peak_added_bytes"] / MIB
        ratio = added / df_mib
        line = (f"| {rows:,} | {df_mib:.0f} | {m['prep_s']:.2f} | {m['prep_cpu_s']:.2f} | {m['fit_s']:.1f} | "
                f"{added:.0f} | {ratio:.2f} |")
        if args.compare:
            c = _medians(results["compare", rows])
            line += (f" {c['prep_s']:.2f} | {c['prep_cpu_s']:.2f} | {c['peak_added_bytes'] / MIB:.0f} | "
                     f"{c['peak_added_bytes'] / MIB / df_mib:.2f} |")
        print(line)
        if rows < CHECKED_FROM or args.backend != "torch":     # the limits are the torch backend's
            continue
        if ratio > args.max_ratio:
            failed.append(f"{rows:,} rows: peak {ratio:.2f}x the DataFrame, above {args.max_ratio}")
        measured = m["prep_cpu_s"] if args.clock == "cpu" else m["prep_s"]
        if measured > args.max_prep * rows / 2_000_000:
            failed.append(f"{rows:,} rows: preparation {measured:.2f} s ({args.clock}), "
                          f"above {args.max_prep} s per 2M rows")
    measured_rows = [r for r in args.rows if results["this", r]]
    first, last = (measured_rows[0], measured_rows[-1]) if measured_rows else (0, 0)
    if last != first:
        a, b = _medians(results["this", first]), _medians(results["this", last])

        def grew(key: str) -> str:     # tiny frames may add no resident memory at all
            return f"x{b[key] / a[key]:.1f}" if a[key] > 0 else "from 0"

        print(f"\nFrom {first:,} to {last:,} rows ({last / first:.0f}x): prep time {grew('prep_s')} "
              f"(CPU {grew('prep_cpu_s')}), peak added {grew('peak_added_bytes')}.")
    for line in failed:
        print("FAILED: " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
