"""The quickstart's panel in a real JupyterLab and in Voila, driven in headless Chromium the way a
person uses it, a screenshot at every step (``test-artifacts/browser/``).

JupyterLab: run the cells down to the panel; before Start the epoch axis shows whole epochs 1..N
and no legend covers a chart; switching config tabs moves nothing; the Model summary tab shows the
model; Start says "preparing" at once with Start disabled; the curves grow on whole-epoch ticks;
log scale, zoom, CSV and PNG export work; at 1024 px with the file browser open the charts wrap
instead of being cut off; Pause holds still, Resume goes on to the end with the final metrics
shown; the Evaluation tab shows the confusion matrix and the Runs tab the run; Find LR plots the
search with its suggestion, which "Use suggested rate" puts into the learning rate; dark theme;
then the saved notebook opened without its kernel, and its HTML export, show the static snapshot. Voila: the app
notebook (only the panel and a data-file picker) renders, keeps every settings field readable with Advanced open,
and trains. With ``UPDATE_SCREENSHOT=1`` a mid-training screenshot also
replaces ``docs/panel.png``, the README's picture.
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

from .conftest import REPO, Lab

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(1500)]

QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"
README_SCREENSHOT = REPO / "docs" / "panel.png"
# Half the quickstart's own rows: still long enough (tens of seconds) to watch the run grow and to
# pause it half-way, on a machine the other test suites share.
PARAMETERS = {"ROWS": 20000, "EPOCHS": 30}
KERNEL_TIMEOUT_MS = 180_000
TRAINING_TIMEOUT_S = 600


def prepare_quickstart(dest: Path, parameters: dict[str, int]) -> int:
    """Copy the quickstart with ``parameters`` and no stored outputs; return how many cells (from
    the top) to run to display the panel."""
    nb = nbformat.read(QUICKSTART, as_version=4)
    params = next((c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Parameters")), None)
    assert params is not None, "the quickstart needs a '# Parameters' code cell"
    for name, value in parameters.items():
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
    """Reads the rendered panel the way a person reads it: state, counters, the charts' points,
    ticks and legends."""

    _READ = """root => {
        const st = root.querySelector('.ew-state');
        const state = st ? [...st.classList].find(c => c.startsWith('ew-state-')).slice(9) : null;
        const texts = [...root.querySelectorAll('.widget-html')].map(e => e.innerText.trim());
        const counter = texts.find(t => /^\\d+\\/\\d+ done/.test(t)) || '';
        // The curves' figures: not those in the tabs below them (LR finder, Evaluation, Runs).
        const figs = [...root.querySelectorAll('.bqplot.figure')].filter(f => !f.closest('.widget-tab'));
        const fig = name => figs.find(f => (f.querySelector('.mainheading') || {}).textContent?.startsWith(name));
        // Only the ticks a person sees: d3 fades ticks in and out when the axis changes.
        const ticks = f => f ? [...f.querySelectorAll('g.axis')[0].querySelectorAll('.tick')]
            .filter(t => parseFloat(getComputedStyle(t).opacity) > 0.5)
            .map(t => t.textContent.trim()).filter(t => t.length > 0) : [];
        const loss = fig('Loss');
        const xs = loss ? [...loss.querySelectorAll('.dot')].map(d => d.getBoundingClientRect())
            .filter(r => r.width > 0).map(r => Math.round(r.x + r.width / 2)) : [];
        // bqplot's own legends draw inside the plot; the panel's legends are HTML below each figure.
        const covered = figs.some(f => [...f.querySelectorAll('.legend text')]
            .some(t => t.textContent.trim().length > 0));
        const htmlLegends = [...root.querySelectorAll('.ew-legend')].map(l => l.getBoundingClientRect());
        const figBoxes = figs.map(f => f.getBoundingClientRect());
        const overlap = htmlLegends.some(l => figBoxes.some(b =>
            l.left < b.right - 1 && l.right > b.left + 1 && l.top < b.bottom - 1 && l.bottom > b.top + 1));
        return {state, counter, xs, lossTicks: ticks(loss), lrTicks: ticks(fig('Learning rate')),
                lossYTicks: loss ? [...loss.querySelectorAll('g.axis')[1].querySelectorAll('.tick')]
                    .map(t => t.textContent.trim()) : [],
                legendsCover: covered || overlap, figBoxes: figBoxes.map(b => [b.left, b.top, b.right, b.bottom]),
                rootBox: (r => [r.left, r.top, r.right, r.bottom])(root.getBoundingClientRect())};
    }"""

    # Every state the state line shows, in order, as the DOM changes: a state that lasts a fraction
    # of a second ("preparing" on a fast machine) is seen even if no poll lands on it.
    _RECORD_STATES = """root => {
        window.__ewStatesSeen = [];
        const note = () => root.querySelectorAll('.ew-state').forEach(st => {
            const c = [...st.classList].find(c => c.startsWith('ew-state-'));
            if (c && window.__ewStatesSeen.at(-1) !== c.slice(9)) window.__ewStatesSeen.push(c.slice(9));
        });
        new MutationObserver(note).observe(root, {subtree: true, childList: true, characterData: true,
                                                  attributes: true});
        note();
    }"""

    def __init__(self, output: Any):
        self.output = output

    def record_states(self) -> None:
        self.output.evaluate(self._RECORD_STATES)

    def states_seen(self) -> list[str]:
        return self.output.evaluate("() => window.__ewStatesSeen")

    def read(self) -> dict[str, Any]:
        raw = self.output.evaluate(self._READ)
        assert raw["state"], "no state line in the panel"
        counter = re.match(r"(\d+)/(\d+) done", raw["counter"])
        assert counter, f"no epoch counter in the panel: {raw['counter']!r}"
        return {**raw, "epoch": int(counter.group(1)), "total": int(counter.group(2)),
                "loss_points": len(set(raw["xs"]))}

    def button(self, label: str) -> Any:
        return self.output.locator("button", has_text=re.compile(rf"^\s*{label}\s*$"))


def wait_for(view: PanelView, check: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = TRAINING_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = view.read()
    while not check(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; the panel shows {seen}")
        time.sleep(0.2)
        seen = view.read()
    return seen


def whole_epochs(ticks: list[str]) -> bool:
    return bool(ticks) and all(re.fullmatch(r"\d+", t.replace(",", "")) for t in ticks)


def view_tab(output: Any, title: str) -> Any:
    """The tab called ``title`` among the views below the curves."""
    return output.locator(".lm-TabBar-tab", has_text=re.compile(rf"^\s*{re.escape(title)}\s*$"))


def open_notebook(page: Any, lab: Lab, name: str) -> None:
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
    from playwright.sync_api import expect
    kernel_idle = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\|\s*Idle"))
    expect(kernel_idle.first).to_be_visible(timeout=KERNEL_TIMEOUT_MS)


def open_quickstart_panel(page: Any, lab: Lab, parameters: dict[str, int]) -> Any:
    """The quickstart (with ``parameters``) opened in Lab and its cells run down to the panel, as a
    person would: select the first cell, Shift+Enter. Returns the panel's output area."""
    from playwright.sync_api import expect

    cells_to_run = prepare_quickstart(lab.root / QUICKSTART.name, parameters)
    open_notebook(page, lab, QUICKSTART.name)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Escape")
    for _ in range(cells_to_run):
        page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output", has=page.locator("button", has_text="Start"))
    expect(output).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
    expect(page.locator(".jp-OutputArea", has_text="Error displaying widget")).to_have_count(0)
    return output


