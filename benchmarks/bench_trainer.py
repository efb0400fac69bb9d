"""Trainer throughput against a hand-written PyTorch loop, measured in one run on the same data.

The reference is the loop most users write (``shared/bench/peers.py`` "raw" mode): shuffle
with ``randperm``, slice the shuffled tensors per batch, default Adam, validate once per epoch.
Both train the same MLP (20 -> 128 -> 64 -> 32 -> 2, dropout 0.2, Adam 1e-3) on the same synthetic
data (200k rows x 20 features, 80 % for training). The two take turns epoch by epoch (reference,
trainer, trainer, reference, ...: the trainer pauses between its epochs), so a noisy machine slows
both alike; each side's figure is its median epoch time, leaving out its first epoch (warm-up).

    python benchmarks/bench_trainer.py                 # full size, batch sizes 32 and 256
    python benchmarks/bench_trainer.py --rows 20000    # quick (or BENCH_ROWS=20000)
    python benchmarks/bench_trainer.py --threads 1     # on a machine other jobs keep busy

Prints train samples/s of both and the ratio trainer/reference per batch size; exits 1 if a ratio
is below ``--min-ratio`` (0.95).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from trainer import Trainer
from trainer.datasets import make_benchmark

FEATURES = 20
HIDDEN = [128, 64, 32]
DROPOUT = 0.2
LR = 1e-3


def make_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    df = make_benchmark(rows, FEATURES)
    return df.drop(columns="label").to_numpy(copy=True), df["label"].to_numpy(copy=True)


def reference_epochs(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> Iterator[None]:
    """peers.py "raw", the hand-written loop; each ``next`` trains one epoch and validates."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = FEATURES
    for units in HIDDEN:
        layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(DROPOUT)]
        width = units
    model = nn.Sequential(*layers, nn.Linear(width, 2))
    opt = torch.optim.Adam(model.parameters(), LR)
    n_train = int(len(x) * 0.8)
    xt, yt = torch.from_numpy(x[:n_train]), torch.from_numpy(y[:n_train])
    xv, yv = torch.from_numpy(x[n_train:]), torch.from_numpy(y[n_train:])
    while True:
        model.train()
        total = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = xt[idx], yt[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(xb)
            correct += (out.argmax(1) == yb).sum()
        model.eval()
        with torch.no_grad():
            vo = model(xv)
            F.cross_entropy(vo, yv).item()
            (vo.argmax(1) == yv).float().mean().item()
        float(total), int(correct)       # the epoch's metrics reach the host, as the trainer's do
        yield


class SteppedTrainer:
    """Our Trainer on the same data and model, run one epoch at a time on request.

    It trains in a thread of its own and pauses at every epoch end, after gathering the next epoch's
    shuffled batches, so the reference can run while it waits."""

    def __init__(self, df: pd.DataFrame, batch_size: int, epochs: int, seed: int):
        config = {"model_type": "mlp", "hidden_units": HIDDEN, "dropout_rate": DROPOUT, "learning_rate": LR,
                  "optimizer": "adam", "batch_size": batch_size, "epochs": epochs, "seed": seed,
                  "target_column": "label", "validation_split": 0.2, "learning_rate_scheduler": "none",
                  "early_stopping": False, "device": "cpu"}
        self.run = Trainer(config, df)
        self._idle = threading.Event()
        self.run.add_callback(self._on_event)
        self.run.pause()                      # holds before the first batch
        self._thread = threading.Thread(target=self.run.fit, name="bench-trainer", daemon=True)
        self._thread.start()
        self._wait_idle()

    def _on_event(self, event: str, data: dict) -> None:
        if event == "epoch_end" and self.run.current_epoch < self.run.total_epochs:
            self.run.pause()
        elif event == "state_change" and data["new"] in ("paused", "completed", "failed"):
            self._idle.set()

    def _wait_idle(self) -> None:
        if not self._idle.wait(600):
            raise SystemExit("the trainer did not reach the end of an epoch within 10 minutes")
        self._idle.clear()

    def epoch(self) -> None:
        """Train the next epoch and validate it."""
        done = len(self.run.history)
        self.run.resume()
        self._wait_idle()
        if len(self.run.history) != done + 1:
            raise SystemExit(f"the trainer run ended {self.run.state.value}: {self.run.reason}")

    def close(self) -> None:
        self._thread.join(60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 200_000)),
                    help="rows of synthetic data (env BENCH_ROWS; default 200000)")
    ap.add_argument("--batch-sizes", default=os.environ.get("BENCH_BATCH_SIZES", "32,256"),
                    help="comma-separated batch sizes (default 32,256)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs of each side per batch size; the first "
                                                            "is warm-up and left out (default 5)")
    ap.add_argument("--verbose", action="store_true", help="print every epoch's time")
    ap.add_argument("--clock", choices=["wall", "cpu"], default=os.environ.get("BENCH_CLOCK", "wall"),
                    help="wall: elapsed time (default); cpu: this process's CPU time, which other "
                         "jobs on a shared machine do not inflate (use with --threads 1: waiting "
                         "worker threads spin and burn CPU)")
    ap.add_argument("--min-ratio", type=float, default=0.95, help="fail below this trainer/reference ratio")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 0)),
                    help="torch intra-op threads for both sides (env BENCH_THREADS; default: torch's "
                         "choice). Use 1 on a machine other jobs keep busy: spinning worker threads "
                         "then slow every small op by an order of magnitude")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Only one side computes at a time (the other waits idle), so the process's CPU time is its.
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.epochs < 2:
        ap.error("--epochs must be at least 2: each run's first epoch is left out")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    x, y = make_data(args.rows)
    df = pd.DataFrame(x, columns=[f"f{i + 1}" for i in range(FEATURES)]).assign(label=y)
    n_train = int(args.rows * 0.8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rows:,} rows "
          f"({n_train:,} training), {args.epochs} epochs per side and batch size, {args.clock} clock")

    ok = True
    print(f"{'batch':>6} {'reference samples/s':>20} {'trainer samples/s':>18} {'ratio':>7}")
    for bs in batch_sizes:
        reference = reference_epochs(x, y, bs, seed=0)
        stepped = SteppedTrainer(df, bs, args.epochs, seed=0)
        times: dict[str, list[float]] = {"reference": [], "trainer": []}
        step = {"reference": lambda: next(reference), "trainer": stepped.epoch}
        for e in range(args.epochs):
            # Epochs alternate ABBA (R T T R R T ...), so drifting load slows both sides alike.
            for side in (("reference", "trainer") if e % 2 == 0 else ("trainer", "reference")):
                t0 = clock()
                step[side]()
                times[side].append(clock() - t0)
        stepped.close()
        rate = {side: n_train / statistics.median(t[1:]) for side, t in times.items()}   # first: warm-up
        ratio = rate["trainer"] / rate["reference"]
        ok &= ratio >= args.min_ratio
        print(f"{bs:>6} {rate['reference']:>20,.0f} {rate['trainer']:>18,.0f} {ratio:>7.2f}"
              + ("" if ratio >= args.min_ratio else f"  below {args.min_ratio}"), flush=True)
        if args.verbose:
            for side, t in times.items():
                print(f"         {side} epoch seconds: {[round(v, 3) for v in t]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
