"""What a TrainingPanel attached to a run costs: the torch trainer run by a panel against the same
run without one, each in a process of its own, alternating over rounds; and what the panel sends.

    python benchmarks/bench_panel.py              # 20k rows, batch 32, 10 epochs, 9 rounds
    python benchmarks/bench_panel.py --quick

Two pairs. In the first the widgets talk to the comm package's stand-in comm (no kernel), which
counts the messages they would send: the panel's own Python work. In the second, the run and the
panel live in a cell of a real IPython kernel (``jupyter_client``) whose widget messages travel
through the kernel's session to a client, as they do to a notebook: what a notebook user sees.
Besides the table: widget messages and refreshes per second while training, and what one curves
refresh sends and costs after 50 and after 10,000 epochs (downsampling at work).
Target: panel / bare >= 0.95 in both pairs. Exit status as in ``harness.py``.
"""
from __future__ import annotations

import statistics
import sys

from harness import Comparison, Plan, Results, main, run_side

PLAN = Plan(
    title="A TrainingPanel attached to a run",
    sides=["torch", "torch-panel", "kernel-torch", "kernel-panel"],
    labels={"torch": "trainer, torch backend, no panel", "torch-panel": "the same run by a TrainingPanel",
            "kernel-torch": "trainer in a kernel's cell, no panel",
            "kernel-panel": "a TrainingPanel in a kernel's cell"},
    comparisons=[Comparison("torch-panel", "torch", 0.95), Comparison("kernel-panel", "kernel-torch", 0.95)],
    optional={"kernel-torch": "ipykernel", "kernel-panel": "ipykernel"},
    rows=20_000, epochs=10, rounds=9, batch_sizes=[32],
    quick={"rows": 8_000, "epochs": 4, "rounds": 2},
    workload="MLP 20-128-64-32-2, dropout 0.2, Adam 1e-3",
)


def panel_figures(results: Results) -> list[str]:
    lines = []
    for bs in results.batch_sizes:
        extras = [e for e in results.extras("torch-panel", bs) if "messages_per_s" in e]
        if extras:
            med = {k: statistics.median(e[k] for e in extras) for k in ("messages_per_s", "refreshes_per_s",
                                                                       "messages_per_run")}
            lines.append(f"- batch {bs}: the panel sent {med['messages_per_s']:.1f} widget messages/s in "
                         f"{med['refreshes_per_s']:.2f} refreshes/s while training "
                         f"({med['messages_per_run']:.0f} messages per run, start and end included)")
        received = [e["messages_per_run"] for e in results.extras("kernel-panel", bs) if "messages_per_run" in e]
        if received:
            lines.append(f"- batch {bs}: in the kernel, the client received {statistics.median(received):.0f} widget "
                         f"messages per run")
    refresh = run_side({"side": "panel-refresh", "rows": 0, "batch_size": 0, "epochs": 0})["extras"]
    lines.append(f"- one curves refresh: {refresh['bytes_50'] / 1024:.1f} KB and {refresh['ms_50']:.1f} ms after "
                 f"50 epochs, {refresh['bytes_10000'] / 1024:.1f} KB and {refresh['ms_10000']:.1f} ms after 10,000")
    return lines


if __name__ == "__main__":
    sys.exit(main(PLAN, description=__doc__, after=panel_figures))
