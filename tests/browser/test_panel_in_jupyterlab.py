"""The quickstart's panel in a real JupyterLab, driven in headless Chromium the way a person uses it.

Open the notebook, run its cells down to the panel, press Start, watch the curves and the epoch
counter grow, Pause (state and counters hold still), Resume, and see the run finish. Screenshots go
to ``test-artifacts/browser/``; with ``UPDATE_SCREENSHOT=1`` a mid-training one also replaces
``docs/panel.png``, the README's picture.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest

from .conftest import REPO, Lab

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(1200)]

QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"
README_SCREENSHOT = REPO / "docs" / "panel.png"
# The quickstart's run takes a second or two; this many rows and epochs make it last long enough
# (tens of seconds) to watch it grow and to pause it half-way, like a real training run.
PARAMETERS = {"ROWS": 20000, "EPOCHS": 30}
KERNEL_TIMEOUT_MS = 180_000
TRAINING_TIMEOUT_S = 600
STATES = ("pending", "running", "paused", "completed", "early stopped", "stopped", "failed")


def prepare_quickstart(dest: Path) -> int:
    """Copy the quickstart with the browser test's parameters and no stored outputs; return how
    many cells (from the top) to run to display the panel."""
    nb = nbformat.read(QUICKSTART, as_version=4)
    params = next((c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Parameters")), None)
    assert params is not None, "the quickstart needs a '# Parameters' code cell"
    for name, value in PARAMETERS.items():
        params.source, found = re.subn(rf"(?m)^{name}\s*=\s*[^#\n]*", f"{name} = {value}  ", params.source)
        assert found == 1, f"the quickstart's Parameters cell no longer sets {name}"
    panel_cell = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "= TrainingPanel(" in c.source),
                      None)
    assert panel_cell is not None, "the quickstart no longer creates a TrainingPanel"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, dest)
    return panel_cell + 1


class PanelView:
    """Reads the rendered panel the way a person reads it: texts, buttons and the curves' points."""

    # The loss figure's epoch points: where bqplot drew them (distinct x positions, legend glyphs
    # left out), and the labels of its epoch axis. A broken scale draws every point at one x.
    _READ = """root => {
        const texts = Array.from(root.querySelectorAll('.widget-html'))
            .map(e => e.innerText.trim()).filter(t => t.length > 0);
        const loss = Array.from(root.querySelectorAll('.bqplot.figure'))
            .find(f => (f.querySelector('.mainheading') || {}).textContent?.startsWith('Loss'));
        if (!loss) return {texts, xs: [], xLabels: []};
        const xs = Array.from(loss.querySelectorAll('.dot')).filter(d => !d.closest('.legend'))
            .map(d => d.getBoundingClientRect()).map(r => Math.round(r.x + r.width / 2));
        const xLabels = Array.from(loss.querySelectorAll('g.axis')[0].querySelectorAll('.tick'))
            .map(t => t.textContent.trim());
        return {texts, xs, xLabels};
    }"""

    def __init__(self, output: Any):
        self.output = output

    def read(self) -> dict[str, Any]:
        """state (e.g. 'running'), epoch and total, batch, and the points drawn in the loss figure."""
        raw = self.output.evaluate(self._READ)
        texts = raw["texts"]
        at = next((i for i, t in enumerate(texts) if t.startswith(STATES)), None)
        assert at is not None, f"no state line in the panel: {texts}"
        state = next(s for s in STATES if texts[at].startswith(s))
        epochs = re.match(r"(\d+)/(\d+)", texts[at + 1]) if at + 1 < len(texts) else None
        assert epochs, f"no epoch counter after the state line: {texts[at:]}"
        batch = re.match(r"(\d+)/(\d+)$", texts[at + 2]) if at + 2 < len(texts) else None
        return {"state": state, "line": texts[at], "epoch": int(epochs.group(1)), "total": int(epochs.group(2)),
                "batch": int(batch.group(1)) if batch else None, "loss_points": len(set(raw["xs"])),
                "x_labels": raw["xLabels"]}

    def button(self, label: str) -> Any:
        return self.output.locator("button", has_text=re.compile(rf"^\s*{label}\s*$"))


