"""The evaluation and learning-rate finder views draw what the result objects hold."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from epoch_widgets.charts.evaluation_view import (confusion_matrix_figure, evaluation_view, predicted_vs_actual_figure,
                                           report_table, residuals_figure)
from epoch_widgets.charts.lr_finder_view import LRFinderView, describe, lr_finder_figure
from trainer import Evaluation, Trainer
from trainer.datasets import make_classification, make_regression

CONFIG = {"seed": 0, "epochs": 2, "batch_size": 32, "hidden_units": [16], "device": "cpu",
          "learning_rate_scheduler": "none"}


@pytest.fixture(scope="module")
def classification() -> Evaluation:
    df = make_classification(600, classes=3, seed=0)
    df["label"] = df["label"].map({0: "cat", 1: "dog", 2: "fox"})
    return Trainer({**CONFIG, "target_column": "label"}, df).fit().evaluate()


def test_confusion_matrix_heat_map_shows_the_counts_in_the_users_labels(classification):
    fig = confusion_matrix_figure(classification)
    heat = fig.marks[0]
    np.testing.assert_array_equal(heat.color, classification.confusion_matrix.to_numpy())
    assert heat.display_format == ".0f"                     # each cell shows its count
    x_axis, y_axis = fig.axes
    assert x_axis.label == "predicted" and y_axis.label == "actual"
    assert list(x_axis.tick_labels.values()) == ["cat", "dog", "fox"] == list(y_axis.tick_labels.values())
    table = report_table(classification).value
    assert all(word in table for word in ["cat", "dog", "fox", "macro avg", "weighted avg", "precision", "support"])
    # The same view from evaluation.json's content (what the HTTP API answers).
    again = Evaluation.from_dict(json.loads(json.dumps(classification.to_dict())))
    np.testing.assert_array_equal(confusion_matrix_figure(again).marks[0].color, heat.color)
    assert len(evaluation_view(classification).children) >= 1


def test_regression_plots_hold_every_prediction_and_residual():
    ev = Trainer({**CONFIG, "target_column": "target"}, make_regression(600, seed=0)).fit().evaluate()
    scatter = predicted_vs_actual_figure(ev).marks[1]
    np.testing.assert_allclose(scatter.x, ev.y_true)
    np.testing.assert_allclose(scatter.y, ev.y_pred)
    residual = residuals_figure(ev).marks[1]
    np.testing.assert_allclose(residual.y, ev.y_true - ev.y_pred)
    with pytest.raises(ValueError, match="for classification"):
        confusion_matrix_figure(ev)
    assert "mae" in evaluation_view(ev).children[0].value


def test_lr_finder_view_marks_the_suggestion_and_hands_it_over():
    run = Trainer({**CONFIG, "target_column": "label"}, make_classification(600, seed=0))
    view = LRFinderView()
    finder_points = []

    def on_step(point):
        finder_points.append(point)
        view.update(finder_points)                     # live, as the panel draws a search

    result = run.lr_find(num_iter=40, on_step=on_step)
    assert len(view.smoothed.x) == len(finder_points) and view.apply_button.disabled
    view.show(result)
    assert result.suggestion is not None and not view.apply_button.disabled
    assert list(view.pick.x) == [result.suggestion] and view.x.__class__.__name__ == "LogScale"
    assert f"{result.suggestion:.2e}" in describe(result) and result.rule in describe(result)
    applied = []
    view.on_apply(applied.append)
    view.apply_button.click()
    assert applied == [result.suggestion]
    assert len(lr_finder_figure(result).marks[1].x) == int(np.isfinite(result.history["smoothed_loss"]).sum())


def test_a_result_without_a_suggestion_keeps_the_button_off():
    from trainer.lr_finder import LRFindResult

    history = pd.DataFrame({"iteration": [1, 2], "learning_rate": [1e-7, 1e-6], "loss": [1.0, 0.9],
                            "smoothed_loss": [1.0, 0.95]})
    result = LRFindResult(history=history, suggestion=None, rule="valley", suggestions={"valley": None, "steepest": None},
                          reason="stopped after 2 of 100 batches", stopped=True, notes=["too few batches"])
    view = LRFinderView()
    view.show(result)
    assert view.apply_button.disabled and "no suggestion" in view.message.value
