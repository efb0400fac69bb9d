"""The benchmark harness every ``bench_*.py`` script shares: each side in a process of its own,
sides alternating over rounds, median epochs, paired ratios with their spread, a markdown table.

A *side* is one way of training (the hand-written loop, the trainer's torch backend, Keras
``fit``, ...), implemented in ``sides.py``. One *run* of a side is one fresh Python process that
trains ``--epochs`` epochs and reports each epoch's seconds; its figure is the median epoch after
the first (the first holds imports, allocation and tracing). A *round* runs every side once per
batch size, one process after the other, never two at once; odd rounds reverse the order, so
load that drifts over a round slows every side alike. A comparison's ratio is taken within each
round (side / reference, the two measured minutes apart) and reported as the median over rounds
with its minimum and maximum.

No side shares a process with another: a reference measured in the process where the measured
side's threads live is slowed by them (idle intra-op threads spin), which is what made earlier
in-process ratios unbelievable.

Exit status: 0, or 1 when a ratio misses its target (``--no-check`` only reports), or 3 when a
side crashed or timed out (its output's tail is printed).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

SIDES_SCRIPT = Path(__file__).resolve().with_name("sides.py")
REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH-RESULT "
EXIT_TARGET_MISSED = 1
EXIT_SIDE_FAILED = 3


@dataclass(frozen=True)
class Comparison:
    """``side``'s throughput over ``reference``'s; ``target`` is the least acceptable ratio, per
    batch size (a dict) or for all (a float); None reports without a target."""

    side: str
    reference: str
    target: Union[float, dict[int, float], None] = None

    def target_for(self, batch_size: int) -> Optional[float]:
        return self.target.get(batch_size) if isinstance(self.target, dict) else self.target


@dataclass
class Plan:
    """What one benchmark script measures."""

    title: str
    sides: list[str]                              # in the first round's order
    labels: dict[str, str]                        # side -> what the table calls it
    comparisons: list[Comparison]
    rows: int
    epochs: int
    rounds: int
    batch_sizes: list[int]
    quick: dict[str, Any] = field(default_factory=dict)   # --quick's rows / epochs / rounds
    optional: dict[str, str] = field(default_factory=dict)  # side -> module it needs (skipped without)
    workload: str = ""                            # one line: the model and data every side trains
    notes: list[str] = field(default_factory=list)  # printed under the table


class SideFailed(RuntimeError):
    """A side's process crashed, timed out or reported nothing."""


@dataclass
class Results:
    plan: Plan
    sides: list[str]
    batch_sizes: list[int]
    rows: int
    epochs: int
    rounds: int
    runs: list[dict[str, Any]] = field(default_factory=list)   # one per process, in launch order
    skipped: dict[str, str] = field(default_factory=dict)
    started: str = ""
    load: list[tuple[float, float, float]] = field(default_factory=list)   # at start and end
    threads: Optional[int] = None                 # --threads: every side pinned to this count
    clock: str = "wall"                           # --clock: which seconds the rates divide by

    def rates(self, side: str, batch_size: int) -> list[float]:
        return [r["samples_per_s"] for r in self.runs if r["side"] == side and r["batch_size"] == batch_size]

    def ratios(self, comparison: Comparison, batch_size: int) -> list[float]:
        """Per round: side / reference, both measured in that round."""
        a, b = self.rates(comparison.side, batch_size), self.rates(comparison.reference, batch_size)
        return [x / y for x, y in zip(a, b)]

    def extras(self, side: str, batch_size: int) -> list[dict[str, Any]]:
        return [r.get("extras", {}) for r in self.runs if r["side"] == side and r["batch_size"] == batch_size]


# ---------------------------------------------------------------------- arguments

