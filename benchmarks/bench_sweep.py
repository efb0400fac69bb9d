"""Sweeps, measured: the best result against an exhaustive grid, the epochs pruning saves, and the
wall time of two trials at once against one.

    python benchmarks/bench_sweep.py            # about 6 minutes on an idle 2-core machine
    python benchmarks/bench_sweep.py --quick    # one length of trial, one round: a smoke run

Data: scikit-learn's ``load_digits`` (1,797 8x8 images, 10 classes; it ships with scikit-learn).
Space: every combination of ``learning_rate`` x ``hidden_units`` x ``batch_size`` below (12), so
a grid over it is exhaustive. Each sweep runs in a fresh Python process of its own (``--side``)
and reports its best ``val_loss``, the epochs its trials trained and its wall time.

Search, at each trial length of ``--pruning-epochs`` (default 6, 10 and 20 epochs per trial):

  grid              every combination, no pruning (the exhaustive reference)
  grid-median       the same trials in the same order (same seed), median pruning
  grid-asha         the same, asynchronous successive halving
  tpe-median        TPE with median pruning, half as many trials as the grid

Wall time, at ``--epochs`` (10) and ``--long-epochs`` (40) epochs per trial: the grid one trial at
a time, two at once in worker processes (``parallel=2``, the default launcher), and two at once with
one of them in the sweep's process (``ProcessLauncher(2, in_process=True)``). These sides alternate
over ``--rounds`` (the order rotates each round); each ratio to one at a time is the median of the
per-round ratios.

Targets, at every trial length: median pruning saves >= 40 % of the grid's epochs with a best
``val_loss`` within 2 % of the grid's; TPE's best is within 5 % of the grid's. Exit 1 when a
target is missed (``--no-check`` only reports).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "SWEEP-RESULT "
SPACE = {"learning_rate": [1e-4, 1e-3, 1e-2], "hidden_units": [[32], [128, 64]], "batch_size": [32, 128]}
CONFIG = {"target_column": "target", "device": "cpu", "seed": 0, "early_stopping": False,
          "learning_rate_scheduler": "none", "dropout_rate": 0.1, "checkpoints": False}
SIDES = {
    "grid": {"sampler": "grid", "pruner": None, "parallel": 1},
    "grid-median": {"sampler": "grid", "pruner": "median", "parallel": 1},
    "grid-asha": {"sampler": "grid", "pruner": "asha", "parallel": 1},
    "tpe-median": {"sampler": "tpe", "pruner": "median", "parallel": 1, "fraction": 0.5},
    "grid-parallel-2": {"sampler": "grid", "pruner": None, "parallel": 2},
    "grid-parallel-2-here": {"sampler": "grid", "pruner": None, "parallel": 2, "in_process": True},
}
WALL = ("grid", "grid-parallel-2", "grid-parallel-2-here")
SEARCH = ("grid", "grid-median", "grid-asha", "tpe-median")
PRUNING_SAVES = 0.40       # at least this share of the grid's epochs
EQUAL_BEST = 0.02          # "equal best result": a best val_loss within 2 % of the grid's
TPE_BEST = 0.05


def run_side(spec: dict[str, Any]) -> dict[str, Any]:
    """One sweep, in this process: its best, epochs and wall time."""
    from sklearn.datasets import load_digits

    from trainer import choice, sweep
    from trainer.sweep import ProcessLauncher

    df = load_digits(as_frame=True).frame
    grid = 1
    for values in SPACE.values():
        grid *= len(values)
    side = SIDES[spec["side"]]
    trials = max(1, int(grid * side.get("fraction", 1.0)))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as folder:
        launcher = ProcessLauncher(side["parallel"], in_process=True) if side.get("in_process") else None
        started = time.perf_counter()
        s = sweep({**CONFIG, "epochs": spec["epochs"]}, df, {k: choice(v) for k, v in SPACE.items()},
                  trials=trials, parallel=side["parallel"], sampler=side["sampler"], pruner=side["pruner"],
                  output_path=Path(folder) / "sweep", seed=0, launcher=launcher).wait()
        wall = time.perf_counter() - started
        best = s.best_trial
        return {"side": spec["side"], "epochs_per_trial": spec["epochs"], "state": s.state, "trials": len(s.trials),
                "wall": wall, "epochs": int(sum(t.epochs_done for t in s.trials)),
                "pruned": sum(t.state == "pruned" for t in s.trials),
                "failed": sum(t.state == "failed" for t in s.trials),
                "best": best.best_metric if best else None, "best_params": best.params if best else None,
                "best_accuracy": (max((e.get("val_accuracy", 0.0) for e in best.history), default=None)
                                  if best else None)}


def spawn(side: str, epochs: int, timeout: float = 3600) -> dict[str, Any]:
    print(f"  {side}, {epochs} epochs per trial ...", file=sys.stderr, flush=True)
    spec = json.dumps({"side": side, "epochs": epochs})
    proc = subprocess.run([sys.executable, __file__, "--side", spec], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, env=_env())
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"side {side} reported nothing (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _env() -> dict[str, str]:
    import os

    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(REPO_ROOT), path] if p)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="6 epochs per trial only, 1 round")
    parser.add_argument("--pruning-epochs", default=None,
                        help="trial lengths of the search sides (default 6,10,20; none: no search sides)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial of the short wall-time pair (10)")
    parser.add_argument("--long-epochs", type=int, default=40, help="epochs per trial of the long wall-time pair (40)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the wall-time sides (default 3)")
    parser.add_argument("--no-check", action="store_true", help="report without checking the targets")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.side:
        print(RESULT_PREFIX + json.dumps(run_side(json.loads(args.side))), flush=True)
        return 0
    lengths = [int(e) for e in (args.pruning_epochs or ("6" if args.quick else "6,10,20")).split(",") if e != "none"]
    epochs = args.epochs or (6 if args.quick else 10)
    pairs = [epochs] if args.quick else [epochs, args.long_epochs]
    rounds = args.rounds or (1 if args.quick else 3)
    search = {n: {side: spawn(side, n) for side in SEARCH} for n in lengths}
    walls: dict[int, dict[str, list[float]]] = {n: {side: [] for side in WALL} for n in pairs}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds} of the wall-time sides", file=sys.stderr, flush=True)
        for n in pairs:
            for side in WALL[r % len(WALL):] + WALL[:r % len(WALL)]:
                walls[n][side].append(spawn(side, n)["wall"])
    if args.json:
        args.json.write_text(json.dumps({"search": search, "walls": walls}, indent=1))
    return report(search, walls, rounds, args)


def report(search: dict[int, dict[str, dict[str, Any]]], walls: dict[int, dict[str, list[float]]], rounds: int,
           args: argparse.Namespace) -> int:
    lines = ["Sweeps on scikit-learn's digits (1,797 rows, 10 classes), a space of 12 combinations; best = lowest "
             "val_loss (its val_accuracy)", "",
             "| epochs per trial | sweep | trials | pruned | epochs trained | saved | best val_loss | from the grid's |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    missed: list[str] = []
    for n, sides in search.items():
        grid = sides["grid"]
        for name in SEARCH:
            one = sides[name]
            saved, gap = 1 - one["epochs"] / grid["epochs"], one["best"] / grid["best"] - 1
            lines.append(f"| {n} | {name} | {one['trials']} | {one['pruned']} | {one['epochs']} | {saved:.0%} | "
                         f"{one['best']:.4f} ({one['best_accuracy']:.3f}) | {gap:+.1%} |")
            if name == "grid-median" and (saved < PRUNING_SAVES or abs(gap) > EQUAL_BEST):
                missed.append(f"median pruning at {n} epochs (saved {saved:.0%}, best {gap:+.1%})")
            if name == "tpe-median" and gap > TPE_BEST:
                missed.append(f"TPE at {n} epochs (best {gap:+.1%})")
    lines += ["", "| epochs per trial | sweep | wall (s, median) | as fast as one at a time |", "|---:|---|---:|---:|"]
    for n, by in walls.items():
        for side in WALL:
            ratios = [a / b for a, b in zip(by["grid"], by[side])]
            lines.append(f"| {n} | {side} | {statistics.median(by[side]):.1f} | {statistics.median(ratios):.2f}x "
                         f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}) |")
    print("\n".join(lines))
    if missed and not args.no_check:
        print(f"targets missed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