def test_quickstart_panel_in_jupyterlab(jupyter_lab: Lab, lab_root: Path, page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    notebook = lab_root / QUICKSTART.name
    for old in artifacts.glob("*.png"):
        old.unlink()
    shot = lambda name, target=page: target.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    try:
        output = open_quickstart_panel(page, jupyter_lab, PARAMETERS)
        view = PanelView(output)
        start = view.button("Start")
        expect(start).to_be_enabled()
        before = view.read()
        assert before["state"] == "pending" and before["loss_points"] == 0, before
        # 2. Before there is data: whole epochs 1..EPOCHS. 3. No legend over a chart.
        assert whole_epochs(before["lossTicks"]) and before["lossTicks"][0] == "1", before["lossTicks"]
        assert before["lossTicks"][-1] == str(PARAMETERS["EPOCHS"]), before["lossTicks"]
        assert whole_epochs(before["lrTicks"]) and not before["legendsCover"], before
        # The static snapshot is in the output too, hidden while the live panel shows.
        expect(page.locator(".ew-snapshot")).to_have_count(1)
        expect(page.locator(".ew-snapshot")).to_be_hidden()
        output.scroll_into_view_if_needed()
        shot("1-panel-ready")

        # 8. Switching config tabs moves nothing below them.
        tabs = output.locator(".lm-TabBar-tab")
        places = set()
        for i in range(min(tabs.count(), 7)):
            if not tabs.nth(i).is_visible():
                continue
            tabs.nth(i).click()
            box = start.bounding_box()
            places.add((round(box["y"]), round(output.bounding_box()["height"])))
        assert len(places) == 1, f"the panel's height or its buttons moved between tabs: {places}"
        tabs.first.click()

        # The Model summary tab: the model the settings build, computed off the kernel's loop.
        view_tab(output, "Model summary").click()
        summary = output.locator(".epoch-widgets-model-summary")
        expect(summary).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        expect(summary).to_contain_text("parameters")
        expect(summary).to_contain_text("Linear")
        summary.scroll_into_view_if_needed()
        shot("1b-model-summary", output)
        view_tab(output, "Epochs").click()

        # 1. Start: at once a visible "preparing" state with Start disabled, then training.
        view.record_states()
        start.click()
        expect(start).to_be_disabled()
        shot("2-preparing", output)
        first = wait_for(view, lambda s: s["state"] == "running" and s["epoch"] >= 1, "the first epoch")
        seen = view.states_seen()
        assert "preparing" in seen and "running" in seen[seen.index("preparing"):], seen
        assert first["total"] == PARAMETERS["EPOCHS"], first
        expect(output.locator(".ew-state-preparing")).to_have_count(0)
        grown = wait_for(view, lambda s: s["epoch"] >= first["epoch"] + 2 or s["state"] != "running",
                         "two more epochs")
        assert grown["state"] == "running", f"the run ended too early to test on: {grown}"
        assert grown["loss_points"] > first["loss_points"] > 0, (first, grown)
        assert whole_epochs(grown["lossTicks"]) and not grown["legendsCover"], grown
        page.mouse.move(0, 0)
        time.sleep(0.6)         # let the epoch's messages (marks, legends, table) all arrive
        shot("3-training", output)
        shot("3-training-page")

        # Pause holds still; Resume goes on.
        view.button("Pause").click()
        paused = wait_for(view, lambda s: s["state"] == "paused", "the paused state", timeout=60)
        # The last epoch's point may still be on its way to the chart: read once it has settled.
        for _ in range(20):
            time.sleep(0.5)
            again = view.read()
            if (again["epoch"], again["loss_points"]) == (paused["epoch"], paused["loss_points"]):
                break
            paused = again
        time.sleep(2)
        held = view.read()
        assert (held["epoch"], held["loss_points"]) == (paused["epoch"], paused["loss_points"]), (paused, held)
        shot("4-paused", output)
        view.button("Resume").click()
        wait_for(view, lambda s: s["state"] != "paused", "the run to leave the paused state", timeout=60)
        # 7. Log scale for the loss, zoom on and off, CSV and PNG export.
        linear_ticks = grown["lossYTicks"]
        output.locator("button", has_text="Log scale").click()
        # The click travels to the kernel and the new scale back; on a busy 2-core machine that
        # can take more than a second.
        wait_for(view, lambda s: s["lossYTicks"] != linear_ticks, "the loss axis to change to a log scale",
                 timeout=15)
        shot("5-log-scale", output)
        output.locator("button", has_text="Log scale").click()
        output.locator("button", has_text="Zoom").click()
        output.locator("button", has_text="Zoom").click()
        output.locator("button", has_text="CSV").click()
        link = output.locator("a", has_text="download CSV")
        expect(link).to_be_visible(timeout=30_000)
        with page.expect_download() as download:
            link.click()
        csv = Path(download.value.path()).read_text()
        assert csv.startswith("epoch,train_loss,") and len(csv.strip().splitlines()) >= 1 + first["epoch"], csv[:200]
        output.locator("button", has_text="PNG").click()
        link = output.locator("a", has_text="download PNG")
        expect(link).to_be_visible(timeout=60_000)
        with page.expect_download() as download:
            link.click()
        assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert list(lab_root.glob("*.csv")) and list(lab_root.glob("*.png")), "exports not written next to the notebook"

        # 3. At 1024 px with the file browser open, the charts wrap instead of being cut off.
        page.set_viewport_size({"width": 1024, "height": 1200})
        time.sleep(1.5)
        narrow = view.read()
        right = narrow["rootBox"][2]
        assert all(box[2] <= right + 2 for box in narrow["figBoxes"]), narrow
        assert len({round(box[1]) for box in narrow["figBoxes"]}) > 1, f"the charts did not wrap: {narrow}"
        assert not narrow["legendsCover"], narrow
        shot("6-narrow-1024")
        page.set_viewport_size({"width": 1400, "height": 1200})

        later = view.read()
        if later["state"] == "running":
            page.mouse.move(0, 0)
            time.sleep(0.6)
            shot("7-training-later", output)
        end = wait_for(view, lambda s: s["state"] in ("completed", "early_stopped"), "the end of the run")
        assert end["loss_points"] >= end["epoch"] and whole_epochs(end["lossTicks"]), end
        expect(output.locator(".ew-final")).to_contain_text("Best epoch")
        expect(start).to_be_enabled()
        expect(view.button("Pause")).to_be_disabled()
        shot("8-finished", output)

        # The Evaluation tab: the confusion matrix with its counts, beside the per-class table.
        view_tab(output, "Evaluation").click()
        heat = output.locator(".bqplot.figure", has=page.locator(".mainheading", has_text="Confusion matrix"))
        expect(heat).to_be_visible(timeout=120_000)
        expect(output.locator("table.epoch-widgets-report")).to_contain_text("macro avg")
        heat.scroll_into_view_if_needed()
        page.mouse.move(0, 0)           # no figure toolbar over the title
        time.sleep(1)
        shot("8b-evaluation", output)
        # The Runs tab: the run just trained, compared with any others.
        view_tab(output, "Runs").click()
        expect(output.get_by_text(re.compile(r"1 run\(s\) of this session"))).to_be_visible(timeout=60_000)
        time.sleep(1)
        shot("8c-runs", output)
        # Find LR: the loss against the rate, the suggestion marked, and its button.
        view.button("Find LR").click()
        lr_message = output.locator(".widget-html", has_text="suggested learning_rate")
        expect(lr_message).to_be_visible(timeout=180_000)
        expect(view.button("Start")).to_be_enabled()
        lr_figure = output.locator(".bqplot.figure", has=page.locator(".mainheading", has_text="Learning-rate finder"))
        expect(lr_figure.locator(".dot").first).to_be_attached()          # the suggestion's marker
        lr_figure.scroll_into_view_if_needed()
        page.mouse.move(0, 0)
        time.sleep(1)
        shot("8d-lr-finder", output)
        view.button("Use suggested rate").click()
        expect(output.get_by_text("learning_rate is now")).to_be_visible(timeout=30_000)

        # 11. Dark theme (a screenshot to look at).
        page.keyboard.press("Control+Shift+c")
        page.keyboard.type("JupyterLab Dark")
        page.keyboard.press("Enter")
        time.sleep(2)
        shot("9-dark", output)

        # 12. Save; the snapshot (refreshed at the run's end) is in the file.
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "data:image/png;base64" not in notebook.read_text():
            time.sleep(0.5)
        saved = notebook.read_text()
        assert "ew-snapshot" in saved and "data:image/png;base64" in saved and "Best epoch" in saved
    except BaseException:
        page.screenshot(path=str(artifacts / "failure.png"))
        raise

    check_saved_notebook_without_kernel(jupyter_lab, page, artifacts)
    check_html_export(notebook, page, artifacts)
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        later = artifacts / "7-training-later.png"
        shutil.copy(later if later.exists() else artifacts / "3-training.png", README_SCREENSHOT)


def check_saved_notebook_without_kernel(lab: Lab, page: Any, artifacts: Path) -> None:
    """12. The saved notebook in a fresh session (its kernel gone, the cells not run) shows the
    snapshot: the curves' picture and the final metrics, not "model not found"."""
    from playwright.sync_api import expect

    for session in requests.get(f"{lab.url}/api/sessions", headers=lab.headers, timeout=30).json():
        requests.delete(f"{lab.url}/api/sessions/{session['id']}", headers=lab.headers, timeout=60)
    fresh = page.context.browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
    fresh.set_default_timeout(60_000)
    try:
        open_notebook(fresh, lab, QUICKSTART.name)
        snapshot = fresh.locator(".ew-snapshot")
        expect(snapshot).to_be_visible(timeout=60_000)
        expect(snapshot.locator("img")).to_be_visible()
        expect(snapshot).to_contain_text("Best epoch")
        time.sleep(3)        # the widget manager gives up on the missing model after about 2 s
        expect(fresh.get_by_text("Error displaying widget")).to_be_hidden()
        snapshot.scroll_into_view_if_needed()
        fresh.screenshot(path=str(artifacts / "10-reopened-without-kernel.png"))
    except BaseException:
        fresh.screenshot(path=str(artifacts / "failure-reopened.png"))
        raise
    finally:
        fresh.context.close()


def check_html_export(notebook: Path, page: Any, artifacts: Path) -> None:
    """12. ``jupyter nbconvert --to html`` of the saved notebook shows the snapshot too."""
    from playwright.sync_api import expect

    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(notebook)], check=True,
                   capture_output=True, timeout=300)
    html = notebook.with_suffix(".html")
    fresh = page.context.browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
    try:
        fresh.goto(html.as_uri())
        snapshot = fresh.locator(".ew-snapshot")
        expect(snapshot.locator("img")).to_be_visible()
        expect(snapshot).to_contain_text("Best epoch")
        snapshot.scroll_into_view_if_needed()
        fresh.screenshot(path=str(artifacts / "11-html-export.png"))
    finally:
        fresh.context.close()


