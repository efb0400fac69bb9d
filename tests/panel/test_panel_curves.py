"""Curves: downsampling keeps long runs cheap, renders send only what changed, old runs fade."""
from __future__ import annotations

import math

import bqplot
import numpy as np
import pytest

import trainer
from epoch_widgets.charts.curves import GHOST_OPACITY, MAX_POINTS, Curves, downsample_indices, lr_preview
from epoch_widgets.charts.run_labels import RunLabel


def entry(epoch: int, loss: float) -> dict:
    return {"epoch": epoch, "train_loss": loss * 1.1, "train_accuracy": 1 - loss / 2, "val_loss": loss,
            "val_accuracy": 1 - loss / 3, "learning_rate": 0.01 / math.sqrt(epoch), "time_per_epoch": 0.01}


def fill(curves: Curves, epochs: int) -> None:
    curves.begin_run(classification=True)
    for e in range(1, epochs + 1):
        curves.add_epoch(entry(e, 1 / e + 0.01 * math.sin(e)), improved=e % 7 == 0)


def test_short_series_are_kept_whole() -> None:
    assert list(downsample_indices(50, [np.arange(50.0)])) == list(range(50))


def test_long_series_keep_ends_and_extremes_within_the_budget() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(10_000)
    b = rng.standard_normal(10_000)
    a[6_543] = 100.0      # a spike must survive
    b[1_234] = -100.0
    idx = downsample_indices(10_000, [a, b], 500)
    assert len(idx) <= 500
    assert idx[0] == 0 and idx[-1] == 9_999
    assert np.all(np.diff(idx) > 0)
    assert {6_543, 1_234, int(a.argmin()), int(b.argmax())} <= set(idx.tolist())


def test_nan_values_do_not_break_downsampling() -> None:
    a = np.full(2_000, np.nan)
    a[::3] = np.arange(0, 2_000, 3)
    idx = downsample_indices(2_000, [a, np.full(2_000, np.nan)], 100)
    assert len(idx) <= 100 and idx[-1] == 1_999


def test_ten_thousand_epochs_cost_a_render_what_fifty_cost(comm_counter) -> None:
    sent = {}
    for epochs in (50, 10_000):
        curves = Curves()
        fill(curves, epochs)
        curves.render()                      # first render of the series
        comm_counter.sent.clear()
        comm_counter.bytes_sent.clear()
        curves.add_epoch(entry(epochs + 1, 0.001), improved=True)
        curves.render()
        sent[epochs] = (comm_counter.sent["comm_msg"], comm_counter.bytes_sent["comm_msg"])
        for mark in curves.marks:
            assert np.shape(mark.x)[-1] <= MAX_POINTS
    assert sent[10_000][0] <= sent[50][0] + 2                      # about the same messages...
    assert sent[10_000][1] <= sent[50][1] * (MAX_POINTS / 50) * 1.1  # ...each capped at MAX_POINTS


def test_render_sends_nothing_when_nothing_changed(comm_counter) -> None:
    curves = Curves()
    fill(curves, 20)
    curves.render()
    comm_counter.sent.clear()
    curves.render()
    assert comm_counter.sent["comm_msg"] == 0
    curves.add_batch(21, 3, 10, 0.5)
    curves.render()
    # The in-epoch line, the loss legend that names it, and the epoch axes that now reach epoch 21.
    assert 1 <= comm_counter.sent["comm_msg"] <= 8
    comm_counter.sent.clear()
    curves.add_batch(21, 4, 10, 0.45)
    curves.render()
    assert comm_counter.sent["comm_msg"] == 2          # the in-epoch line and its legend value


