"""The Sweep tab's drawings from trial dicts: curves overlaid (running bright, pruned faded and
marked), each varied parameter against the metric, and the sortable table."""
from __future__ import annotations

import bqplot as bq
import numpy as np

from epoch_widgets.charts.sweep_charts import (FADED_OPACITY, RUNNING_OPACITY, ParamPlots, SweepCurves, TrialsTable,
                                               best_trial, trial_table)


def trials() -> list[dict]:
    return [
        {"number": 0, "params": {"learning_rate": 0.01, "hidden_units": [64, 32]}, "state": "completed",
         "history": [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}], "best_metric": 0.4, "epochs_done": 2},
        {"number": 1, "params": {"learning_rate": 0.001, "hidden_units": [128, 64]}, "state": "pruned",
         "history": [{"epoch": 1, "val_loss": 0.9}], "best_metric": 0.9, "epochs_done": 1},
        {"number": 2, "params": {"learning_rate": 0.003, "hidden_units": [128, 64]}, "state": "running",
         "history": [{"epoch": 1, "val_loss": 0.45}], "best_metric": 0.45, "epochs_done": 1},
    ]


def test_curves_show_every_trial_running_bright_and_pruned_faded_with_a_cross() -> None:
    curves = SweepCurves("val_loss")
    curves.update(trials())
    assert set(curves.lines) == {0, 1, 2}
    assert curves.lines[2].opacities == [RUNNING_OPACITY] and curves.lines[2].line_style == "solid"
    assert curves.lines[1].opacities == [FADED_OPACITY] and curves.lines[1].line_style == "dashed"
    assert list(curves.pruned.x) == [1.0] and list(curves.pruned.y) == [0.9]
    grown = trials()
    grown[2]["history"].append({"epoch": 2, "val_loss": 0.3})
    grown[2]["state"] = "completed"
    line = curves.lines[2]
    curves.update(grown)
    assert curves.lines[2] is line and list(line.y) == [0.45, 0.3] and line.opacities[0] < RUNNING_OPACITY
    assert curves.view.axes[0].scale.max > 2       # the epoch axis spans the longest trial


def test_each_varied_parameter_is_plotted_against_the_metric() -> None:
    plots = ParamPlots()
    plots.update(trials(), ["learning_rate", "hidden_units"], "val_loss", log_params=["learning_rate"])
    assert list(plots.figures) == ["learning_rate", "hidden_units"]
    lr = plots.figures["learning_rate"].marks[0]
    assert isinstance(lr.scales["x"], bq.LogScale) and list(lr.x) == [0.01, 0.001, 0.003]
    assert list(lr.y) == [0.4, 0.9, 0.45]
    units = plots.figures["hidden_units"].marks[0]
    assert isinstance(units.scales["x"], bq.OrdinalScale) and list(units.x) == ["64, 32", "128, 64", "128, 64"]
    plots.update(trials(), ["learning_rate"], "val_loss")
    assert list(plots.figures) == ["learning_rate"] and len(plots.view.children) == 1
    assert isinstance(plots.figures["learning_rate"].marks[0].scales["x"], bq.LinearScale)


def test_the_table_sorts_by_any_column_and_marks_the_best_trial() -> None:
    table = TrialsTable()
    best = best_trial(trials(), "minimize")
    assert best is not None and best["number"] == 0          # the running trial's 0.45 does not count yet
    table.update(trials(), ["learning_rate", "hidden_units"], "val_loss", best["number"])
    assert list(table.frame.columns) == ["trial", "learning_rate", "hidden_units", "best val_loss", "epochs", "state"]
    table.sort_by.value = "best val_loss"
    assert list(table.table_frame["trial"]) == [0, 2, 1]
    table.order.value = "descending"
    assert list(table.table_frame["trial"]) == [1, 2, 0]
    table.sort_by.value = "learning_rate"
    assert list(table.table_frame["learning_rate"]) == [0.01, 0.003, 0.001]
    assert "font-weight:bold" in table.html.value and "pruned" in table.html.value
    assert best_trial(trials(), "maximize")["number"] == 0    # the only completed one
    frame = trial_table([], ["dropout_rate"], "val_accuracy")
    assert frame.empty and "best val_accuracy" in frame.columns
    assert np.isnan(trial_table([{"number": 3, "params": {}, "state": "waiting", "best_metric": None}], [], "val_loss")
                    ["best val_loss"].astype(float)[0])