APP = REPO / "notebooks" / "app.ipynb"

# Every settings tab, with its Advanced section open: each field's row keeps a readable height, no
# two rows overlap, and no label is cut off with an ellipsis.
_READ_SETTINGS = """root => {
    const tab = root.querySelector('.widget-tab');
    const pages = [...tab.querySelector('.widget-tab-contents').children];
    const page = pages.find(p => p.getBoundingClientRect().height > 0);
    const shown = e => e.getBoundingClientRect().height > 0 && getComputedStyle(e).display !== 'none';
    const rows = [...page.querySelectorAll('.widget-hbox')].filter(r => r.closest('.widget-tab') === tab)
        .filter(r => r.querySelector('.widget-label')).filter(shown)
        .map(r => { const b = r.getBoundingClientRect();
                    return {label: r.querySelector('.widget-label').textContent.trim(), top: b.top,
                            bottom: b.bottom, height: b.height}; });
    const cut = [...page.querySelectorAll('.widget-label')].filter(shown)
        .filter(l => l.scrollWidth > l.clientWidth + 1).map(l => l.textContent.trim());
    return {rows, cut};
}"""


def check_settings_layout(output: Any, artifacts: Path) -> None:
    """Issue 23.1: opening Advanced scrolls the tab; the fields above it keep their height."""
    from playwright.sync_api import expect

    tabs = output.locator(".widget-tab").first.locator(".lm-TabBar-tab")
    problems = []
    for i in range(tabs.count()):
        tabs.nth(i).click()
        title = tabs.nth(i).inner_text().strip()
        advanced = output.locator(".widget-tab").first.locator(".jupyter-widget-Collapse-header",
                                                                 has_text="Advanced")
        visible = [advanced.nth(j) for j in range(advanced.count()) if advanced.nth(j).is_visible()]
        if visible:
            visible[0].click()
            expect(output.locator(".widget-tab").first.locator(".jupyter-widget-Collapse-open")).not_to_have_count(0)
            time.sleep(0.5)
        seen = output.evaluate(_READ_SETTINGS)
        output.screenshot(path=str(artifacts / f"14-settings-{i}-advanced-open.png"))
        rows = sorted(seen["rows"], key=lambda r: r["top"])
        problems += [f"{title}: {r['label']} is {r['height']:.0f} px high" for r in rows if r["height"] < 24]
        problems += [f"{title}: {a['label']} overlaps {b['label']}" for a, b in zip(rows, rows[1:])
                     if b["top"] < a["bottom"] - 1]
        problems += [f"{title}: label cut off: {label}" for label in seen["cut"]]
        assert rows, f"no settings rows found in the {title} tab"
    assert not problems, problems