def test_paced_renders_push_new_epochs_at_most_once_per_interval(comm_counter) -> None:
    # Epochs shorter than the interval would otherwise cost a dozen mark messages each.
    curves = Curves(epoch_push_interval=60.0)
    fill(curves, 3)
    curves.render(paced=True)                  # the first push is never held back
    assert list(curves.loss_lines.x) == [1, 2, 3] and not curves.epochs_pending
    comm_counter.sent.clear()
    curves.add_epoch(entry(4, 0.2), improved=True)
    curves.add_batch(5, 6, 10, 0.19)
    curves.render(paced=True)
    # Held back whole, so the figures, legends and in-epoch line never disagree.
    assert comm_counter.sent["comm_msg"] == 0 and curves.epochs_pending
    assert list(curves.loss_lines.x) == [1, 2, 3] and len(curves.batch_line.x) == 0
    curves.render()                             # an unpaced render (a pause, the end) pushes at once
    assert list(curves.loss_lines.x) == [1, 2, 3, 4] and list(curves.loss_best.x) == [4]
    assert len(curves.batch_line.x) == 1 and not curves.epochs_pending
    curves.epoch_push_interval = 0.0
    curves.add_epoch(entry(5, 0.18), improved=False)
    curves.render(paced=True)                   # once the interval has passed, paced pushes too
    assert list(curves.loss_lines.x) == [1, 2, 3, 4, 5]
    # A second run's epoch held back counts as held back (not as the first run's sixth).
    curves.epoch_push_interval = 60.0
    curves.begin_run(classification=True)
    curves.add_epoch(entry(1, 0.3), improved=True)
    curves.render(paced=True)                   # a run's first epoch: at once
    curves.add_epoch(entry(2, 0.25), improved=True)
    curves.render(paced=True)
    assert curves.epochs_held_back == 1 and list(curves.loss_lines.x) == [1]


def test_a_runs_first_epoch_is_not_held_back_by_the_push_of_its_empty_curves() -> None:
    # The panel pushes a run's empty curves when it starts; an epoch ending within the interval
    # after that used to wait for it, so a run of short epochs showed nothing for a second.
    curves = Curves(epoch_push_interval=60.0)
    curves.begin_run(classification=True)
    curves.render()                             # the start: no epochs yet
    curves.add_epoch(entry(1, 0.5), improved=True)
    curves.render(paced=True)
    assert list(curves.loss_lines.x) == [1] and not curves.epochs_pending


def test_curves_hold_every_epoch_and_mark_the_best() -> None:
    curves = Curves()
    fill(curves, 30)
    curves.render()
    assert list(curves.loss_lines.x) == list(range(1, 31))
    np.testing.assert_allclose(curves.loss_lines.y[1], curves.series.val_loss)
    np.testing.assert_allclose(curves.metric_lines.y[0], curves.series.train_metric)
    assert list(curves.loss_best.x) == [28] and curves.loss_best.y[0] == curves.series.val_loss[27]


def test_a_new_run_fades_the_previous_ones_curves() -> None:
    curves = Curves()
    fill(curves, 12)
    curves.render()
    first_val = np.array(curves.series.val_loss)
    curves.begin_run(classification=True)
    curves.render()
    assert list(curves.loss_ghost.x) == list(range(1, 13))
    np.testing.assert_allclose(curves.loss_ghost.y[1], first_val)
    assert curves.loss_ghost.opacities == [GHOST_OPACITY, GHOST_OPACITY]
    assert len(curves.loss_lines.x) == 0 and len(curves.lr_ghost.x) == 12
    curves.begin_run(classification=False)       # MAE is not comparable to accuracy: no faded copy
    assert len(curves.metric_ghost.x) == 0
    assert curves.metric_figure.title == "Accuracy"
    curves.render()
    assert curves.metric_figure.title == "Mean absolute error"


def test_early_stop_note_goes_into_the_loss_title() -> None:
    curves = Curves()
    fill(curves, 5)
    curves.end_run("early stopped at 5, best 3")
    curves.render()
    assert curves.loss_figure.title == "Loss: early stopped at 5, best 3"


