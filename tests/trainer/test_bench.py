"""The throughput benchmark runs end to end and reports both batch sizes. Its figures are checked
by running it (see the README's performance section), never by a timed test."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
_spec = importlib.util.spec_from_file_location(
    "bench_trainer", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_trainer.py")
bench_trainer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_trainer)


@pytest.mark.slow
def test_benchmark_reports_a_ratio_per_batch_size(capsys):
    assert bench_trainer.main(["--rows", "3000", "--epochs", "2", "--min-ratio", "0", "--clock", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)$", out, flags=re.M)
    assert [r[0] for r in rows] == ["32", "256"]
    assert all(float(r[3]) > 0 for r in rows)


def test_benchmark_fails_below_the_minimum_ratio(capsys):
    # An unreachable minimum makes it exit 1 and say so.
    assert bench_trainer.main(["--rows", "1000", "--epochs", "2", "--batch-sizes", "256",
                               "--min-ratio", "1000"]) == 1
    assert "below 1000" in capsys.readouterr().out
