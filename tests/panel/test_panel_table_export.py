"""Numbers to read and to take away: the metrics table, the final metrics, CSV and PNG export,
and the static snapshot kept in the notebook."""
from __future__ import annotations

import asyncio
import io
import re

import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from epoch_widgets.charts import export, static_figure
from epoch_widgets.panel.metrics_table import final_html, table_html
from epoch_widgets.charts.snapshot import Snapshot

from .test_panel_training import make_panel


def history(n: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.5 + e / 100, "val_loss": 1.1 / e,
             "val_accuracy": 0.5 + e / 110, "learning_rate": 0.01, "time_per_epoch": 0.5} for e in range(1, n + 1)]


def test_the_table_shows_the_last_epochs_with_the_best_marked() -> None:
    html = table_html(history(20), best_epoch=18, rows=8)
    assert html.count("<tr") == 1 + 1 + 8                  # heading, "12 earlier epochs", 8 rows
    assert "12 earlier epochs" in html and ">13<" in html and ">20<" in html and ">12<" not in html
    assert "val acc" in html and "train loss" in html and "0.50s" in html
    assert "best epoch" in html and "var(--jp-" in html     # the theme's colours
    assert "No epochs yet" in table_html([], None)


def test_final_metrics_name_the_best_and_the_last_epoch() -> None:
    h = history(12)
    html = final_html("early_stopped", h, {"loss": 0.1, "accuracy": 0.9, "epoch": 9}, restored=True, elapsed=61)
    assert "Early stopped" in html and "after 12 epochs in 1:01" in html
    assert "Best epoch 9 (its weights are the model's): val loss <b>0.1</b>, val accuracy <b>0.9</b>" in html
    assert f"Last epoch 12: val loss {h[-1]['val_loss']:.4g}" in html


def test_csv_and_png_export_from_the_buttons(clf_df: pd.DataFrame, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)             # the kernel's working directory: the notebook's folder

    async def main() -> TrainingPanel:
        panel = make_panel(clf_df, epochs=3)
        assert panel.exports.csv_button.disabled and panel.exports.png_button.disabled   # nothing yet
        panel.start()
        await panel.wait()
        assert not panel.exports.csv_button.disabled
        panel.exports.csv_button.click()
        panel.exports.png_button.click()
        await panel.exports.pending
        return panel

    panel = asyncio.run(main())
    csv = next(tmp_path.glob("*.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(csv), panel.history_df, check_exact=False)
    png = next(tmp_path.glob("*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "download PNG" in panel.exports.link.value and png.name in panel.exports.link.value
    assert "data:image/png;base64," in panel.exports.link.value
    out = panel.export_csv(tmp_path / "sub" / "h.csv")
    assert out.exists() and out.read_text().startswith("epoch,train_loss")
    # Named by the run: its model and start time (the name was left at the default).
    assert re.fullmatch(r"mlp \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", panel.run.config.name), panel.run.config.name
    slug = re.sub(r"[^a-z0-9]+", "-", panel.run.config.name.lower())
    assert csv.name == f"{slug}.csv" and png.name == f"{slug}.png"
    assert panel.export_csv().name == f"{slug}-2.csv"          # taken: numbered, not overwritten


def test_a_named_run_keeps_its_name(clf_df: pd.DataFrame, tmp_path) -> None:
    async def main() -> TrainingPanel:
        panel = make_panel(clf_df, epochs=1, name="My baseline")
        assert "model and start time" not in panel.controls.hint_text("name")
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.run.config.name == "My baseline"
    assert panel.export_csv(tmp_path / "x.csv").exists()
    assert export.default_path("My baseline", "csv", tmp_path).name == "my-baseline.csv"


@pytest.mark.skipif(not static_figure.available(), reason="needs matplotlib")
def test_the_static_figure_draws_every_curve(clf_df: pd.DataFrame) -> None:
    from PIL import Image

    async def main() -> TrainingPanel:
        panel = make_panel(clf_df, epochs=3)
        panel.start()
        await panel.wait()
        panel.controls["learning_rate"].value = 0.02
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    data = panel.figure_data()
    assert data.previous is not None and data.previous_label == "lr 0.01"
    image = Image.open(io.BytesIO(static_figure.render_png(data)))
    assert image.size[0] > 1000 and image.size[1] > 300


def test_the_live_panel_hides_its_snapshot_and_a_run_refreshes_it(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    styles = [c.value for c in panel.children if "<style>" in getattr(c, "value", "")]
    assert styles and f".{panel.snapshot.css_class}{{display:none" in styles[0]
    snap = Snapshot()
    assert "no run had finished" in snap.html and snap.css_class in snap.html
    snap.refresh(b"\x89PNG-bytes", "<div class='ew-final'>Best epoch 3</div>", "<table></table>")
    assert "data:image/png;base64," in snap.html and "Best epoch 3" in snap.html
    assert "Error displaying widget" not in snap.html and ".jupyter-widgets" in snap.html   # hides that text
    assert snap.bundle()["text/html"] == snap.html


def test_extra_views_are_added_as_tabs(clf_df: pd.DataFrame) -> None:
    import ipywidgets as W
    panel = TrainingPanel(data=clf_df, target_column="label")
    assert panel.views.titles == ("Epochs", "Model summary", "Evaluation", "LR finder", "Runs", "Sweep")
    mine = W.HTML("my view")
    panel.add_view("Mine", mine, select=True)
    assert panel.views.titles[-1] == "Mine"
    assert panel.tabs.pages.pages[-1] is mine and panel.views.selected_index == 6
    assert panel.views.children[-1].children == (mine,)          # the selected tab holds its page