@pytest.mark.parametrize("scheduler", ["step", "cosine", "plateau", "none"])
def test_lr_preview_matches_the_trainers_schedule(scheduler: str) -> None:
    cfg = trainer.TrainingConfig(epochs=80, learning_rate=0.1, learning_rate_scheduler=scheduler, step_size=20,
                                 T_max=40)
    x, y = lr_preview(cfg)
    assert list(x) == list(range(1, 81))
    np.testing.assert_allclose(y, trainer.preview_schedule(cfg))


def test_lr_preview_of_a_million_epochs_stays_small() -> None:
    cfg = trainer.TrainingConfig(epochs=1_000_000, learning_rate=0.1, learning_rate_scheduler="cosine",
                                 T_max=1_000_000)
    x, y = lr_preview(cfg)
    assert len(x) <= MAX_POINTS and x[0] == 1 and x[-1] == 1_000_000
    assert y[0] == pytest.approx(0.1) and y[-1] == pytest.approx(cfg.eta_min, rel=1e-3)


# ---------------------------------------------------------------------- axes, legends, tools

from epoch_widgets.charts.series import epoch_ticks  # noqa: E402


@pytest.mark.parametrize("low, high, expected", [
    (1, 1, [1]), (1, 5, [1, 2, 3, 4, 5]), (0, 1, [0, 1]), (1, 30, [1, 5, 10, 15, 20, 25, 30]),
    (1, 12, [2, 4, 6, 8, 10, 12]), (1, 1000, [1, 200, 400, 600, 800, 1000]),
])
def test_epoch_ticks_are_whole_epochs(low: int, high: int, expected: list[int]) -> None:
    assert epoch_ticks(low, high) == expected


def test_before_any_data_the_epoch_axes_span_1_to_the_planned_epochs() -> None:
    curves = Curves()
    curves.set_preview(trainer.TrainingConfig(epochs=30))
    curves.render()
    for fig in curves.figures:
        axis = fig.axes[0]
        assert axis.tick_format == "d"
        assert list(axis.tick_values) == [1, 5, 10, 15, 20, 25, 30]
        assert axis.scale.min < 1 and 30 < axis.scale.max < 31


def test_while_training_every_chart_spans_the_planned_epochs_in_whole_epochs() -> None:
    # One x range for the loss, metric and learning-rate charts (the loss and accuracy axes used to
    # follow the data, or the previous run's epochs, while the LR axis spanned the plan).
    curves = Curves()
    curves.set_preview(trainer.TrainingConfig(epochs=30))
    curves.begin_run(classification=True)
    curves.add_batch(1, 5, 10, 0.7)                 # the first epoch's running loss starts at 0
    curves.render()
    assert {tuple(f.axes[0].tick_values) for f in curves.figures} == {(0, 5, 10, 15, 20, 25, 30)}
    curves.add_epoch(entry(1, 0.5), improved=True)
    curves.add_epoch(entry(2, 0.4), improved=True)
    curves.begin_epoch()
    curves.add_batch(3, 2, 10, 0.45)
    curves.render()
    assert {tuple(f.axes[0].tick_values) for f in curves.figures} == {(1, 5, 10, 15, 20, 25, 30)}
    assert len({(f.axes[0].scale.min, f.axes[0].scale.max) for f in curves.figures}) == 1
    # A second run planning fewer epochs than the first ran: every chart spans the first run's too.
    curves.end_run("")
    curves.begin_run(classification=True)
    curves.set_preview(trainer.TrainingConfig(epochs=2))
    curves.add_epoch(entry(1, 0.5), improved=True)
    curves.render()
    assert {tuple(f.axes[0].tick_values) for f in curves.figures} == {(1, 2)}
    for i in range(2, 5):
        curves.add_epoch(entry(i, 0.5 - i / 100), improved=True)
    curves.render()
    assert {tuple(f.axes[0].tick_values) for f in curves.figures} == {(1, 2, 3, 4)}


