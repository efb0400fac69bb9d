"""Training throughput of the trainer's backends against the hand-written PyTorch loop, Keras
``fit`` and the peers (skorch, Lightning), each side in a process of its own.

    python benchmarks/bench_trainer.py            # the README's figures: 100k rows, batch 32 and 256, 3 rounds
    python benchmarks/bench_trainer.py --quick    # a couple of minutes, for development
    python benchmarks/bench_trainer.py --sides raw,torch --rounds 5 --verbose

Every side trains the same MLP on the same data (see ``sides.py``); the table gives train
samples/s (median over rounds of each process's median epoch after the first, validation
included) with the spread over rounds, and the paired ratios with their targets:

- trainer, torch backend / hand-written torch loop: >= 1.6 at batch 32, >= 1.1 at batch 256
- trainer, tensorflow backend / Keras fit: >= 2.0

Peers that are not installed are skipped. Exit status: 1 when a target is missed (``--no-check``
only reports), 3 when a side crashed (see ``harness.py``).
"""
from __future__ import annotations

import sys

from harness import Comparison, Plan, main

PLAN = Plan(
    title="Training throughput",
    sides=["raw", "torch", "tensorflow", "keras", "skorch", "lightning"],
    labels={"raw": "hand-written torch loop", "torch": "trainer, torch backend",
            "tensorflow": "trainer, tensorflow backend", "keras": "Keras fit", "skorch": "skorch",
            "lightning": "Lightning"},
    comparisons=[Comparison("torch", "raw", {32: 1.6, 256: 1.1}), Comparison("tensorflow", "keras", 2.0)],
    rows=100_000, epochs=4, rounds=3, batch_sizes=[32, 256],
    quick={"rows": 20_000, "epochs": 3, "rounds": 2},
    optional={"tensorflow": "tensorflow", "keras": "keras", "skorch": "skorch", "lightning": "lightning"},
    workload="MLP 20-128-64-32-2, dropout 0.2, Adam 1e-3",
    notes=["hand-written torch loop: shuffled tensor slices, model(x), loss.backward(), opt.step(), "
           "default Adam and threads, loss and accuracy summed on the device, validation every epoch",
           "(N threads): the intra-op thread count the side trained with"],
)

if __name__ == "__main__":
    sys.exit(main(PLAN, description=__doc__))