def test_the_app_notebook_in_voila_shows_the_panel_and_trains_a_picked_file(voila_factory: Any, tmp_path: Path,
                                                                            page: Any, artifacts: Path) -> None:
    """``voila notebooks/app.ipynb``: only the panel and its data-file picker; the settings keep
    their heights with Advanced open; the generated sample trains to the end."""
    from playwright.sync_api import expect

    app_dir = tmp_path / "app"
    app_dir.mkdir()
    nb = nbformat.read(APP, as_version=4)
    for name, value in {"SAMPLE_ROWS": 4000, "EPOCHS": 6}.items():
        nb.cells[0].source, found = re.subn(rf"(?m)^{name}\s*=\s*[^#\n]*", f"{name} = {value}  ", nb.cells[0].source)
        assert found == 1, f"the app's Parameters cell no longer sets {name}"
    nbformat.write(nb, app_dir / APP.name)
    app = voila_factory(app_dir / APP.name)
    try:
        page.goto(app.url, timeout=KERNEL_TIMEOUT_MS)
        output = page.locator(".jp-OutputArea-output", has=page.locator("button", has_text="Start"))
        expect(output).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        expect(page.locator(".jp-OutputArea-output")).to_have_count(1)       # the panel, nothing else
        check_settings_layout(output, artifacts)
        picker = output.locator("select").first
        sample = next(o for o in picker.locator("option").all_inner_texts() if o.startswith("sample"))
        picker.select_option(label=sample)
        view = PanelView(output)
        start = view.button("Start")
        expect(start).to_be_enabled(timeout=60_000)
        page.screenshot(path=str(artifacts / "15-app-ready.png"))
        start.click()
        end = wait_for(view, lambda s: s["state"] in ("completed", "early_stopped"), "the app's run to end")
        assert end["epoch"] == end["total"] == 6 and end["loss_points"] >= 6, end
        page.screenshot(path=str(artifacts / "16-app-trained.png"))
    except BaseException:
        page.screenshot(path=str(artifacts / "failure-app.png"))
        raise