def test_legends_are_html_beside_the_charts_with_current_and_best_values() -> None:
    curves = Curves()
    fill(curves, 12)
    curves.add_batch(13, 4, 10, 0.0123)
    curves.render()
    assert not any(getattr(m, "display_legend", False) for m in curves.marks)      # nothing drawn over data
    loss = curves.loss_legend.value
    last = curves.series.last("val_loss")
    assert "val <b style" in loss and f"{last:.4g}" in loss
    assert f"best {curves.series.val_loss[6]:.4g} @ 7" in loss        # the best epoch (improved at 7)
    assert "train, epoch in progress" in loss and "0.0123" in loss
    assert "best epoch 7" in loss
    assert "max " in curves.metric_legend.value                        # accuracy's best is its highest
    assert "used" in curves.lr_legend.value and "schedule" in curves.lr_legend.value


def test_the_previous_run_is_labelled_in_every_legend() -> None:
    curves = Curves()
    fill(curves, 5)
    curves.begin_run(classification=True, previous_label=RunLabel("schedule step, step 4",
                                                                   "Schedule step; Decay every (epochs) 4"))
    curves.render()
    for legend in (curves.loss_legend, curves.metric_legend, curves.lr_legend):
        # The short label shows; the full one is the entry's hover text.
        assert "previous run (schedule step, step 4)" in legend.value
        assert "title='previous run: Schedule step; Decay every (epochs) 4" in legend.value
    assert curves.loss_ghost.line_style == "dashed" and min(curves.loss_ghost.opacities) >= 0.5   # shows on dark


def test_every_epoch_point_has_a_tooltip() -> None:
    curves = Curves()
    fill(curves, 4)
    curves.render()
    for mark in (*curves.loss_points, *curves.metric_points, curves.lr_points, curves.loss_best):
        assert mark.tooltip is not None and "x" in mark.tooltip.fields and mark.tooltip.formats[0] == "d"
    assert list(curves.loss_points[1].y) == list(curves.series.val_loss)


def test_log_scale_and_zoom_toggle_and_reset() -> None:
    curves = Curves()
    fill(curves, 6)
    curves.render()
    curves.log_toggle.value = True
    assert isinstance(curves.loss_figure.axes[1].scale, bqplot.LogScale)
    # The config-change markers keep their own 0..1 scale: they span the figure on any scale.
    curves_marks = [m for m in curves.loss_figure.marks if m not in curves.change_marks[0].marks]
    assert all(m.scales["y"] is curves.loss_log for m in curves_marks)
    assert all(m.scales["y"] is curves.change_marks[0].scale for m in curves.change_marks[0].marks)
    curves.log_toggle.value = False
    assert all(m.scales["y"] is curves.loss_linear for m in curves_marks)
    curves.zoom_toggle.value = True
    assert all(isinstance(f.interaction, bqplot.interacts.PanZoom) for f in curves.figures)
    assert all(not f.display_toolbar for f in curves.figures)     # no hover toolbar over the title
    curves.loss_figure.axes[0].scale.min = 3.0                     # as a pan would
    curves.zoom_toggle.value = False
    assert all(f.interaction is None for f in curves.figures)
    assert curves.loss_figure.axes[0].scale.min < 1                # back to all the data


def test_charts_wrap_at_narrow_widths() -> None:
    curves = Curves()
    assert curves.view.layout.flex_flow == "row wrap"
    assert all(card.layout.min_width for card in curves.view.children)


def test_the_in_epoch_line_skips_the_noisy_first_batches() -> None:
    curves = Curves()
    fill(curves, 3)
    curves.begin_epoch()
    for batch, loss in ((1, 0.01), (20, 0.4), (30, 0.35)):     # of 400: the line starts at batch 20
        curves.add_batch(4, batch, 400, loss)
    curves.render()
    assert list(curves.batch_line.y) == [0.4, 0.35]
