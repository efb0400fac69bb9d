"""The benchmark harness (``benchmarks/harness.py``): every side in a process of its own, sides
alternating over rounds, paired ratios with their spread, and a failed side failing the benchmark.

Most tests drive the harness with a stand-in sides script that trains nothing (``bench_fake_sides.py``),
so they check the harness and not the machine; no test times anything. The figures come from
running the benchmarks (see the README's performance section).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_SIDES = Path(__file__).resolve().with_name("bench_fake_sides.py")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # the bench scripts import it as ``harness``
    spec.loader.exec_module(module)
    return module


harness = _load("harness")


def plan(**changes):
    fields = dict(title="Fake", sides=["fast", "slow"], labels={"fast": "the fast one", "slow": "the slow one"},
                  comparisons=[harness.Comparison("fast", "slow", {32: 1.5, 256: 3.0})],
                  rows=100, epochs=3, rounds=3, batch_sizes=[32, 256], quick={"rounds": 1},
                  workload="nothing at all")
    fields.update(changes)
    return harness.Plan(**fields)


def test_each_side_runs_in_a_process_of_its_own_and_the_sides_alternate():
    results = harness.measure(plan(), ["fast", "slow"], [32, 256], rows=100, epochs=3, rounds=3,
                              script=FAKE_SIDES, log=lambda s: None)
    launched = [(r["round"], r["batch_size"], r["side"]) for r in results.runs]
    assert launched == [(1, 32, "fast"), (1, 32, "slow"), (1, 256, "fast"), (1, 256, "slow"),
                        (2, 32, "slow"), (2, 32, "fast"), (2, 256, "slow"), (2, 256, "fast"),
                        (3, 32, "fast"), (3, 32, "slow"), (3, 256, "fast"), (3, 256, "slow")]
    pids = [r["pid"] for r in results.runs]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids
    # The children import this checkout's code, whatever is installed.
    assert {Path(r["extras"]["trainer"]).resolve().parent.parent for r in results.runs} == {ROOT}
    assert {r["extras"]["batch_size"] for r in results.runs} == {32, 256}
    # Each process's figure is its median epoch without the first: 1000 samples / 1 s and / 2 s.
    assert results.rates("fast", 32) == [1000.0] * 3 and results.rates("slow", 256) == [500.0] * 3
    assert results.ratios(plan().comparisons[0], 32) == [2.0] * 3


def test_the_table_has_rates_ratios_their_spread_and_the_verdicts():
    p = plan()
    results = harness.measure(p, ["fast", "slow"], [32, 256], rows=100, epochs=3, rounds=2,
                              script=FAKE_SIDES, log=lambda s: None)
    table = harness.markdown(results)
    assert "| batch | side | train samples/s | min–max | ratio | min–max | target |" in table
    rows = {tuple(c.strip() for c in line.strip("|").split("|")) for line in table.splitlines()
            if re.match(r"\| \d+ \|", line)}
    assert ("32", "the fast one", "1.0k", "1.0k–1.0k", "2.00 vs the slow one", "2.00–2.00", "≥ 1.5: met") in rows
    assert ("256", "the fast one", "1.0k", "1.0k–1.0k", "2.00 vs the slow one", "2.00–2.00", "≥ 3: **missed**") in rows
    assert ("32", "the slow one", "500", "500–500", "", "", "") in rows
    assert "2 alternating round(s), each side in its own process" in table


def test_a_missed_target_exits_1_unless_only_reporting(capsys, tmp_path):
    argv = ["--rounds", "1", "--epochs", "2", "--json", str(tmp_path / "runs.json")]
    assert harness.main(plan(), argv, script=FAKE_SIDES) == harness.EXIT_TARGET_MISSED
    out = capsys.readouterr().out
    assert "target missed: the fast one / the slow one at batch 256 is 2.00 (target 3)" in out
    assert "at batch 32" not in out.split("target missed")[1]
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert [r["side"] for r in saved["runs"]] == ["fast", "slow", "fast", "slow"]
    assert harness.main(plan(), argv + ["--no-check"], script=FAKE_SIDES) == 0


@pytest.mark.parametrize("side, why", [("crash", "exited with status 1"), ("silent", "reported no result")])
def test_a_side_that_fails_fails_the_benchmark_and_says_which(capsys, side, why):
    p = plan(sides=["fast", side], comparisons=[])
    assert harness.main(p, ["--rounds", "2"], script=FAKE_SIDES) == harness.EXIT_SIDE_FAILED
    out = capsys.readouterr().out
    assert f"FAILED: side '{side}' (round 1, batch 32) {why}" in out
    if side == "crash":
        assert "the side broke: ValueError: bad things" in out
    assert "| batch |" not in out            # no table from a benchmark with a failed side


def test_a_side_that_hangs_is_ended_at_the_timeout(capsys):
    p = plan(sides=["hang"], comparisons=[])
    assert harness.main(p, ["--timeout", "2"], script=FAKE_SIDES) == harness.EXIT_SIDE_FAILED
    assert "FAILED: side 'hang' (round 1, batch 32) timed out after 2 s" in capsys.readouterr().out


def test_the_cpu_clock_divides_by_each_process_cpu_seconds():
    results = harness.measure(plan(), ["fast", "slow"], [32], rows=100, epochs=3, rounds=1, script=FAKE_SIDES,
                              log=lambda s: None, clock="cpu")
    assert results.rates("fast", 32) == [2000.0] and results.rates("slow", 32) == [1000.0]
    assert "in CPU seconds (--clock cpu)" in harness.markdown(results)


def test_options_select_sides_and_refuse_what_cannot_be_measured(capsys):
    p = plan()
    args = harness.parser(p, "").parse_args(["--quick", "--sides", "slow", "--batch-sizes", "64"])
    assert harness.resolve(p, args) == (["slow"], [64], 100, 3, 1)
    for bad, message in ([["--sides", "fast,nope"], "unknown side(s) ['nope']"],
                         [["--epochs", "1"], "--epochs must be at least 2"]):
        with pytest.raises(SystemExit, match=re.escape(message)):
            harness.resolve(p, harness.parser(p, "").parse_args(bad))


def test_peers_that_are_not_installed_are_skipped_and_named():
    p = plan(optional={"slow": "no_such_framework_here"})
    assert harness.available(p, ["fast", "slow"]) == (["fast"], {"slow": "no_such_framework_here is not installed"})


@pytest.mark.slow
def test_the_real_sides_run_the_throughput_benchmark_end_to_end(tmp_path):
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_trainer.py"), "--rows", "2000",
                          "--epochs", "2", "--rounds", "2", "--batch-sizes", "32", "--sides", "raw,torch",
                          "--no-check", "--json", str(tmp_path / "runs.json")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^\| 32 \| hand-written torch loop \(\d(/\d)* threads?\) \| [\d.]+k? \|", out.stdout, re.M)
    # "(1/2 threads)" when the processes chose different counts.
    assert re.search(r"^\| 32 \| trainer, torch backend \(\d(/\d)* threads?\) \| .* \| [\d.]+ vs hand-written "
                     r"torch loop \|", out.stdout, re.M), out.stdout
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert [r["side"] for r in runs] == ["raw", "torch", "torch", "raw"]
    assert len({r["pid"] for r in runs}) == 4
    # Both sides learn the same task: the runs are real training, not stand-ins.
    assert all(r["extras"]["val_accuracy"] > 0.8 for r in runs)


@pytest.mark.slow
def test_the_panel_benchmark_measures_a_panel_in_a_real_kernel(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("ipykernel")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_panel.py"), "--rows", "2000",
                          "--epochs", "2", "--rounds", "1", "--no-check", "--json", str(tmp_path / "runs.json")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^\| 32 \| a TrainingPanel in a kernel's cell \(\d(/\d)* threads?\) \| .* \| [\d.]+ vs "
                     r"trainer in a kernel's cell, no panel \|", out.stdout, re.M), out.stdout
    runs = {r["side"]: r for r in json.loads((tmp_path / "runs.json").read_text())["runs"]}
    assert set(runs) == {"torch", "torch-panel", "kernel-torch", "kernel-panel"}
    # The kernel's panel really sent its widgets to the client; the bare cell sent none.
    assert runs["kernel-panel"]["extras"]["messages_per_run"] > 20
    assert runs["kernel-torch"]["extras"]["messages_per_run"] == 0
    assert all(r["extras"]["val_accuracy"] > 0.8 for r in runs.values())
