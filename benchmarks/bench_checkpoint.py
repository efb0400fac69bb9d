"""The cost of checkpointing: trainer throughput with a checkpoint every epoch (the default) against
the same run without checkpoints, measured in one process on the same data.

Both sides train the benchmark MLP (20 -> 128 -> 64 -> 32 -> 2, dropout 0.2, Adam 1e-3) on
the data of ``shared/bench/peers.py`` (DESIGN.md's peers) (200k rows x 20 features, 80 % for training) with the default
config otherwise, and both write their artifacts to an ``output_path``: the only difference is
``checkpoints=True`` / ``False``. They take turns epoch by epoch (off, on, on, off, ...): each run
holds at the end of every epoch (after that epoch's checkpoint is on disk) until its next turn, so a
noisy machine slows both alike. Each side's figure is its median epoch, leaving out the first.

    python benchmarks/bench_checkpoint.py                 # full size, batch sizes 32 and 256
    python benchmarks/bench_checkpoint.py --rows 20000    # quick (or BENCH_ROWS=20000)
    python benchmarks/bench_checkpoint.py --threads 1 --clock cpu   # on a machine other jobs keep busy

Prints train samples/s of both sides and the ratio with/without checkpoints per batch size, and
what one checkpoint costs; exits 1 if a ratio is below ``--min-ratio`` (0.95).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from trainer import Trainer
from trainer.datasets import make_benchmark

FEATURES = 20
HIDDEN = [128, 64, 32]


def make_data(rows: int) -> pd.DataFrame:
    return make_benchmark(rows, FEATURES)


class SteppedRun:
    """A run in a thread of its own that holds after each epoch end until ``epoch()`` lets it go on.

    It holds inside its epoch_end observer, so the hold adds no pause (and no pause checkpoint);
    the epoch's checkpoint is already written when the observer runs."""

    def __init__(self, df: pd.DataFrame, batch_size: int, epochs: int, output_path: Path, checkpoints: bool,
                 clock: Callable[[], float] = time.perf_counter):
        config = {"model_type": "mlp", "hidden_units": HIDDEN, "dropout_rate": 0.2, "learning_rate": 1e-3,
                  "optimizer": "adam", "batch_size": batch_size, "epochs": epochs, "seed": 0,
                  "target_column": "label", "validation_split": 0.2, "learning_rate_scheduler": "none",
                  "early_stopping": False, "device": "cpu", "output_path": str(output_path),
                  "checkpoints": checkpoints}
        self.run = Trainer(config, df)
        self.clock = clock
        self.train_samples = len(self.run.data.train_index)
        self._go = threading.Semaphore(0)
        self._idle = threading.Event()
        self.run.add_callback(self._on_event)
        self._thread = threading.Thread(target=self.run.fit, name="bench-run", daemon=True)

    def _on_event(self, event: str, data: dict) -> None:
        if event == "epoch_end" and self.run.current_epoch < self.run.total_epochs:
            self._idle.set()
            self._go.acquire()
        elif event == "train_end":
            self._idle.set()

    def epoch(self) -> float:
        """Train the next epoch (with its checkpoint); its seconds on the clock."""
        done = len(self.run.history)
        self._idle.clear()
        started = self.clock()
        if not self._thread.is_alive() and done == 0:
            self._thread.start()
        else:
            self._go.release()
        if not self._idle.wait(600):
            raise SystemExit("the run did not finish an epoch within 10 minutes")
        seconds = self.clock() - started
        if len(self.run.history) != done + 1:
            raise SystemExit(f"the run ended {self.run.state.value}: {self.run.reason}")
        return seconds

    def close(self) -> None:
        self._thread.join(120)


def measure(df: pd.DataFrame, batch_size: int, epochs: int, workdir: Path, verbose: bool,
            clock: Callable[[], float]) -> dict[str, float]:
    runs = {name: SteppedRun(df, batch_size, epochs, workdir / f"{name}-{batch_size}", name == "on", clock)
            for name in ("off", "on")}
    times: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(epochs):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        for name in order:
            seconds = runs[name].epoch()
            times[name].append(seconds)
            if verbose:
                print(f"  batch {batch_size} epoch {i + 1} checkpoints {name:3s}: {seconds:.3f} s", flush=True)
    for r in runs.values():
        r.close()
    ckpt_run = runs["on"].run
    files = sorted((workdir / f"on-{batch_size}" / "checkpoints").glob("ckpt-*.zip"))
    size = files[-1].stat().st_size if files else 0
    n = runs["off"].train_samples
    off = statistics.median(times["off"][1:])
    on = statistics.median(times["on"][1:])
    return {"off": n / off, "on": n / on, "ratio": off / on, "write_ms": _write_ms(ckpt_run),
            "bytes": size, "checkpoints": len(files), "state": ckpt_run.state.value}


def _write_ms(run: Trainer, repeats: int = 15) -> float:
    """Median milliseconds of one checkpoint write of the finished run (state, files, fsync, rotation):
    the cost the epoch-time ratio measures, without the noise of whole epochs."""
    writer = run._checkpoints
    if writer is None:
        return float("nan")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        writer.write()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 200_000)),
                    help="rows of synthetic data (env BENCH_ROWS; default 200000)")
    ap.add_argument("--batch-sizes", default=os.environ.get("BENCH_BATCH_SIZES", "32,256"),
                    help="comma-separated batch sizes (default 32,256)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs of each side per batch size; the first "
                                                            "is warm-up and left out (default 5)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 0)),
                    help="torch intra-op threads (env BENCH_THREADS; default: torch's choice)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default=os.environ.get("BENCH_CLOCK", "wall"),
                    help="wall: elapsed time (default); cpu: this process's CPU time, which other jobs on a "
                         "shared machine do not inflate (use with --threads 1: idle torch threads spin). The "
                         "cpu clock leaves out waiting for the disk; the write ms column includes it")
    ap.add_argument("--min-ratio", type=float, default=0.95, help="fail below this with/without ratio")
    ap.add_argument("--verbose", action="store_true", help="print every epoch's time")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (the first is warm-up)")
    if args.threads:
        torch.set_num_threads(args.threads)
    df = make_data(args.rows)
    # Only one side computes at a time (the other waits idle), so the process's CPU time is its.
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"checkpoint every epoch vs none: MLP 20-128-64-32-2, {args.rows} rows, {args.epochs} epochs a side, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock")
    print(f"{'batch':>6} {'no ckpt samples/s':>18} {'ckpt samples/s':>15} {'ratio':>6} {'write ms':>9} {'ckpt size':>10}")
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        for bs in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
            r = measure(df, bs, args.epochs, Path(tmp), args.verbose, clock)
            ok = r["ratio"] >= args.min_ratio
            failed |= not ok
            print(f"{bs:>6} {r['off']:>18,.0f} {r['on']:>15,.0f} {r['ratio']:>6.3f} {r['write_ms']:>9.1f} "
                  f"{r['bytes'] / 1024:>8.0f} KB{'' if ok else '  BELOW ' + str(args.min_ratio)}", flush=True)
    print("ratio = checkpointing throughput / no-checkpoint throughput (median epoch after the first); "
          "write ms = one checkpoint write (median of 15)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
