"""The static figure (the PNG export and the snapshot kept in the notebook): one legend below the
plots whose entries never overlap nor leave the picture, for any number of entries, plots that keep
their height, and no matplotlib layout warning."""
from __future__ import annotations

import io
import itertools
import warnings

import numpy as np
import pytest

from epoch_widgets.charts import static_figure
from epoch_widgets.charts.series import Series

pytestmark = pytest.mark.skipif(not static_figure.available(), reason="needs matplotlib")


def series(epochs: int, seed: int = 0) -> Series:
    s, rng = Series(classification=True), np.random.default_rng(seed)
    for e in range(1, epochs + 1):
        s.append(e, 1 / e + 0.1 * rng.random(), 1.1 / e, 0.5 + e / (2 * epochs), 0.5 + e / (2.2 * epochs), 0.01 * 0.9 ** e)
    return s


def figure_data(epochs: int, previous: Series | None = None, previous_label: str = "") -> static_figure.FigureData:
    return static_figure.FigureData(series(epochs), previous, previous_label, best_epoch=min(2, epochs) or None,
                                    preview_x=np.arange(1.0, 13.0), preview_y=0.01 * 0.9 ** np.arange(12),
                                    title_note="stopped early at epoch 5")


def check_layout(fig) -> None:
    """Legend texts pairwise apart and inside the figure, below every plot; plots of a usable height."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    boxes = [t.get_window_extent(renderer) for t in legend.get_texts()]
    inside = fig.bbox
    for box in boxes:
        assert box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1, box
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    legend_top = legend.get_window_extent(renderer).y1
    for ax in fig.axes:
        plot = ax.get_window_extent(renderer)
        assert plot.height >= 150 and plot.width >= 250, plot          # at 96 dpi: the plots did not shrink
        assert ax.get_tightbbox(renderer).y0 >= legend_top - 1, "the legend reaches into a plot"


@pytest.mark.parametrize("runs", [1, 4, 10])
def test_a_legend_of_any_length_lies_below_the_plots_without_overlap(runs: int) -> None:
    from matplotlib.figure import Figure

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = Figure(figsize=(static_figure.WIDTH_IN, static_figure.PLOTS_HEIGHT_IN), dpi=96, layout="constrained")
        axes = fig.subplots(1, 3)
        handles, labels = [], []
        for i in range(runs):
            for ax in axes:
                line, = ax.plot([1, 2, 3], np.array([3, 2, 1]) * (i + 1))
            handles.append(line)
            # Labels of every length, one longer than the figure is wide.
            labels.append(f"run {i + 1}: lr 0.0{i}, bs {32 * (i + 1)}" + (", dropout 0.5, seed 7" * (i % 3))
                          + ("; " + "a long note " * 30 if i == 5 else ""))
        legend = static_figure.legend_below(fig, handles, labels)
        assert legend is not None and len(legend.get_texts()) == runs
        check_layout(fig)
        fig.savefig(io.BytesIO(), format="png")


@pytest.mark.parametrize("epochs, previous", [(1, None), (5, 12), (30, 30)])
def test_the_curves_picture_has_one_legend_below_and_no_layout_warning(epochs: int, previous: int | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # "constrained_layout not applied because axes sizes collapsed"
        data = figure_data(epochs, series(previous, seed=1) if previous else None,
                           "Model mlp, Epochs 12, Learning rate 0.01, Batch size 64, Optimizer sgd" if previous else "")
        fig = static_figure.draw(data)
        check_layout(fig)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert labels[:2] == ["train", "val"] and len(labels) == len(set(labels))
        assert ("learning rate: previous run" in labels) == bool(previous)
        assert all(ax.get_legend() is None for ax in fig.axes)         # no legend per plot
        png = static_figure.render_png(data)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
