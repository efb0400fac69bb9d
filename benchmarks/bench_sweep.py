"""Sweeps, measured: the best result against an exhaustive grid, the epochs pruning saves, and the
wall time of two trials at once against one.

    python benchmarks/bench_sweep.py            # about 15-25 minutes on a busy 2-core machine
    python benchmarks/bench_sweep.py --quick    # fewer epochs and rounds: a smoke run

Data: scikit-learn's ``load_digits`` (1,797 8x8 images, 10 classes; it ships with scikit-learn).
Space: every combination of ``learning_rate`` x ``hidden_units`` x ``batch_size`` below (12), so
a grid over it is exhaustive. Each sweep runs in a fresh Python process of its own (``--side``)
and reports its best ``val_loss``, the epochs its trials trained and its wall time:

  grid              every combination, no pruning (the exhaustive reference)
  grid-median       the same trials in the same order (same seed), median pruning
  tpe-median        TPE with median pruning, half as many trials as the grid
  grid-parallel-2   the grid with two trials at once (worker processes) against ``grid`` with one

The wall-time sides alternate over ``--rounds`` (odd rounds reversed) and their ratio is the
median of the per-round ratios. Targets: pruning saves >= 40 % of the grid's epochs with a best
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
    "tpe-median": {"sampler": "tpe", "pruner": "median", "parallel": 1, "fraction": 0.5},
    "grid-parallel-2": {"sampler": "grid", "pruner": None, "parallel": 2},
}
PRUNING_SAVES = 0.40       # at least this share of the grid's epochs
EQUAL_BEST = 0.02          # "equal best result": a best val_loss within 2 % of the grid's
TPE_BEST = 0.05


def run_side(spec: dict[str, Any]) -> dict[str, Any]:
    """One sweep, in this process: its best, epochs and wall time."""
    from sklearn.datasets import load_digits

    from trainer import choice, sweep

    df = load_digits(as_frame=True).frame
    grid = 1
    for values in SPACE.values():
        grid *= len(values)
    side = SIDES[spec["side"]]
    trials = max(1, int(grid * side.get("fraction", 1.0)))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as folder:
        started = time.perf_counter()
        s = sweep({**CONFIG, "epochs": spec["epochs"]}, df, {k: choice(v) for k, v in SPACE.items()},
                  trials=trials, parallel=side["parallel"], sampler=side["sampler"], pruner=side["pruner"],
                  output_path=Path(folder) / "sweep", seed=0).wait()
        wall = time.perf_counter() - started
        best = s.best_trial
        return {"side": spec["side"], "state": s.state, "trials": len(s.trials), "wall": wall,
                "epochs": int(sum(t.epochs_done for t in s.trials)),
                "pruned": sum(t.state == "pruned" for t in s.trials),
                "failed": sum(t.state == "failed" for t in s.trials),
                "best": best.best_metric if best else None, "best_params": best.params if best else None,
                "best_accuracy": max((e.get("val_accuracy", 0.0) for e in best.history), default=None) if best else None}


def spawn(side: str, epochs: int, timeout: float) -> dict[str, Any]:
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
    parser.add_argument("--quick", action="store_true", help="6 epochs, 1 round")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 10)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the wall-time sides (default 2)")
    parser.add_argument("--no-check", action="store_true", help="report without checking the targets")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.side:
        print(RESULT_PREFIX + json.dumps(run_side(json.loads(args.side))), flush=True)
        return 0
    epochs = args.epochs or (6 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 2)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in SIDES}
    for r in range(rounds):
        order = ["grid", "grid-parallel-2"] if r % 2 == 0 else ["grid-parallel-2", "grid"]
        if r == 0:
            order += ["grid-median", "tpe-median"]
        for side in order:
            print(f"round {r + 1}/{rounds}: {side} ...", file=sys.stderr, flush=True)
            results[side].append(spawn(side, epochs, timeout=3600))
    return report(results, epochs, rounds, args)


def report(results: dict[str, list[dict[str, Any]]], epochs: int, rounds: int, args: argparse.Namespace) -> int:
    grid, pruned, tpe = results["grid"][0], results["grid-median"][0], results["tpe-median"][0]
    speedups = [one["wall"] / two["wall"] for one, two in zip(results["grid"], results["grid-parallel-2"])]
    saved = 1 - pruned["epochs"] / grid["epochs"]
    pruned_gap = pruned["best"] / grid["best"] - 1
    tpe_gap = tpe["best"] / grid["best"] - 1
    lines = [f"Sweeps on scikit-learn's digits (1,797 rows, 10 classes), {epochs} epochs per trial, space of "
             f"{grid['trials']} combinations; best = lowest val_loss (its val_accuracy)", "",
             "| sweep | trials | pruned | epochs trained | best val_loss | wall (s, median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, label in (("grid", "grid, exhaustive (reference)"), ("grid-median", "grid + median pruning"),
                        ("tpe-median", "TPE + median pruning"), ("grid-parallel-2", "grid, parallel=2")):
        first = results[name][0]
        wall = statistics.median(r["wall"] for r in results[name])
        lines.append(f"| {label} | {first['trials']} | {first['pruned']} | {first['epochs']} | "
                     f"{first['best']:.4f} ({first['best_accuracy']:.3f}) | {wall:.1f} |")
    lines += ["", f"- pruning saved {saved:.0%} of the epochs (target >= {PRUNING_SAVES:.0%}); its best val_loss is "
                  f"{pruned_gap:+.1%} from the grid's (target within {EQUAL_BEST:.0%})",
              f"- TPE with pruning, {tpe['trials']} trials: best {tpe_gap:+.1%} from the exhaustive grid's, in "
              f"{tpe['epochs']} epochs against {grid['epochs']}",
              f"- parallel=2 against parallel=1: {statistics.median(speedups):.2f}x faster (median of {rounds} "
              f"round(s): {', '.join(f'{s:.2f}' for s in speedups)})"]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    missed = [m for m, ok in (("pruning saves", saved >= PRUNING_SAVES), ("equal best", abs(pruned_gap) <= EQUAL_BEST),
                              ("TPE best", tpe_gap <= TPE_BEST)) if not ok]
    if missed and not args.no_check:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