def parser(plan: Plan, description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes, with the plan's defaults."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, help=f"rows of synthetic data, 80 %% for training (default {plan.rows})")
    ap.add_argument("--epochs", type=int, help=f"epochs per process; the first is left out (default {plan.epochs})")
    ap.add_argument("--rounds", type=int, help=f"alternating rounds (default {plan.rounds})")
    ap.add_argument("--batch-sizes", help=f"comma-separated (default {','.join(map(str, plan.batch_sizes))})")
    ap.add_argument("--sides", help=f"comma-separated subset of {','.join(plan.sides)}")
    ap.add_argument("--quick", action="store_true",
                    help="a short run for development: " + ", ".join(f"{k} {v}" for k, v in plan.quick.items()))
    ap.add_argument("--no-check", action="store_true", help="report only: exit 0 even when a target is missed")
    ap.add_argument("--json", type=Path, help="also write every process's figures to this file")
    ap.add_argument("--threads", type=int, help="pin every side to this many intra-op threads (OMP_NUM_THREADS, "
                    "MKL_NUM_THREADS, TF_NUM_INTRAOP_THREADS); the targets are defined without it. On a machine "
                    "other jobs keep busy, sides on several threads slow down by orders of magnitude (a thread "
                    "waits for a descheduled one at every op); --threads 1 still compares the loops")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed seconds (the figures the targets mean); cpu: the process's CPU seconds, "
                         "which other jobs do not inflate: use with --threads 1 on a busy machine (spinning "
                         "threads burn CPU time)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one process may take (default 1800)")
    ap.add_argument("--verbose", action="store_true", help="print each process's epoch times as it ends")
    return ap


def resolve(plan: Plan, args: argparse.Namespace) -> tuple[list[str], list[int], int, int, int]:
    """(sides, batch sizes, rows, epochs, rounds) from the options, --quick and the plan."""
    quick = plan.quick if args.quick else {}
    rows = args.rows or quick.get("rows", plan.rows)
    epochs = args.epochs or quick.get("epochs", plan.epochs)
    rounds = args.rounds or quick.get("rounds", plan.rounds)
    sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else list(plan.batch_sizes)
    sides = [s.strip() for s in args.sides.split(",")] if args.sides else list(plan.sides)
    unknown = [s for s in sides if s not in plan.sides]
    if unknown:
        raise SystemExit(f"unknown side(s) {unknown}; this benchmark has {plan.sides}")
    if epochs < 2:
        raise SystemExit("--epochs must be at least 2: each process's first epoch is left out")
    if rounds < 1 or rows < 10 or not sizes or min(sizes) < 1:
        raise SystemExit("--rounds, --rows and --batch-sizes must be positive")
    return sides, sizes, rows, epochs, rounds


