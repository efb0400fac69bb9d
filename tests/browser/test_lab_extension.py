"""The JupyterLab extension (``labextension/``) in a real JupyterLab, driven in headless Chromium
the way a person uses it, a screenshot at every step (``test-artifacts/browser/lab/``).

The command palette offers "New training panel", and the launcher's card opens a new notebook
whose panel is ready to train on the demo data. A task started through the HTTP API appears in the
Training sidebar within 2 s and its val-loss sparkline grows; Pause and Resume in the sidebar act
(the API confirms); clicking it opens its page (as "Open a training task…" in the palette does),
whose curves and per-epoch table grow and whose Pause and Resume act too; Stop in the sidebar ends
it and the page shows the evaluation's confusion matrix and where its files are; Resume in the
sidebar brings the page back to life and Stop on the page ends it again; Delete in the sidebar
removes it (the API answers 404) and the open page says so. In the file browser, "Train on this
table" on a CSV (not on a notebook) opens a new notebook beside it, saved, whose TrainingPanel
reads that file. With ``UPDATE_SCREENSHOT=1`` the sidebar beside the running task's page replaces
``docs/lab.png`` (docs/lab.md's picture).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest
import requests

from trainer.datasets import make_classification

from .conftest import REPO, Lab

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.kernel, pytest.mark.server,
              pytest.mark.timeout(900)]

TABLE = "table.csv"
# Enough epochs (a fraction of a second each on an idle machine, far more on a busy one) to watch,
# pause and resume it; the test stops it before the end.
CONFIG = {"data_path": TABLE, "target_column": "label", "epochs": 60, "early_stopping": False, "batch_size": 64,
          "name": "lab demo run", "output_path": "lab-demo", "hidden_units": [32, 16], "loggers": ["tensorboard"]}
DOCS_SCREENSHOT = REPO / "docs" / "lab.png"
KERNEL_TIMEOUT_MS = 180_000
APPEAR_S = 2.0


@pytest.fixture
def shots(artifacts: Path) -> Callable[..., None]:
    folder = artifacts / "lab"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return lambda page, name: page.screenshot(path=str(folder / f"{name}.png"))


class Api:
    """The training API of the running Lab, as any client calls it."""

    def __init__(self, lab: Lab):
        self.base = f"{lab.url}/api/v1/epoch-training"
        self.headers = lab.headers

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.base}/{path}", headers=self.headers, timeout=60, **kwargs)

    def state(self, task_id: str) -> str:
        answer = self.call("GET", f"tasks/{task_id}")
        answer.raise_for_status()
        return answer.json()["task"]["training_state"]

    def wait_state(self, task_id: str, states: set[str], timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        state = self.state(task_id)
        while state not in states:
            assert time.monotonic() < deadline, f"task {task_id} is {state!r}, not one of {states} after {timeout}s"
            time.sleep(0.2)
            state = self.state(task_id)
        return state


def require_extension() -> None:
    listing = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                             text=True, timeout=120)
    text = listing.stdout + listing.stderr
    assert re.search(r"epoch-widgets v\S+ .*enabled", text), (
        "the epoch-widgets JupyterLab extension is not installed in this environment: "
        f"`bash scripts/setup.sh test` (an editable install) builds and installs it\n{text}")


def open_lab(page: Any, lab: Lab) -> None:
    from playwright.sync_api import expect
    page.goto(f"{lab.url}/lab?token={lab.token}")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=KERNEL_TIMEOUT_MS)


def left_tab(page: Any, widget_id: str) -> Any:
    return page.locator(f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{widget_id}"]')


def wait_until(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


def visible_panel(page: Any) -> Any:
    """The TrainingPanel output of the notebook in front, once its kernel has run the first cell."""
    from playwright.sync_api import expect
    output = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output",
                          has=page.locator("button", has_text="Start"))
    expect(output).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
    return output


def page_dots(page_node: Any, chart: str) -> int:
    return page_node.locator(f'.ew-lab-chart[data-chart="{chart}"] circle').count()


def test_sidebar_task_page_and_file_browser(jupyter_lab: Lab, lab_root: Path, page: Any, artifacts: Path,
                                           shots: Callable[..., None]) -> None:
    from playwright.sync_api import expect

    require_extension()
    make_classification(rows=8000, seed=0).to_csv(lab_root / TABLE, index=False)
    api = Api(jupyter_lab)
    try:
        open_lab(page, jupyter_lab)
        # The command palette has "New training panel"; the launcher's card (open at start) opens a
        # new notebook whose panel trains on the demo data.
        card = page.locator(".jp-LauncherCard", has_text="New training panel")
        expect(card).to_be_visible()
        page.keyboard.press("Control+Shift+c")
        page.keyboard.type("New training panel")
        expect(page.locator(".lm-CommandPalette-item", has_text="New training panel")).to_be_visible()
        page.keyboard.press("Escape")
        card.click()
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="demo-training.ipynb")).to_be_visible()
        demo = visible_panel(page)
        expect(demo.locator("button", has_text="Start")).to_be_enabled()
        assert "label" in demo.locator("select").evaluate_all("es => es.map(e => e.value)")
        assert (lab_root / "demo-training.ipynb").is_file()
        shots(page, "0-new-training-panel")

        # The Training sidebar: a task started by another client appears within 2 s of its start
        # answering, and its validation-loss sparkline grows.
        left_tab(page, "epoch-widgets-training").click()
        sidebar = page.locator("#epoch-widgets-training")
        expect(sidebar).to_be_visible()
        expect(sidebar).to_contain_text("No training tasks on this server yet")
        started = api.call("POST", "start", json=CONFIG)
        assert started.status_code == 200, started.text
        task_id = started.json()["task_id"]
        answered = time.monotonic()
        row = sidebar.locator(f'li.ew-TaskRow[data-task-id="{task_id}"]')
        expect(row).to_be_visible(timeout=int(APPEAR_S * 1000))
        assert time.monotonic() - answered < APPEAR_S + 0.5
        expect(row.locator(".ew-TaskRow-name")).to_have_text(CONFIG["name"])
        points = lambda: int(row.locator(".ew-TaskRow-spark").get_attribute("data-points") or 0)  # noqa: E731
        first = wait_until(points, "the sparkline's first point")
        wait_until(lambda: points() > first, "the sparkline to grow")

        # Pause and Resume in the sidebar: the API confirms each.
        row.locator(".ew-TaskRow-pause").click()
        assert api.wait_state(task_id, {"paused"}, timeout=30) == "paused"
        expect(row).to_have_attribute("data-state", "paused")
        shots(page, "1-sidebar-paused")
        row.locator(".ew-TaskRow-resume").click()
        assert api.wait_state(task_id, {"running"}, timeout=30) == "running"
        expect(row).to_have_attribute("data-state", "running")

        # Clicking the task opens its page, whose curves and table grow live.
        row.locator(".ew-TaskRow-name").click()
        task_page = page.locator(f"#epoch-widgets-task-{task_id}")
        expect(task_page).to_be_visible()
        expect(task_page.locator("h2")).to_have_text(CONFIG["name"])
        for chart in ("Loss", "Accuracy", "Learning rate"):
            expect(task_page.locator(f'.ew-lab-chart[data-chart="{chart}"]')).to_be_visible()
        seen = wait_until(lambda: page_dots(task_page, "Loss"), "the page's loss curve")
        wait_until(lambda: page_dots(task_page, "Loss") > seen, "the page's loss curve to grow")
        assert task_page.locator(".ew-lab-epoch-table tbody tr").count() >= 1
        # "Open a training task…" in the palette lists it, and brings the same page to the front.
        page.keyboard.press("Control+Shift+c")
        page.keyboard.type("Open a training task")
        page.locator(".lm-CommandPalette-item", has_text="Open a training task").first.click()
        expect(page.locator(".jp-Dialog select")).to_contain_text(task_id)
        page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(task_page).to_have_count(1)
        expect(task_page).to_be_visible()
        wait_until(lambda: page_dots(task_page, "Loss") >= 2 * 8, "8 epochs on the page's loss chart", timeout=300)
        shots(page, "2-sidebar-and-task-page")

        # Pause and Resume on the page: the API confirms each; the buttons follow the state.
        button = lambda action: task_page.locator(f'[data-action="{action}"]')  # noqa: E731
        button("pause").click()
        assert api.wait_state(task_id, {"paused"}, timeout=30) == "paused"
        expect(task_page.locator(".ew-lab-state")).to_have_text("paused")
        expect(button("pause")).to_be_disabled()
        button("resume").click()
        assert api.wait_state(task_id, {"running"}, timeout=30) == "running"
        expect(task_page.locator(".ew-lab-state")).to_have_text("running")
        # The config is folded under a one-line summary, and stays open across the page's redraws.
        expect(task_page.locator(".ew-lab-config-box summary")).to_contain_text("mlp [32,16], 60 epochs")
        task_page.locator(".ew-lab-config-box summary").click()
        expect(task_page.locator(".ew-lab-config")).to_contain_text("hidden_units")

        # Stop in the sidebar: the page shows how it ended, the evaluation and where the files are.
        row.locator(".ew-TaskRow-stop").click()
        assert api.wait_state(task_id, {"stopped"}, timeout=60) == "stopped"
        expect(task_page.locator(".ew-lab-state")).to_have_text("stopped", timeout=15_000)
        expect(task_page.locator(".ew-lab-config")).to_be_visible()
        expect(task_page.locator(".ew-lab-confusion")).to_be_visible(timeout=15_000)
        expect(task_page.locator(".ew-lab-logs")).to_contain_text("/models/lab-demo")
        expect(task_page.locator(".ew-lab-logs")).to_contain_text("TensorBoard: /models/lab-demo/tensorboard")
        expect(button("resume")).to_be_enabled()
        expect(button("pause")).to_be_disabled()
        task_page.locator(".ew-lab-confusion").scroll_into_view_if_needed()
        shots(page, "3-task-page-stopped")

        # Resume in the sidebar: the page goes live again (it learns it from the sidebar's stream);
        # Stop on the page ends it again.
        row.locator(".ew-TaskRow-resume").click()
        assert api.wait_state(task_id, {"pending", "running"}, timeout=60) in {"pending", "running"}
        expect(task_page.locator(".ew-lab-state")).to_have_text(re.compile("pending|running"), timeout=15_000)
        expect(task_page.locator('.ew-lab-section[data-section="Evaluation"]')).to_have_count(0)
        api.wait_state(task_id, {"running"}, timeout=120)
        expect(button("stop")).to_be_enabled(timeout=15_000)
        button("stop").click()
        assert api.wait_state(task_id, {"stopped"}, timeout=60) == "stopped"
        expect(task_page.locator(".ew-lab-confusion")).to_be_visible(timeout=15_000)

        # Delete in the sidebar: gone there and from the API, and the open page says so.
        row.locator(".ew-TaskRow-delete").click()
        expect(row).to_have_count(0, timeout=10_000)
        assert api.call("GET", f"tasks/{task_id}").status_code == 404
        expect(task_page.locator(".ew-lab-message")).to_contain_text("no longer exists", timeout=10_000)
        expect(button("delete")).to_be_disabled()

        # The file browser: right-click the table, "Train on this table": a new notebook beside it
        # whose panel reads that file.
        if not page.locator("#filebrowser").is_visible():
            left_tab(page, "filebrowser").click()
        # Not offered for a file the panel cannot read.
        page.locator(".jp-DirListing-item", has_text=re.compile(r"^demo-training\.ipynb")).click(button="right")
        expect(page.locator(".lm-Menu-item", has_text="Open With")).to_be_visible()
        expect(page.locator(".lm-Menu-item:visible", has_text="Train on this table")).to_have_count(0)
        page.keyboard.press("Escape")
        entry = page.locator(".jp-DirListing-item", has_text=re.compile(rf"^{re.escape(TABLE)}"))
        entry.click(button="right")
        page.locator(".lm-Menu-item", has_text="Train on this table").click()
        notebook_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="table-training.ipynb")
        expect(notebook_tab).to_be_visible(timeout=60_000)
        output = visible_panel(page)
        assert any(v == TABLE for v in output.locator("input[type=text]").evaluate_all("es => es.map(e => e.value)"))
        # Saved with the panel's output: closing it asks nothing.
        saved = lab_root / "table-training.ipynb"
        wait_until(lambda: "widget-view+json" in saved.read_text(), "the notebook saved with its panel", timeout=30)
        assert 'TrainingPanel(data_path="table.csv")' in nbformat.read(saved, as_version=4).cells[0].source
        shots(page, "4-train-on-this-table")
    except BaseException:
        page.screenshot(path=str(artifacts / "lab" / "failure.png"))
        raise
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copy(artifacts / "lab" / "2-sidebar-and-task-page.png", DOCS_SCREENSHOT)