# ---------------------------------------------------------------- checks on a short run (3 epochs)
# A run this short is where fractional epoch ticks showed (d3 puts about six ticks on any axis).
SHORT_RUN = {"ROWS": 2000, "EPOCHS": 3}

# The tick texts of every figure's epoch axis, by figure title, for the figures in ``root``.
_EPOCH_TICKS = """root => Object.fromEntries([...root.querySelectorAll('.bqplot.figure')].flatMap(f => {
    const axis = [...f.querySelectorAll('g.axis')]
        .find(a => (a.querySelector('.axislabel') || {}).textContent === 'epoch');
    if (!axis || f.getBoundingClientRect().width === 0) return [];
    const ticks = [...axis.querySelectorAll('.tick')].filter(t => parseFloat(getComputedStyle(t).opacity) > 0.5)
        .map(t => t.textContent.trim()).filter(t => t.length > 0);
    const where = f.closest('.widget-tab') ? 'tab' : 'panel';
    return [[where + ': ' + ((f.querySelector('.mainheading') || {}).textContent || '?'), ticks]];
}))"""


def run_short_quickstart(page: Any, lab: Lab) -> Any:
    """The quickstart's panel, trained to the end of a 3-epoch run; returns the panel's output."""
    from playwright.sync_api import expect

    output = open_quickstart_panel(page, lab, SHORT_RUN)
    view = PanelView(output)
    expect(view.button("Start")).to_be_enabled(timeout=KERNEL_TIMEOUT_MS)
    view.button("Start").click()
    wait_for(view, lambda s: s["state"] in ("completed", "early_stopped"), "the end of the run")
    expect(output.locator(".ew-final")).to_contain_text("Best epoch")
    return output


