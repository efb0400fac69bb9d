"""Does the panel slow training down, and how much does it send?

In one process, alternating runs of the same seeded config (batch size 32 by default):
  bare   Trainer.start() with no observer
  panel  TrainingPanel.start(), its widgets counting every comm message they send
Reports samples/s of both, their ratio (target >= 0.95; also per CPU second, which other
processes' load does not blur), the panel's widget messages and refreshes
per second while training (and messages per run, start and end included), and what one refresh
costs after 50 and after 10,000 epochs (downsampling at work).

    python benchmarks/bench_panel.py [--rows 4000] [--epochs 10] [--pairs 9] [--batch-size 32]

Exits 1 when the median ratio is under the target (``--no-check`` to only report).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from typing import Any

import comm
import numpy as np
from comm import DummyComm

TARGET_RATIO = 0.95


class CountingComm(DummyComm):
    """The comm package's stand-in comm (what widgets use outside a kernel), counting messages."""

    sent: Counter = Counter()
    nbytes: Counter = Counter()

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                    **keys: Any) -> None:
        CountingComm.sent[msg_type] += 1
        CountingComm.nbytes[msg_type] += len(json.dumps(data, default=str)) + sum(
            memoryview(b).nbytes for b in buffers or ())


comm.create_comm = lambda *a, **kw: CountingComm(*a, **kw)   # before any widget exists

from epoch_widgets import TrainingPanel        # noqa: E402
from epoch_widgets.curves import Curves        # noqa: E402
from trainer import Trainer                    # noqa: E402
from trainer.datasets import make_classification  # noqa: E402


async def bare_run(df: Any, config: dict[str, Any]) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second of this process)."""
    run = Trainer(config, df)
    began, cpu = time.perf_counter(), time.process_time()
    run.start()
    await run.wait()
    return _samples(run) / (time.perf_counter() - began), _samples(run) / (time.process_time() - cpu)


async def panel_run(df: Any, config: dict[str, Any]) -> tuple[float, float, dict[str, float]]:
    panel = TrainingPanel(data=df, **config)
    marks: dict[int, tuple[float, int, int]] = {}
    # Steady-state rates: between the end of epoch 2 and the end of the second-to-last epoch, so
    # the one-off messages of starting and ending a run (controls disabled and enabled) stay out.
    window = (2, config["epochs"] - 1)
    panel.observe(lambda ch: marks.setdefault(ch["new"], (time.perf_counter(), CountingComm.sent["comm_msg"],
                                                          panel._throttle.flushes)), "current_epoch")
    CountingComm.sent.clear()
    panel.start()
    await panel.wait_started()     # the Trainer is built (in a worker thread) outside the timing, as for bare
    began, cpu = time.perf_counter(), time.process_time()
    await panel.wait()
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    (t0, m0, f0), (t1, m1, f1) = marks[window[0]], marks[window[1]]
    stats = {"messages_per_s": (m1 - m0) / (t1 - t0), "refreshes_per_s": (f1 - f0) / (t1 - t0),
             "messages_per_run": CountingComm.sent["comm_msg"], "seconds": seconds}
    panel.close()
    return _samples(panel.run) / seconds, _samples(panel.run) / cpu_seconds, stats


def _samples(run: Trainer) -> int:
    return len(run.data.train_index) * run.current_epoch


def refresh_cost(epochs: int, repeats: int = 20) -> tuple[float, float]:
    """(bytes sent, seconds) for one curves refresh after ``epochs`` epochs plus one more."""
    curves = Curves()
    curves.begin_run(classification=True)
    entry = {"train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5,
             "learning_rate": 1e-3, "time_per_epoch": 0.01}
    noise = np.random.default_rng(0).standard_normal(epochs + repeats)
    for e in range(1, epochs + 1):
        curves.add_epoch({**entry, "epoch": e, "val_loss": 1 / e + 0.01 * noise[e - 1],
                          "train_loss": 1 / e + 0.02 * noise[-e]}, improved=e % 10 == 0)
    curves.render()
    CountingComm.nbytes.clear()
    began = time.perf_counter()
    for r in range(repeats):
        curves.add_epoch({**entry, "epoch": epochs + r + 1}, improved=False)
        curves.render()
    return CountingComm.nbytes["comm_msg"] / repeats, (time.perf_counter() - began) / repeats


async def main(args: argparse.Namespace) -> int:
    df = make_classification(args.rows, seed=0)
    config = {"target_column": "label", "epochs": args.epochs, "batch_size": args.batch_size, "seed": 0,
              "device": "cpu", "early_stopping": False, "learning_rate_scheduler": "none"}
    await bare_run(df, {**config, "epochs": 1})          # warm-up: imports, first allocations
    await panel_run(df, {**config, "epochs": 4})
    bare, panel, ratios, cpu_ratios, stats = [], [], [], [], []
    for i in range(args.pairs):
        # Alternate the order so drift in machine load hits both sides alike.
        if i % 2:
            p, p_cpu, s = await panel_run(df, config)
            b, b_cpu = await bare_run(df, config)
        else:
            b, b_cpu = await bare_run(df, config)
            p, p_cpu, s = await panel_run(df, config)
        bare.append(b)
        panel.append(p)
        ratios.append(p / b)
        cpu_ratios.append(p_cpu / b_cpu)
        stats.append(s)
        print(f"pair {i + 1}: bare {b:9.0f} samples/s  panel {p:9.0f} samples/s  ratio {p / b:.3f}  "
              f"(per CPU second {p_cpu / b_cpu:.3f})  messages/s {s['messages_per_s']:.1f}  "
              f"refreshes/s {s['refreshes_per_s']:.2f}", flush=True)

    ratio = statistics.median(ratios)
    cost50, cost10k = refresh_cost(50), refresh_cost(10_000)
    result = {
        "batch_size": args.batch_size, "rows": args.rows, "epochs": args.epochs, "pairs": args.pairs,
        "bare_samples_per_s": statistics.median(bare), "panel_samples_per_s": statistics.median(panel),
        "ratio_median": ratio, "ratio_min": min(ratios), "target_ratio": TARGET_RATIO,
        # Samples per CPU second of this process: other processes' load does not blur it.
        "cpu_ratio_median": statistics.median(cpu_ratios),
        "messages_per_s": statistics.median(s["messages_per_s"] for s in stats),
        "messages_per_run": statistics.median(s["messages_per_run"] for s in stats),
        "refreshes_per_s": statistics.median(s["refreshes_per_s"] for s in stats),
        "refresh_bytes_50_epochs": cost50[0], "refresh_bytes_10000_epochs": cost10k[0],
        "refresh_ms_50_epochs": cost50[1] * 1e3, "refresh_ms_10000_epochs": cost10k[1] * 1e3,
    }
    print(json.dumps(result, indent=2))
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"panel/bare throughput ratio {ratio:.3f} (target >= {TARGET_RATIO}): {verdict}")
    return 0 if ratio >= TARGET_RATIO or args.no_check else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--no-check", action="store_true", help="report only; never exit 1")
    sys.exit(asyncio.run(main(ap.parse_args())))