# ---------------------------------------------------------------------- running

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def child_env(threads: Optional[int] = None) -> dict[str, str]:
    """The children's environment: this checkout first on the path, quiet TensorFlow, and the
    thread count pinned only when asked."""
    env = {k: v for k, v in os.environ.items() if threads is None or k not in THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        env.update({k: str(threads) for k in THREAD_ENV})
    return env


def run_side(params: dict[str, Any], script: Path = SIDES_SCRIPT, timeout: float = 1800.0,
             threads: Optional[int] = None) -> dict[str, Any]:
    """Run one side in a fresh process; its reported figures (``epoch_seconds``, ``train_samples``,
    ``pid``, optional ``extras``)."""
    cmd = [sys.executable, str(script), json.dumps(params)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(threads),
                              cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-2000:]
        raise SideFailed(f"timed out after {timeout:.0f} s; last output:\n{tail if isinstance(tail, str) else tail.decode(errors='replace')}") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        why = f"exited with status {proc.returncode}" if proc.returncode else "reported no result"
        raise SideFailed(f"{why}; last output:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def round_order(sides: list[str], round_index: int) -> list[str]:
    """The order sides run in a round: as given in even rounds, reversed in odd ones."""
    return list(sides) if round_index % 2 == 0 else list(reversed(sides))


def median_rate(train_samples: int, epoch_seconds: list[float]) -> float:
    timed = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    return train_samples / statistics.median(timed)


def available(plan: Plan, sides: list[str]) -> tuple[list[str], dict[str, str]]:
    """The sides whose framework is installed, and why the others are skipped."""
    import importlib.util
    keep, skipped = [], {}
    for side in sides:
        module = plan.optional.get(side)
        if module and importlib.util.find_spec(module) is None:
            skipped[side] = f"{module} is not installed"
        else:
            keep.append(side)
    return keep, skipped


def measure(plan: Plan, sides: list[str], batch_sizes: list[int], rows: int, epochs: int, rounds: int,
            script: Path = SIDES_SCRIPT, timeout: float = 1800.0,
            log: Callable[[str], None] = print, verbose: bool = False, threads: Optional[int] = None,
            clock: str = "wall") -> Results:
    """Run every side ``rounds`` times per batch size, alternating; raises SideFailed."""
    key = "epoch_cpu_seconds" if clock == "cpu" else "epoch_seconds"
    results = Results(plan, sides, batch_sizes, rows, epochs, rounds, threads=threads, clock=clock,
                      started=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), load=[_load()])
    for r in range(rounds):
        for bs in batch_sizes:
            for side in round_order(sides, r):
                params = {"side": side, "rows": rows, "batch_size": bs, "epochs": epochs}
                began = time.perf_counter()
                try:
                    out = run_side(params, script, timeout, threads)
                except SideFailed as exc:
                    raise SideFailed(f"side {side!r} (round {r + 1}, batch {bs}) {exc}") from None
                if key not in out:
                    raise SideFailed(f"side {side!r} reports no {key}")
                rate = median_rate(out["train_samples"], out[key])
                results.runs.append({"round": r + 1, "batch_size": bs, "side": side, "samples_per_s": rate,
                                     "process_seconds": time.perf_counter() - began, **out})
                if verbose:
                    log(f"  round {r + 1} batch {bs:>5} {side:<20} {rate:>10,.0f} samples/s  pid {out['pid']}  "
                        f"epochs {[round(s, 3) for s in out[key]]} ({clock})")
    results.load.append(_load())
    return results


def _load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


# ---------------------------------------------------------------------- reporting

def _k(rate: float) -> str:
    return f"{rate / 1000:.1f}k" if rate >= 1000 else f"{rate:.0f}"


def _spread(values: list[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(min(values))}–{fmt(max(values))}" if len(values) > 1 else "–"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def verdicts(results: Results) -> list[tuple[Comparison, int, float, Optional[float]]]:
    """(comparison, batch size, median ratio, target) for every comparison measured."""
    out = []
    for c in results.plan.comparisons:
        if c.side not in results.sides or c.reference not in results.sides:
            continue
        for bs in results.batch_sizes:
            ratios = results.ratios(c, bs)
            if ratios:
                out.append((c, bs, statistics.median(ratios), c.target_for(bs)))
    return out


def markdown(results: Results) -> str:
    """The results as markdown: the setup line, then one row per batch size and side."""
    plan = results.plan
    versions: dict[str, str] = {}
    threads: dict[str, set] = {}
    for r in results.runs:
        versions.update(r.get("versions", {}))
        if "threads" in r.get("extras", {}):
            threads.setdefault((r["side"], r["batch_size"]), set()).add(r["extras"]["threads"])
    lines = [f"**{plan.title}** — {results.started}; {machine()}",
             f"{plan.workload}; {results.rows:,} rows ({int(results.rows * 0.8):,} for training); "
             f"{results.epochs} epochs per process, median epoch after the first"
             f"{' in CPU seconds (--clock cpu)' if results.clock == 'cpu' else ''}; {results.rounds} alternating "
             f"round(s), each side in its own process; load average {results.load[0][0]:.1f} at the start, "
             f"{results.load[-1][0]:.1f} at the end"
             + (f"; every side pinned to {results.threads} intra-op thread(s) (--threads)" if results.threads else ""),
             ", ".join(f"{k} {v}" for k, v in sorted(versions.items())), "",
             "| batch | side | train samples/s | min–max | ratio | min–max | target |",
             "|---:|---|---:|---:|---:|---:|---|"]
    by_side = {c.side: c for c in plan.comparisons}
    for bs in results.batch_sizes:
        for side in results.sides:
            rates = results.rates(side, bs)
            if not rates:
                continue
            label = plan.labels.get(side, side)
            if (side, bs) in threads:
                counts = sorted(threads[(side, bs)])
                label += f" ({'/'.join(map(str, counts))} thread{'s' if counts != [1] else ''})"
            cells = [str(bs), label, _k(statistics.median(rates)), _spread(rates, _k), "", "", ""]
            c = by_side.get(side)
            if c is not None and c.reference in results.sides:
                ratios = results.ratios(c, bs)
                target = c.target_for(bs)
                ref = plan.labels.get(c.reference, c.reference)
                cells[4] = f"{statistics.median(ratios):.2f} vs {ref}"
                cells[5] = _spread(ratios, lambda v: f"{v:.2f}")
                if target is not None:
                    met = statistics.median(ratios) >= target
                    cells[6] = f"≥ {target:g}: {'met' if met else '**missed**'}"
            lines.append("| " + " | ".join(cells) + " |")
    notes = list(plan.notes)
    busiest, cpus = max(load[0] for load in results.load), os.cpu_count() or 1
    if busiest > 0.25 * cpus and not results.threads and results.clock == "wall":
        notes.insert(0, f"**busy machine** (load average up to {busiest:.1f} on {cpus} CPUs): a side on several "
                        f"intra-op threads waits for a descheduled thread at every op and slows down far more than a "
                        f"side on one; rerun on a quiet machine (or compare loops with --threads 1)")
    notes += [f"{plan.labels.get(s, s)}: skipped, {why}" for s, why in results.skipped.items()]
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def main(plan: Plan, argv: Optional[list[str]] = None, description: str = "",
         script: Path = SIDES_SCRIPT, after: Optional[Callable[[Results], list[str]]] = None) -> int:
    """Parse options, measure, print the table (and ``after``'s lines); the exit status."""
    args = parser(plan, description or plan.title).parse_args(argv)
    sides, sizes, rows, epochs, rounds = resolve(plan, args)
    sides, skipped = available(plan, sides)
    print(f"{plan.title}: {len(sides)} sides x {len(sizes)} batch sizes x {rounds} rounds, "
          f"one process each ({rows:,} rows, {epochs} epochs)", flush=True)
    # A terminated benchmark ends the side it is running too (subprocess.run kills it on the way out).
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        results = measure(plan, sides, sizes, rows, epochs, rounds, script, args.timeout,
                          verbose=args.verbose, log=lambda s: print(s, flush=True), threads=args.threads,
                          clock=args.clock)
    except SideFailed as exc:
        print(f"FAILED: {exc}", flush=True)
        return EXIT_SIDE_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    results.skipped = skipped
    print()
    print(markdown(results))
    extra = after(results) if after else []
    if extra:
        print()
        print("\n".join(extra))
    if args.json:
        args.json.write_text(json.dumps({"plan": plan.title, "rows": rows, "epochs": epochs, "rounds": rounds,
                                         "clock": args.clock, "threads": args.threads,
                                         "started": results.started, "load": results.load,
                                         "runs": results.runs}, indent=2))
    missed = [(c, bs, ratio, t) for c, bs, ratio, t in verdicts(results) if t is not None and ratio < t]
    for c, bs, ratio, t in missed:
        print(f"target missed: {plan.labels.get(c.side, c.side)} / {plan.labels.get(c.reference, c.reference)} "
              f"at batch {bs} is {ratio:.2f} (target {t:g})")
    return EXIT_TARGET_MISSED if missed and not args.no_check else 0
