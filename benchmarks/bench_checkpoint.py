"""What checkpointing costs: the torch trainer with a checkpoint at every epoch end (the default)
against the same run writing only its artifacts, each in a process of its own, alternating over
rounds. Both write to an ``output_path``; the only difference is ``checkpoints=True`` / ``False``.

    python benchmarks/bench_checkpoint.py          # 100k rows, batch 32 and 256, 3 rounds
    python benchmarks/bench_checkpoint.py --quick

Besides the table: what one checkpoint write of the finished run takes (state, files, fsync,
rotation; median of 15) and its size. Target: with / without >= 0.95. Exit status as in
``harness.py``.
"""
from __future__ import annotations

import statistics
import sys

from harness import Comparison, Plan, Results, main

PLAN = Plan(
    title="Checkpoint at every epoch end",
    sides=["torch-output", "torch-checkpoints"],
    labels={"torch-output": "trainer, torch backend, no checkpoints",
            "torch-checkpoints": "the same with a checkpoint every epoch"},
    comparisons=[Comparison("torch-checkpoints", "torch-output", 0.95)],
    rows=100_000, epochs=4, rounds=3, batch_sizes=[32, 256],
    quick={"rows": 20_000, "epochs": 3, "rounds": 2},
    workload="MLP 20-128-64-32-2, dropout 0.2, Adam 1e-3",
)


def write_figures(results: Results) -> list[str]:
    extras = [e for bs in results.batch_sizes for e in results.extras("torch-checkpoints", bs) if "write_ms" in e]
    if not extras:
        return []
    return [f"- one checkpoint write: {statistics.median(e['write_ms'] for e in extras):.1f} ms "
            f"(median over processes), {statistics.median(e['checkpoint_bytes'] for e in extras) / 1024:.0f} KB"]


if __name__ == "__main__":
    sys.exit(main(PLAN, description=__doc__, after=write_figures))
