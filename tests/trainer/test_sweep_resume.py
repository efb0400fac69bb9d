"""A sweep whose process is killed continues with ``resume=True``: finished trials are kept, the
interrupted trial continues from its checkpoint, and no trial runs twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from trainer import ConfigError, choice, datasets, sweep
from trainer.run_records import read_run
from trainer.sweep import Sweep

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("sweep_child.py")
CONFIG = {"target_column": "label", "epochs": 5, "hidden_units": [16], "device": "cpu", "seed": 0,
          "early_stopping": False, "learning_rate_scheduler": "none"}


def _kill_during(spec: dict[str, Any], number: int, epoch: int, timeout: float = 240) -> list[dict[str, Any]]:
    """Run the sweep process until trial ``number`` reports ``epoch``, then SIGKILL it; its lines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    seen = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("{"):
                seen.append(json.loads(line))
                if seen[-1] == {"event": "trial_epoch", "number": number, "epoch": epoch, "state": None}:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.wait()
        watchdog.cancel()
    assert proc.returncode == -signal.SIGKILL, seen
    return seen


def test_a_killed_sweep_continues_where_it_was(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    seen = _kill_during({"config": CONFIG, "output_path": str(out), "trials": 3, "parallel": 1, "rows": 800,
                         "data_seed": 1}, number=1, epoch=3)
    assert {"event": "trial_end", "number": 0, "epoch": None, "state": "completed"} in seen
    first_saved = (out / "trial-0" / "history.json").stat().st_mtime_ns
    interrupted = Sweep.load(out)
    assert interrupted.state == "stopped" and [t.state for t in interrupted.trials] == ["completed", "stopped"]
    assert "resume=True" in interrupted.trials[1].reason

    df = datasets.make_classification(800, seed=1)
    space = {"batch_size": choice([16, 32, 64])}
    with pytest.raises(ConfigError, match="differs from the sweep being resumed"):
        sweep({**CONFIG, "hidden_units": [8]}, df, space, trials=3, sampler="grid", output_path=out, resume=True)
    epochs: dict[int, list[int]] = {}
    starts: list[tuple[int, bool]] = []

    def follow(s: Sweep, event: str, data: dict[str, Any]) -> None:
        if event == "trial_epoch":
            epochs.setdefault(data["number"], []).append(data["epoch"])
        elif event == "trial_start":
            starts.append((data["number"], data["resumed"]))

    s = sweep(CONFIG, df, space, trials=3, sampler="grid", pruner=None, output_path=out, resume=True, seed=0,
              callbacks=[follow])
    assert s.wait(240).state == "completed"
    # Trial 0 was kept as it was; trial 1 went on from its last checkpoint; trial 2 is new.
    assert [t.state for t in s.trials] == ["completed"] * 3 and [t.number for t in s.trials] == [0, 1, 2]
    assert (out / "trial-0" / "history.json").stat().st_mtime_ns == first_saved and s.trials[0].run is None
    # (Killed after epoch 3's event: its checkpoint may or may not have been written.)
    assert starts[0] == (1, True) and epochs[1][0] in (3, 4) and epochs[1][-1] == 5, epochs
    assert epochs[2] == list(range(1, 6)) and 0 not in epochs
    assert [e["epoch"] for e in read_run(out / "trial-1").history] == list(range(1, 6))
    # Every grid point ran once.
    assert sorted(t.params["batch_size"] for t in s.trials) == [16, 32, 64]
    assert Sweep.load(out).table.equals(s.table)
