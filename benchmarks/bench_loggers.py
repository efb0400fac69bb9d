"""Do the TensorBoard and MLflow loggers slow training down, and what does one epoch's logging cost?

Each side runs in its OWN fresh process, alternating over rounds, and trains the same seeded config
twice there (the first run pays the one-off imports, the second is a kernel's later run):
  none     loggers=[]
  loggers  loggers=["tensorboard", "mlflow"] (MLflow's local SQLite store beside the runs)
Reports per run the median steady-state throughput (samples/s over epochs 2..N, from
time_per_epoch), the median end-to-end time (Trainer built to fit() returned, the loggers' start-up
and final flush included), the loggers/none ratios, the median milliseconds each logger's thread
spent writing one epoch, and the microseconds the run's own thread spends handing it an epoch.

    python benchmarks/bench_loggers.py [--rows 20000] [--epochs 8] [--rounds 5] [--batch-size 64]

Exits 1 when the later run's steady-state ratio is under the target (``--no-check`` to only report).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 0.95
SIDES = {"none": [], "loggers": ["tensorboard", "mlflow"]}


def side(args: argparse.Namespace) -> dict:
    """Two runs, one after the other, in this fresh process; prints their measurements as JSON.

    The first pays the one-off costs (importing the tracking packages on the loggers' thread while
    it trains; creating the local MLflow store in the first round); the second shows a kernel's
    later runs.
    """
    from trainer import Trainer
    from trainer.datasets import make_classification
    from trainer.loggers import BackgroundLogger

    df = make_classification(args.rows, seed=0)
    result: dict = {"side": args.side}
    for which in ("first", "second"):
        # Runs side by side share one local MLflow store: only the first round creates it.
        out = Path(args.workdir) / "models" / f"{args.side}-{os.getpid()}-{which}"
        config = {"target_column": "label", "epochs": args.epochs, "batch_size": args.batch_size, "seed": 0,
                  "device": "cpu", "early_stopping": False, "learning_rate_scheduler": "none",
                  "output_path": str(out), "loggers": SIDES[args.side]}
        began = time.perf_counter()
        run = Trainer(config, df)
        run.fit()
        total = time.perf_counter() - began
        assert run.state.value == "completed" and not run.observer_errors, run.observer_errors
        steady = run.history[1:]
        samples = len(run.data.train_index) * len(steady)
        result[f"{which}_samples_per_s"] = samples / sum(h["time_per_epoch"] for h in steady)
        result[f"{which}_seconds"] = total
        loggers = [o for o in run.events._observers if isinstance(o, BackgroundLogger)]
        for logger in loggers:
            result[f"{which}_{logger.title}_epoch_ms"] = statistics.median(logger.epoch_seconds) * 1e3
        if loggers and which == "second":
            # What the run's thread pays per epoch: handing the entry to the logger's queue.
            logger, entry = loggers[0], [dict(run.history[-1])]
            began = time.perf_counter()
            for _ in range(1000):
                logger._submit(logger._timed_epochs, entry, "benchmark")
            result["hook_us"] = (time.perf_counter() - began) / 1000 * 1e6
    return result


def main(args: argparse.Namespace) -> int:
    results: dict[str, list[dict]] = {name: [] for name in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench_loggers_") as workdir:
        for i in range(args.rounds):
            order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
            for name in order:
                cmd = [sys.executable, __file__, "--side", name, "--workdir", workdir, "--rows", str(args.rows),
                       "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results[name].append(result)
                print(f"round {i + 1} {name:8s} " + "  ".join(f"{k} {v:.4g}" for k, v in result.items() if k != "side"),
                      flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "side"} for name, rs in results.items()}
    ratios = {f"{which}_{what}": (med["loggers"][f"{which}_samples_per_s"] / med["none"][f"{which}_samples_per_s"]
                                  if what == "steady_state" else
                                  med["none"][f"{which}_seconds"] / med["loggers"][f"{which}_seconds"])
              for which in ("first", "second") for what in ("steady_state", "end_to_end")}
    ratio = ratios["second_steady_state"]
    summary = {"rows": args.rows, "epochs": args.epochs, "batch_size": args.batch_size, "rounds": args.rounds,
               "medians": med, "ratios (loggers / none throughput)": ratios, "target_ratio": TARGET_RATIO}
    print(json.dumps(summary, indent=2))
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"loggers/none steady-state throughput ratio of a later run {ratio:.3f} (target >= {TARGET_RATIO}): {verdict}")
    return 0 if ratio >= TARGET_RATIO or args.no_check else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--no-check", action="store_true", help="report only; never exit 1")
    ap.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    parsed = ap.parse_args()
    if parsed.side:
        print(json.dumps(side(parsed)))
        sys.exit(0)
    sys.exit(main(parsed))
