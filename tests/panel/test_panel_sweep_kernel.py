"""The panel's Sweep tab in a real kernel, driven by button clicks sent as comm messages as a
frontend sends them: Start sweep, Pause/Resume sweep, Stop one trial, Use best settings; the
trials' curves, table and parameter plots; cells run while the sweep trains."""
from __future__ import annotations

import json
import time

import pytest

from .test_panel_kernel import Kernel, kernel  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

SETUP = """
import os, tempfile
os.chdir(tempfile.mkdtemp())
from epoch_widgets import TrainingPanel
from trainer.datasets import make_classification

panel = TrainingPanel(data=make_classification(1000, seed=1), target_column="label", epochs=60, seed=0,
                      batch_size=32, hidden_units=[16], early_stopping=False, device="cpu",
                      learning_rate_scheduler="none")
display(panel)
panel.views.selected_index = list(panel.views.titles).index("Sweep")
tab = panel.sweeps
tab.trials.value = 3
tab.pruner.value = None
tab.form.set_varied(["learning_rate"])
"""

STATUS = """
import json
sw = tab.sweep
trials = tab.trial_dicts()
print(json.dumps({
    "sweep": tab.state, "trials": [[t["number"], t["state"], len(t["history"])] for t in trials],
    "paused_runs": [t.number for t in (sw.trials if sw else []) if t.run is not None and t.run.state.value == "paused"],
    "buttons": {n: getattr(tab, n).model_id for n in ("start_button", "pause_button", "stop_button", "trial_stop",
                                                      "use_best_button")},
    "pause_text": tab.pause_button.description, "message": tab.message.value}))
"""


def status(kernel: Kernel) -> dict:
    return json.loads(kernel.execute(STATUS))


def until(kernel: Kernel, predicate, what: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = status(kernel)
        if predicate(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last status {s}")
        time.sleep(0.1)


def test_a_sweep_from_the_tab_with_pause_stop_trial_and_best_settings(kernel: Kernel) -> None:
    kernel.execute(SETUP)
    ids = status(kernel)["buttons"]
    kernel.click(ids["start_button"])
    first = until(kernel, lambda s: s["trials"] and s["trials"][0][2] >= 1, "the first trial's first epoch")
    assert first["sweep"] == "running"

    # The kernel stays free while the trials train: a cell answers at once.
    started = time.monotonic()
    assert kernel.execute("print(6 * 7)").strip() == "42"
    assert time.monotonic() - started < 3.0

    kernel.click(ids["pause_button"])
    paused = until(kernel, lambda s: s["sweep"] == "paused" and s["paused_runs"], "the sweep to pause")
    assert paused["pause_text"] == "Resume sweep"
    epochs = [t[2] for t in paused["trials"]]
    time.sleep(1.0)
    assert [t[2] for t in status(kernel)["trials"]] == epochs            # paused means nothing moves
    kernel.click(ids["pause_button"])
    until(kernel, lambda s: s["sweep"] == "running" and not s["paused_runs"], "the sweep to resume")

    # Stop the second trial (held paused meanwhile, so it cannot finish first); the sweep goes on
    # with the third.
    until(kernel, lambda s: len(s["trials"]) >= 2 and s["trials"][1][1] == "running", "the second trial")
    kernel.click(ids["pause_button"])
    until(kernel, lambda s: s["paused_runs"] == [1], "the second trial to pause")
    kernel.execute("tab.trial_pick.value = 1")
    kernel.click(ids["trial_stop"])
    until(kernel, lambda s: s["trials"][1][1] == "stopped", "the second trial to stop")
    kernel.click(ids["pause_button"])
    done = until(kernel, lambda s: s["sweep"] == "completed", "the sweep's end", timeout=240)
    states = {number: state for number, state, _epochs in done["trials"]}
    assert states == {0: "completed", 1: "stopped", 2: "completed"}, done
    assert done["trials"][1][2] < 60 and done["trials"][0][2] == done["trials"][2][2] == 60
    assert "best so far: trial" in done["message"]

    drawn = kernel.execute("""
print(len(tab.curves.lines), tab.curves.lines[1].line_style, list(tab.param_plots.figures),
      list(tab.table.table_frame["trial"]), len(tab.table.frame))
tab.table.sort_by.value = "best val_loss"
print(list(tab.table.table_frame["trial"])[0] == tab.sweep.best_trial.number)
""").split("\n")
    assert drawn[0] == "3 dashed ['learning_rate'] [0, 1, 2] 3"
    assert drawn[1] == "True"

    kernel.click(ids["use_best_button"])
    time.sleep(0.5)
    copied = kernel.execute("print(panel.controls['learning_rate'].value == tab.sweep.best_config.learning_rate, "
                            "panel.config.learning_rate == tab.sweep.best_config.learning_rate)")
    assert copied.strip() == "True True"


def test_a_parallel_sweep_from_the_tab_trains_its_trials_in_worker_processes(kernel: Kernel) -> None:
    kernel.execute(SETUP + "tab.trials.value = 2\ntab.parallel.value = 2\n")
    ids = status(kernel)["buttons"]
    kernel.click(ids["start_button"])
    until(kernel, lambda s: len(s["trials"]) == 2 and all(t[1] == "running" and t[2] >= 1 for t in s["trials"]),
          "two trials training at once")
    info = json.loads(kernel.execute("import json, os\n"
                                     "print(json.dumps({'pids': [t.run.pid for t in tab.sweep.trials], "
                                     "'kernel': os.getpid()}))"))
    assert len(set(info["pids"])) == 2 and info["kernel"] not in info["pids"]     # two processes, not the kernel
    started = time.monotonic()
    assert kernel.execute("print(6 * 7)").strip() == "42"
    assert time.monotonic() - started < 3.0
    kernel.click(ids["stop_button"])
    done = until(kernel, lambda s: s["sweep"] == "stopped", "the sweep to stop")
    assert {state for _number, state, _epochs in done["trials"]} == {"stopped"}, done
    assert kernel.execute("print([t.run._worker.proc.wait(30) for t in tab.sweep.trials])").strip() == "[0, 0]"