def test_a_run_leaves_the_browser_console_clean(jupyter_lab: Lab, page: Any,
                                                artifacts: Path) -> None:
    """9. No console errors from rendering the panel, a run, its end and every tab below the curves
    (bqplot figures drawn while hidden once logged hundreds of negative <rect> sizes)."""
    from playwright.sync_api import expect

    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    try:
        output = run_short_quickstart(page, jupyter_lab)
        # Every tab's figures drawn: the run's evaluation, the runs compared, then back.
        view_tab(output, "Evaluation").click()
        heat = output.locator(".bqplot.figure", has=page.locator(".mainheading", has_text="Confusion matrix"))
        expect(heat).to_be_visible(timeout=120_000)
        view_tab(output, "Runs").click()
        expect(output.get_by_text(re.compile(r"1 run\(s\) of this session"))).to_be_visible(timeout=60_000)
        for title in ("LR finder", "Epochs"):
            view_tab(output, title).click()
            time.sleep(1)
        time.sleep(1.5)         # what the last clicks set going has arrived
    except BaseException:
        page.screenshot(path=str(artifacts / "failure-console.png"))
        raise
    assert errors == [], f"{len(errors)} console error(s), the first: {errors[:5]}"


def test_every_epoch_axis_shows_whole_epochs(jupyter_lab: Lab, page: Any, artifacts: Path) -> None:
    """4. After a 3-epoch run the panel's charts and the Runs tab's show whole epochs only, and the
    Runs tab's table stays within the panel's width."""
    from playwright.sync_api import expect

    try:
        output = run_short_quickstart(page, jupyter_lab)
        view_tab(output, "Runs").click()
        expect(output.get_by_text(re.compile(r"1 run\(s\) of this session"))).to_be_visible(timeout=60_000)
        time.sleep(1.5)
        ticks = output.evaluate(_EPOCH_TICKS)
        # The Runs tab's table scrolls inside the panel rather than widening it.
        table = output.locator("table", has_text="best_loss").bounding_box()
        panel = output.bounding_box()
        output.screenshot(path=str(artifacts / "whole-epochs-runs.png"))
    except BaseException:
        page.screenshot(path=str(artifacts / "failure-epoch-ticks.png"))
        raise
    assert table is not None and table["x"] + table["width"] <= panel["x"] + panel["width"] + 1, (table, panel)
    charts = {k: v for k, v in ticks.items() if k.startswith("panel")}
    runs = {k: v for k, v in ticks.items() if k.startswith("tab")}
    assert len(charts) == 3 and len(runs) >= 3, ticks
    assert all(whole_epochs(t) and t[0] == "1" and t[-1] == "3" for t in ticks.values()), ticks
