"""The run comparison widget: overlaid curves per run, checkboxes choosing runs, the sortable
table, the Runs view keeping in-memory runs, and building it from saved files in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import bqplot as bq
import pytest

from epoch_widgets.charts.compare import PALETTE, RunComparison, RunsView, compare_runs
from trainer import Trainer

REPO = Path(__file__).resolve().parents[2]


def config(output_path, **overrides):
    cfg = {"seed": 0, "epochs": 3, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.005,
           "learning_rate_scheduler": "none", "early_stopping": False, "device": "cpu", "target_column": "label",
           "output_path": str(output_path) if output_path else None}
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def models(tmp_path_factory, clf_df):
    """Three saved classification runs with different learning rates, saved a, b, c."""
    root = tmp_path_factory.mktemp("compare") / "models"
    for name, lr in (("a", 0.001), ("b", 0.005), ("c", 0.02)):
        Trainer(config(root / name, learning_rate=lr), clf_df).fit()
        time.sleep(0.05)
    return root


def lines(fig: bq.Figure) -> list[bq.Lines]:
    return [m for m in fig.marks if isinstance(m, bq.Lines)]


def test_the_comparison_overlays_each_runs_curves_in_its_own_color(models):
    view = compare_runs(models)
    assert [r.label for r in view.records] == ["c", "b", "a"]          # newest first
    loss = lines(view.figures["loss"])
    assert len(loss) == 6                                              # train and validation per run
    assert len(lines(view.figures["accuracy"])) == 6 and len(lines(view.figures["learning_rate"])) == 3
    # A figure without data is left out of the page (hidden, it would be drawn at a width of 0).
    assert view.figures["mae"] not in view.figure_box.children and view.figures["accuracy"] in view.figure_box.children
    assert {m.colors[0] for m in loss} == set(PALETTE[:3])
    assert sorted(m.line_style for m in loss) == ["dashed"] * 3 + ["solid"] * 3
    # The legend is HTML below the figures (inside, it covered the y-axis labels): each run named
    # once, by its name and what sets it apart, the full text on hover.
    assert not any(m.display_legend for f in view.figures.values() for m in f.marks)
    legend = view.legend.value
    assert legend.index("c (lr 0.02)") < legend.index("b (lr 0.005)") < legend.index("a (lr 0.001)")
    assert "title='a: Learning rate 0.001'" in legend and PALETTE[2] in legend
    assert view.checkboxes["a"].description == "a (lr 0.001)" and view.checkboxes["a"].tooltip == "a: Learning rate 0.001"
    a_val = next(m for m in loss if m.labels[0] == "a" and m.line_style == "dashed")
    history = json.loads((models / "a" / "history.json").read_text())["history"]
    assert list(a_val.x) == [1, 2, 3] and list(a_val.y) == pytest.approx([h["val_loss"] for h in history])
    lr = {m.labels[0]: list(m.y) for m in lines(view.figures["learning_rate"])}
    assert lr == {"a": [0.001] * 3, "b": [0.005] * 3, "c": [0.02] * 3}


def test_run_checkboxes_and_the_split_choose_what_shows(models):
    view = compare_runs(models)
    view.checkboxes["b"].value = False
    assert view.shown == ["c", "a"]
    assert {m.labels[0] for m in lines(view.figures["loss"])} == {"c", "a"}
    assert len(lines(view.figures["learning_rate"])) == 2
    view.split.value = "validation"
    assert [m.line_style for m in lines(view.figures["loss"])] == ["dashed", "dashed"]
    assert "c (lr 0.02)" in view.legend.value and "b (lr" not in view.legend.value
    view.show_only(["a"])
    assert [m.labels[0] for m in lines(view.figures["accuracy"])] == ["a"]
    view.none_button.click()
    assert view.shown == [] and lines(view.figures["loss"]) == []
    view.all_button.click()
    assert view.shown == ["c", "b", "a"]
    with pytest.raises(KeyError, match="no runs named"):
        view.show_only(["zzz"])


def test_epoch_axes_show_whole_epochs_however_short_the_runs(models, clf_df):
    view = compare_runs(models)                                        # 3 epochs each
    for fig in view.figures.values():
        axis = fig.axes[0]
        assert axis.label == "epoch" and axis.tick_format == "d" and list(axis.tick_values) == [1, 2, 3]
        assert axis.scale.min < 1 < 3 < axis.scale.max < 3.2
    longer = Trainer(config(None, epochs=12), clf_df).fit()
    view = compare_runs([longer, models / "a"])
    assert [list(f.axes[0].tick_values) for f in view.figures.values()] == [[2, 4, 6, 8, 10, 12]] * 4   # the longest
    view.show_only(["a"])
    assert list(view.figures["loss"].axes[0].tick_values) == [1, 2, 3]


def test_the_table_sorts_by_any_column(models):
    view = compare_runs(models)
    assert "learning_rate" in view.sort_by.options and "best_loss" in view.sort_by.options
    view.sort_by.value = "learning_rate"
    view.order.value = "descending"
    assert view.table_frame.index.tolist() == ["c", "b", "a"]
    assert view.table.value.index(" c (lr 0.02)</td>") < view.table.value.index(" a (lr 0.001)</td>")
    view.order.value = "ascending"
    assert view.table_frame.index.tolist() == ["a", "b", "c"]
    assert view.table.value.index(" a (lr 0.001)</td>") < view.table.value.index(" c (lr 0.02)</td>")
    view.sort_by.value = "best_loss"
    losses = view.table_frame["best_loss"].tolist()
    assert losses == sorted(losses)
    assert "batch_size" not in view.table_frame.columns                # the same in every run


def test_the_runs_view_keeps_every_start_and_refreshes_when_one_ends(models, clf_df, tmp_path):
    view = RunsView(models)
    assert [r.label for r in view.records] == ["c", "b", "a"]
    first = Trainer(config(None, epochs=2), clf_df)
    view.add_run(first)
    assert [r.label for r in view.records] == ["run 1", "c", "b", "a"]
    assert view.records[0].epochs_done == 0
    first.fit()                                       # its end refreshes the view
    assert view.records[0].epochs_done == 2 and view.records[0].state == "completed"
    second = Trainer(config(None, epochs=1, learning_rate=0.05), clf_df).fit()
    view.add_run(second)
    view.add_run(second)                              # kept once
    assert [r.label for r in view.records][:2] == ["run 2", "run 1"]
    # Shown by what sets them apart from the other runs, not as "run 2" and "run 1".
    names = view.comparison.names
    assert (names["run 2"].short, names["run 1"].short) == ("lr 0.05, epochs 1", "lr 0.005, epochs 2")
    assert view.comparison.checkboxes["run 2"].description == "lr 0.05, epochs 1"
    assert "lr 0.05, epochs 1</td>" in view.comparison.table.value
    assert len(lines(view.comparison.figures["loss"])) == 2 * 5
    assert "2 run(s) of this session, 3 saved under" in view.message.value
    # A kept run saved under the folder is listed once, as the live run.
    saved_here = Trainer(config(tmp_path / "d", epochs=1), clf_df).fit()
    view.folder.value = str(tmp_path)
    view.add_run(saved_here)
    assert [r.label for r in view.records] == ["d", "run 2", "run 1"]
    assert view.records[0].run is saved_here
    view.folder.value = str(models / "missing")
    view.refresh()
    assert "no folder" in view.message.value and len(view.records) == 3
    view.close()


def test_a_mix_of_classification_and_regression_shows_accuracy_and_mae(tmp_path, clf_df, reg_df):
    clf = Trainer(config(tmp_path / "clf", epochs=2), clf_df).fit()
    reg = Trainer(config(tmp_path / "reg", epochs=2, target_column="target"), reg_df).fit()
    view = compare_runs([clf, tmp_path / "reg"])
    assert view.figures["mae"] in view.figure_box.children and view.figures["accuracy"] in view.figure_box.children
    assert [m.labels[0] for m in lines(view.figures["mae"])] == ["reg", "reg"]
    assert [m.labels[0] for m in lines(view.figures["accuracy"])] == ["clf", "clf"]
    assert "best_mae" in view.table_frame.columns and reg.best_metrics["mae"] > 0


def test_an_empty_comparison_says_so():
    view = RunComparison()
    assert "No runs" in view.table.value and all(lines(f) == [] for f in view.figures.values())


def test_the_widget_builds_from_saved_files_in_a_fresh_process(models):
    code = ("import sys; from epoch_widgets.charts.compare import compare_runs; v = compare_runs(sys.argv[1]); "
            "print([r.label for r in v.records]); print({k: len(f.marks) for k, f in v.figures.items()}); "
            "print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, str(models)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    labels, marks, torch_loaded = out.stdout.strip().splitlines()[-3:]
    assert "'a'" in labels and "'b'" in labels and "'c'" in labels
    assert "'loss': " in marks and "'learning_rate': " in marks
    assert torch_loaded == "False"


def test_a_run_steered_while_it_trained_shows_its_changes_from_its_saved_files(tmp_path, clf_df):
    run = Trainer(config(tmp_path / "steered", epochs=3), clf_df)

    def on_event(event, data):
        if event == "epoch_end" and data["metrics"]["epoch"] == 2:
            run.update(learning_rate=0.001)     # on the run's own loop: applied at the next batch boundary

    run.add_callback(on_event)
    run.fit()
    widget = compare_runs(tmp_path / "steered")
    try:
        table = widget.table_frame
        # Applied after epoch 2's last batch (its 30th), before epoch 3 began.
        assert table.loc["steered", "steered"] == "epoch 2, batch 30: learning_rate 0.005 \u2192 0.001"
        marks = [m for m in widget.figures["learning_rate"].marks if isinstance(m, bq.Scatter)]
        assert len(marks) == 1 and 1.0 < marks[0].x[0] <= 2.0       # within epoch 2 on the epoch axis
    finally:
        widget.close()