def wait_for(view: PanelView, check: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = TRAINING_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = view.read()
    while not check(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; the panel shows {seen}")
        time.sleep(0.25)
        seen = view.read()
    return seen


def test_quickstart_panel_trains_pauses_and_resumes_in_jupyterlab(jupyter_lab: Lab, lab_root: Path, page: Any,
                                                                   artifacts: Path) -> None:
    from playwright.sync_api import expect

    cells_to_run = prepare_quickstart(lab_root / QUICKSTART.name)
    for old in artifacts.glob("*.png"):
        old.unlink()
    try:
        page.goto(f"{jupyter_lab.url}/lab/tree/{QUICKSTART.name}?token={jupyter_lab.token}")
        kernel_idle = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\|\s*Idle"))
        expect(kernel_idle.first).to_be_visible(timeout=KERNEL_TIMEOUT_MS)

        # Run the cells down to the panel, as a person would: select the first cell, Shift+Enter.
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.keyboard.press("Escape")
        for _ in range(cells_to_run):
            page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-OutputArea-output", has=page.locator("button", has_text="Start"))
        expect(output).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        expect(page.locator(".jp-OutputArea", has_text="Error displaying widget")).to_have_count(0)
        view = PanelView(output)
        expect(view.button("Start")).to_be_enabled()
        before = view.read()
        assert before["state"] == "pending" and before["loss_points"] == 0, before
        page.screenshot(path=str(artifacts / "1-panel-ready.png"))

        # Start: the state turns to running, and the counter and the curves grow epoch by epoch.
        view.button("Start").click()
        first = wait_for(view, lambda s: s["state"] == "running" and s["epoch"] >= 1, "the first epoch")
        assert first["total"] == PARAMETERS["EPOCHS"], first
        grown = wait_for(view, lambda s: s["epoch"] >= first["epoch"] + 2 or s["state"] != "running",
                         "two more epochs")
        assert grown["state"] == "running", f"the run ended before it could be paused: {grown}"
        assert grown["loss_points"] > first["loss_points"] > 0, (first, grown)
        assert all(grown["x_labels"]), f"the loss figure's epoch axis lost its labels: {grown}"
        output.screenshot(path=str(artifacts / "2-training.png"))
        page.screenshot(path=str(artifacts / "2-training-page.png"))

        # Pause: the state says so and nothing moves any more.
        view.button("Pause").click()
        paused = wait_for(view, lambda s: s["state"] == "paused", "the paused state", timeout=60)
        expect(view.button("Resume")).to_be_visible()
        time.sleep(3)
        held = view.read()
        assert (held["state"], held["epoch"], held["batch"], held["loss_points"]) == \
            (paused["state"], paused["epoch"], paused["batch"], paused["loss_points"]), (paused, held)
        assert held["epoch"] < held["total"], held
        page.screenshot(path=str(artifacts / "3-paused.png"))

        # Resume: training goes on from where it stopped, to the end of the run.
        view.button("Resume").click()
        wait_for(view, lambda s: s["state"] != "paused", "the run to leave the paused state", timeout=60)
        later = wait_for(view, lambda s: s["epoch"] >= held["epoch"] + 5 or s["state"] != "running",
                         "five more epochs")
        if later["state"] == "running":     # the README's picture: well into the run, still going
            page.mouse.move(0, 0)           # no hover toolbar over the figures
            output.screenshot(path=str(artifacts / "5-training-later.png"))
        end = wait_for(view, lambda s: s["state"] in ("completed", "early stopped"), "the end of the run")
        assert end["epoch"] > held["epoch"] and end["loss_points"] > held["loss_points"], (held, end)
        # Every epoch has its own place on the epoch axis, and the axis is labelled.
        assert end["loss_points"] >= end["epoch"] and all(end["x_labels"]), end
        if end["state"] == "completed":
            assert end["epoch"] == end["total"], end
        expect(view.button("Start")).to_be_enabled()
        expect(view.button("Pause")).to_be_disabled()
        page.screenshot(path=str(artifacts / "4-finished.png"))
    except BaseException:
        page.screenshot(path=str(artifacts / "failure.png"))
        panel = page.locator(".jp-OutputArea-output", has=page.locator("button", has_text="Start"))
        if panel.count() == 1:
            panel.screenshot(path=str(artifacts / "failure-panel.png"))
        raise

    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        later = artifacts / "5-training-later.png"
        shutil.copy(later if later.exists() else artifacts / "2-training.png", README_SCREENSHOT)
