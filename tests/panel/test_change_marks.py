"""Changes made to a live run drawn on the curves: a marker where each took effect, its tooltip
saying what changed, on the live charts, their static twin and the run comparison."""
from __future__ import annotations

import math

import bqplot
import numpy as np

from epoch_widgets.charts import static_figure
from epoch_widgets.charts.change_marks import change_position
from epoch_widgets.charts.compare import RunComparison, color_of
from epoch_widgets.charts.curves import Curves
from trainer import TrainingConfig
from trainer.run_records import RunRecord, comparison_table

LR_CHANGE = {"changes": {"learning_rate": {"old": 0.01, "new": 0.005}}, "epoch": 3, "batch": 5, "step": 25,
             "time": 1.7e9}
EPOCHS_CHANGE = {"changes": {"epochs": {"old": 6, "new": 12}, "early_stopping_patience": {"old": 3, "new": 5}},
                 "epoch": 5, "batch": 0, "step": 40, "time": 1.7e9}


def entry(epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 1 / epoch, "train_accuracy": 0.5, "val_loss": 1.1 / epoch,
            "val_accuracy": 0.5, "learning_rate": 0.01, "time_per_epoch": 0.01}


def test_a_change_is_drawn_where_it_took_effect_on_every_chart_with_what_changed() -> None:
    curves = Curves()
    curves.begin_run(classification=True)
    curves.planned_epochs = 6
    for e in range(1, 5):
        curves.add_epoch(entry(e), improved=False)
    curves.add_change(LR_CHANGE, num_batches=10)      # after 5 of epoch 3's 10 batches
    curves.add_change(EPOCHS_CHANGE)                  # at the start of epoch 5
    curves.render()
    for marks, figure in zip(curves.change_marks, curves.figures):
        assert marks.points in figure.marks and marks.lines in figure.marks
        assert list(marks.points.x) == [2.5, 4.0]
        assert marks.points.tooltip.fields == ["name"] and not marks.points.display_names
        assert list(marks.points.names) == ["epoch 3, batch 5: learning_rate 0.01 \u2192 0.005",
                                            "epoch 5: epochs 6 \u2192 12, early_stopping_patience 3 \u2192 5"]
        np.testing.assert_array_equal(marks.lines.x, [[2.5, 2.5], [4.0, 4.0]])   # a vertical line each
    assert curves.x_domain() == (1, 12)        # the extended run's axis reaches its new last epoch
    assert "changed 2\u00d7" in curves.loss_legend.value
    curves.begin_run(classification=True)      # a new run has no changes of its own
    curves.render()
    assert len(curves.change_marks[0].points.x) == 0 and "changed" not in curves.loss_legend.value


def test_without_the_epochs_batch_count_a_change_within_it_sits_mid_epoch() -> None:
    assert change_position({"epoch": 1, "batch": 0}) == 0.0
    assert change_position({"epoch": 4, "batch": 3}) == 3.5
    assert change_position({"epoch": 4, "batch": 3}, num_batches=4) == 3.75


def test_the_static_figure_marks_the_changes_too() -> None:
    curves = Curves()
    curves.begin_run(classification=True)
    for e in range(1, 5):
        curves.add_epoch(entry(e), improved=False)
    curves.add_change(LR_CHANGE, num_batches=10)
    data = static_figure.FigureData(curves.series, None, "", None, np.empty(0), np.empty(0),
                                    changes=curves.change_positions())
    fig = static_figure.draw(data)
    for ax in fig.axes:
        assert any(list(line.get_xdata()) == [2.5, 2.5] for line in ax.get_lines())
    assert "settings changed" in [t.get_text() for t in fig.legends[0].get_texts()]


def records() -> list[RunRecord]:
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "learning_rate": 0.01} for e in range(1, 5)]
    steered = RunRecord("steered", {"epochs": 4}, history, "completed", {"loss": 0.25, "epoch": 4},
                        config_changes=[LR_CHANGE])
    plain = RunRecord("plain", {"epochs": 4}, history, "completed", {"loss": 0.25, "epoch": 4})
    return [steered, plain]


def test_the_comparison_says_which_run_was_steered_and_marks_its_changes_in_its_color() -> None:
    table = comparison_table(records())
    assert table.loc["steered", "steered"] == "epoch 3, batch 5: learning_rate 0.01 \u2192 0.005"
    assert table.loc["plain", "steered"] is None or math.isnan(table.loc["plain", "steered"])
    assert "steered" not in comparison_table(records()[1:]).columns     # no run steered: no column
    widget = RunComparison(records())
    try:
        changes = [m for m in widget.figures["loss"].marks if isinstance(m, bqplot.Scatter)]
        assert len(changes) == 1 and list(changes[0].x) == [2.5] and changes[0].colors == [color_of(0)]
        assert "steered" in widget.table.value and "learning_rate 0.01 \u2192 0.005" in widget.table.value
        widget.show_only(["plain"])
        assert not [m for m in widget.figures["loss"].marks if isinstance(m, bqplot.Scatter)]
    finally:
        widget.close()



def test_the_schedule_preview_is_redrawn_as_each_change_rebases_it() -> None:
    curves = Curves()
    curves.begin_run(classification=True)
    curves.set_preview(TrainingConfig(epochs=6, learning_rate=0.01, learning_rate_scheduler="step", step_size=2,
                                      gamma=0.5))
    assert list(curves.lr_preview.y) == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]
    raised = {**LR_CHANGE, "changes": {"learning_rate": {"old": 0.01, "new": 0.1}}}
    curves.add_change(raised, num_batches=10)         # inside epoch 3: the step schedule starts again there
    assert list(curves.lr_preview.y) == [0.01, 0.01, 0.1, 0.1, 0.05, 0.05]
    curves.add_change(EPOCHS_CHANGE)                  # 12 epochs now: the preview runs on to the new end
    assert list(curves.lr_preview.x) == [float(e) for e in range(1, 13)] and curves.planned_epochs == 12
    assert curves.lr_preview.y[-1] == 0.1 * 0.5 ** 4
