"""The Evaluation tab: when a run ends, its model on the validation split (from the run's
evaluation.json, or computed off the loop for a run without output_path)."""
from __future__ import annotations

import asyncio
import threading

import bqplot as bq
import numpy as np
import pytest

import epoch_widgets.panel.evaluation_tab as evaluation_tab
from epoch_widgets import TrainingPanel
from epoch_widgets.panel.evaluation_tab import MAX_POINTS
from trainer import Evaluation
from trainer.datasets import make_regression

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.01, "device": "cpu",
        "learning_rate_scheduler": "none", "early_stopping": False, "epochs": 2}


def marks(widget, kind):
    found, stack = [], [widget]
    while stack:
        w = stack.pop()
        if isinstance(w, kind):
            found.append(w)
        stack.extend(getattr(w, "children", ()) or ())
        stack.extend(getattr(w, "marks", ()) or ())
    return found


def test_a_finished_run_shows_its_confusion_matrix_from_evaluation_json(clf_df, tmp_path):
    out = tmp_path / "models" / "clf"

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(out), **FAST)
        assert "appears here when a run ends" in panel.tabs.evaluation.heading.value
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    saved = Evaluation.load(out)
    ev = panel.evaluation
    assert ev is not None and ev.task == "classification"
    heat = marks(panel.tabs.evaluation.body, bq.GridHeatMap)
    assert len(heat) == 1
    np.testing.assert_array_equal(heat[0].color, saved.confusion_matrix.to_numpy())
    assert ev.metrics == saved.metrics
    heading = panel.tabs.evaluation.heading.value
    assert "completed after 2 epochs" in heading and "accuracy" in heading
    assert "macro avg" in panel.tabs.evaluation.body.children[0].children[0].children[1].value
    panel.close()


def test_a_run_without_output_path_is_evaluated_off_the_loop_with_regression_plots(monkeypatch):
    threads: list[int] = []
    real = evaluation_tab.evaluation_of

    def spy(run):                         # the real evaluation, noting the thread it runs on
        threads.append(threading.get_ident())
        return real(run)

    monkeypatch.setattr(evaluation_tab, "evaluation_of", spy)
    df = make_regression(600, seed=3)

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=df, target_column="target", **FAST)
        panel.start()
        run = await panel.wait()
        assert run.artifacts_path is None
        return panel

    loop_thread = threading.get_ident()
    panel = asyncio.run(main())
    assert threads and loop_thread not in threads
    ev = panel.evaluation
    assert ev.task == "regression" and ev.n_samples == 120
    expected = panel.run.evaluate()
    assert ev.metrics == pytest.approx(expected.metrics)
    figures = {f.title: f for f in marks(panel.tabs.evaluation.body, bq.Figure)}
    assert set(figures) == {"Predicted vs actual", "Residuals"}
    points = figures["Predicted vs actual"].marks[1]
    np.testing.assert_allclose(points.x, expected.y_true, rtol=1e-6)
    np.testing.assert_allclose(points.y, expected.y_pred, rtol=1e-6)
    panel.close()


def test_regression_plots_keep_at_most_the_points_the_file_keeps():
    df = make_regression(MAX_POINTS * 6, seed=4)

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=df, target_column="target", **{**FAST, "epochs": 1, "batch_size": 256})
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.evaluation.n_samples > MAX_POINTS
    assert len(panel.evaluation.predictions) <= MAX_POINTS
    assert all(len(s.x) <= MAX_POINTS for s in marks(panel.tabs.evaluation.body, bq.Scatter))
    panel.close()


def test_a_run_stopped_before_its_first_epoch_has_nothing_to_evaluate(clf_df):
    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", **{**FAST, "epochs": 50})
        # Stopped as it begins: after the batch in progress, long before the first epoch ends.
        panel.observe(lambda change: panel.stop() if change["new"] == "running" else None, "state")
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "stopped" and panel.run.current_epoch == 0
    assert "no model to evaluate" in panel.tabs.evaluation.heading.value and panel.evaluation is None
    panel.close()


def test_a_new_run_says_the_figures_shown_are_the_previous_runs(clf_df):
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        panel.start()
        await panel.wait()
        first = panel.evaluation
        panel.controls["epochs"].value = 3
        panel.start()
        await panel.wait_started()
        assert "previous run" in panel.tabs.evaluation.heading.value and panel.evaluation is first
        await panel.wait()
        assert panel.evaluation is not first and "after 3 epochs" in panel.tabs.evaluation.heading.value
        panel.close()

    asyncio.run(main())
