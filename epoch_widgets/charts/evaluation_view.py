"""Widgets for a :class:`trainer.Evaluation`: a confusion-matrix heat map with counts and the
per-class table (classification), predicted-vs-actual and residual plots (regression).

``evaluation_view(evaluation)`` is the whole view; the figure builders are separate so a panel can
lay them out itself. An Evaluation rebuilt from ``evaluation.json`` (``Evaluation.load`` or
``Evaluation.from_dict`` of the HTTP API's answer) works the same; its regression plots show the
points the file keeps.
"""
from __future__ import annotations

import html
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from trainer.evaluation import Evaluation

# Light to mid blue, so the black counts stay readable on every cell.
CELL_COLORS = ["#f7fbff", "#6baed6"]
POINT_COLOR, LINE_COLOR = "#1f77b4", "#7f7f7f"
FIGURE_LAYOUT = {"width": "420px", "height": "380px"}


def confusion_matrix_figure(evaluation: Evaluation) -> bq.Figure:
    """Heat map of counts, rows actual and columns predicted, each cell showing its count."""
    _need(evaluation, "classification")
    cm = evaluation.confusion_matrix
    assert cm is not None
    k = len(cm)
    edges = np.arange(k + 1) - 0.5                  # k + 1 boundaries: cell i is centred on i
    x = bq.LinearScale(min=-0.5, max=k - 0.5)
    y = bq.LinearScale(min=-0.5, max=k - 0.5, reverse=True)     # the first class on top
    color = bq.ColorScale(colors=CELL_COLORS, min=0)
    counts = cm.to_numpy().astype(float)
    heat = bq.GridHeatMap(row=edges, column=edges, color=counts, display_format=".0f",
                          font_style={"fill": "black", "font-size": "14px"},
                          scales={"row": y, "column": x, "color": color}, stroke="white")
    labels = {i: str(c) for i, c in enumerate(cm.columns)}
    ticks = list(range(k))
    axes = [bq.Axis(scale=x, label="predicted", tick_values=ticks, tick_labels=labels, grid_lines="none",
                    label_offset="36px"),
            bq.Axis(scale=y, label="actual", side="left", tick_values=ticks, tick_labels=labels,
                    grid_lines="none", label_offset=f"{_label_width(labels) + 16}px")]
    return bq.Figure(marks=[heat], axes=axes, title=f"Confusion matrix ({evaluation.n_samples} {evaluation.split} samples)",
                     animation_duration=0,
                     fig_margin={"top": 50, "bottom": 60, "left": _label_width(labels) + 40, "right": 20},
                     layout=W.Layout(**FIGURE_LAYOUT))


def report_table(evaluation: Evaluation) -> W.HTML:
    """The per-class table (precision, recall, F1, support; then accuracy and the averages)."""
    _need(evaluation, "classification")
    assert evaluation.report is not None
    table = evaluation.report.to_html(float_format=lambda v: f"{v:.3f}", na_rep="", border=0,
                                      classes="epoch-widgets-report")
    return W.HTML(_summary_html(evaluation) + table)


def predicted_vs_actual_figure(evaluation: Evaluation) -> bq.Figure:
    """Each sample's prediction against its actual value, with the line where they are equal."""
    _need(evaluation, "regression")
    actual, predicted = evaluation.y_true.astype(float), evaluation.y_pred.astype(float)
    lo, hi = _range(actual, predicted)
    x, y = bq.LinearScale(min=lo, max=hi), bq.LinearScale(min=lo, max=hi)
    points = bq.Scatter(x=actual, y=predicted, scales={"x": x, "y": y}, colors=[POINT_COLOR],
                        default_size=16, opacities=[0.6])
    ideal = bq.Lines(x=[lo, hi], y=[lo, hi], scales={"x": x, "y": y}, colors=[LINE_COLOR], line_style="dashed")
    return bq.Figure(marks=[ideal, points], title="Predicted vs actual", animation_duration=0,
                     axes=[bq.Axis(scale=x, label="actual"), bq.Axis(scale=y, label="predicted", side="left")],
                     layout=W.Layout(**FIGURE_LAYOUT))


def residuals_figure(evaluation: Evaluation) -> bq.Figure:
    """Residuals (actual - predicted) against the prediction, with the zero line."""
    _need(evaluation, "regression")
    predicted, residuals = evaluation.y_pred.astype(float), evaluation.residuals.astype(float)
    lo, hi = _range(predicted)
    x, y = bq.LinearScale(min=lo, max=hi), bq.LinearScale()
    points = bq.Scatter(x=predicted, y=residuals, scales={"x": x, "y": y}, colors=[POINT_COLOR],
                        default_size=16, opacities=[0.6])
    zero = bq.Lines(x=[lo, hi], y=[0.0, 0.0], scales={"x": x, "y": y}, colors=[LINE_COLOR], line_style="dashed")
    return bq.Figure(marks=[zero, points], title="Residuals", animation_duration=0,
                     axes=[bq.Axis(scale=x, label="predicted"),
                           bq.Axis(scale=y, label="actual - predicted", side="left")],
                     layout=W.Layout(**FIGURE_LAYOUT))


def evaluation_view(evaluation: Evaluation) -> W.VBox:
    """The whole view: heat map and table, or the two regression plots, with the figures above."""
    if evaluation.task == "classification":
        body: list[Any] = [W.HBox([confusion_matrix_figure(evaluation), report_table(evaluation)])]
    else:
        body = [W.HTML(_summary_html(evaluation)),
                W.HBox([predicted_vs_actual_figure(evaluation), residuals_figure(evaluation)])]
    if evaluation.notes:
        body.append(W.HTML("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in evaluation.notes) + "</ul>"))
    return W.VBox(body, layout=W.Layout(width="100%"))


def _summary_html(evaluation: Evaluation) -> str:
    figures = " &nbsp; ".join(f"<b>{html.escape(k)}</b> {'n/a' if v is None else f'{v:.4g}'}"
                              for k, v in evaluation.metrics.items())
    shown = len(evaluation.predictions)
    points = (f" (plots show {shown} of them)" if evaluation.task == "regression" and shown < (evaluation.n_samples or 0)
              else "")
    return f"<p>{figures}<br>{evaluation.n_samples} {html.escape(evaluation.split)} samples{points}</p>"


def _label_width(labels: dict[int, str]) -> int:
    """Pixels the longest class label needs beside the vertical axis (about 7 px a character)."""
    return 7 * max((len(t) for t in labels.values()), default=1) + 8


def _need(evaluation: Evaluation, task: str) -> None:
    if evaluation.task != task:
        raise ValueError(f"this view is for {task}; the Evaluation is for {evaluation.task} (use evaluation_view)")


def _range(*arrays: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.05 or 1.0
    return lo - pad, hi + pad
