"""Runs started from a real panel: curves, traits, buttons, threads, errors, several panels."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from trainer import ConfigError, StateError

from .conftest import until

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.01, "device": "cpu",
        "learning_rate_scheduler": "none", "early_stopping": False}
LONG = {**FAST, "epochs": 500}     # never meant to finish: the test stops it


def make_panel(df: pd.DataFrame, **overrides: Any) -> TrainingPanel:
    return TrainingPanel(data=df, target_column="label", **{**FAST, **overrides})


def forward_counter(panel: TrainingPanel) -> list[int]:
    """Count training batches as torch runs them (a forward hook on the run's model)."""
    count = [0]

    def hook(module: Any, _inputs: Any, _output: Any) -> None:
        if module.training:
            count[0] += 1

    panel.run.backend.model.register_forward_hook(hook)
    return count


def test_a_run_from_the_start_button_completes_with_every_epoch_on_the_curves(clf_df: pd.DataFrame) -> None:
    async def main() -> TrainingPanel:
        panel = make_panel(clf_df, epochs=6, learning_rate_scheduler="step", step_size=2, gamma=0.5)
        seen_epochs: list[int] = []
        panel.observe(lambda ch: seen_epochs.append(ch["new"]), "current_epoch")
        panel.start_button.click()
        assert panel.start_button.disabled and panel.preparing     # at once, before the model is built
        assert panel.pause_button.disabled and "preparing" in panel.progress.status.value
        await panel.wait_started()
        assert panel.run is not None and panel.start_button.disabled and not panel.preparing
        assert not panel.pause_button.disabled and not panel.stop_button.disabled
        await panel.wait()
        assert seen_epochs == [0, 1, 2, 3, 4, 5, 6][-len(seen_epochs):] and seen_epochs[-1] == 6
        return panel

    panel = asyncio.run(main())
    assert panel.state == "completed" and panel.current_epoch == 6 and panel.total_epochs == 6
    assert len(panel.history) == 6 and panel.history == panel.run.history
    assert panel.latest_metrics == panel.history[-1]
    assert panel.best_metrics == panel.run.best_metrics
    assert list(panel.history_df.columns[:3]) == ["epoch", "train_loss", "train_accuracy"]
    c = panel.curves
    assert list(c.loss_lines.x) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(c.loss_lines.y[0], panel.history_df.train_loss)
    np.testing.assert_allclose(c.loss_lines.y[1], panel.history_df.val_loss)
    np.testing.assert_allclose(c.metric_lines.y[1], panel.history_df.val_accuracy)
    np.testing.assert_allclose(c.lr_line.y, [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])
    assert list(c.loss_best.x) == [panel.best_metrics["epoch"]]
    assert panel.progress.epoch_bar.value == 6 and panel.progress.epoch_bar.bar_style == "success"
    assert "completed" in panel.progress.status.value and "all 6 epochs" in panel.progress.status.value
    best = panel.best_metrics
    final = panel.table.final.value         # the final validation metrics, once the run ends
    assert f"Best epoch {best['epoch']}" in final and f"{best['loss']:.4g}" in final
    assert panel.table.table.value.count("<tr") == 1 + 6       # heading and one row per epoch
    assert not panel.start_button.disabled and panel.pause_button.disabled and panel.stop_button.disabled
    assert not panel.controls["epochs"].disabled
    assert panel.controls["data_path"].disabled          # the DataFrame given wins, for good
    assert repr(panel) == "TrainingPanel(state='completed', epoch=6/6)"


def test_a_run_counts_as_in_progress_without_a_gap_between_preparing_and_training(clf_df: pd.DataFrame) -> None:
    """A second click's "a run is in progress" notice holds while it is true: also at the moment
    preparing ends, which once left an instant where no run counted as active."""
    async def main() -> list[bool]:
        panel = make_panel(clf_df, **LONG)
        seen: list[bool] = []
        panel.observe(lambda c: seen.append(panel.actions.run_active()) if not c["new"] else None, "preparing")
        panel.start()
        await panel.wait_started()
        with pytest.raises(StateError, match="in progress"):
            panel.start()
        assert "in progress; stop it before" in panel.message.value
        panel.stop()
        await panel.wait()
        assert "in progress" not in panel.message.value       # no longer true: gone
        panel.close()
        return seen

    assert asyncio.run(main()) == [True]


def test_pause_resume_and_stop_through_the_buttons(clf_df: pd.DataFrame) -> None:
    async def main() -> None:
        panel = make_panel(clf_df, **LONG)
        panel.start_button.click()
        await until(lambda: panel.current_epoch >= 1, what="the first epoch")
        batches = forward_counter(panel)
        await until(lambda: batches[0] > 0, what="a training batch")

        panel.pause_button.click()
        at_request = batches[0]
        assert panel.pause_button.description == "Resume"
        await until(lambda: panel.state == "paused", what="the pause")
        assert batches[0] - at_request <= 1                 # within one batch of the click
        frozen = (panel.current_epoch, panel.run.batch, batches[0], len(panel.curves.loss_lines.x))
        await asyncio.sleep(0.3)
        assert (panel.current_epoch, panel.run.batch, batches[0], len(panel.curves.loss_lines.x)) == frozen
        assert not panel.run._task.done()
        assert "paused" in panel.progress.status.value and panel.controls["model_type"].disabled
        assert not panel.controls["epochs"].disabled        # a live run's epochs can change (Apply changes)

        panel.pause_button.click()                          # Resume
        assert panel.pause_button.description == "Pause"
        await until(lambda: panel.current_epoch > frozen[0], what="progress after resuming")
        assert panel.state == "running"

        panel.stop_button.click()
        await panel.wait()
        assert panel.state == "stopped" and "stopped by the user" in panel.reason
        assert len(panel.history) == panel.current_epoch < LONG["epochs"]
        assert list(panel.curves.loss_lines.x) == list(range(1, panel.current_epoch + 1))
        assert not panel.start_button.disabled and panel.pause_button.disabled

    asyncio.run(main())


def test_clicks_from_another_thread_change_widgets_only_on_the_loop_thread(clf_df: pd.DataFrame) -> None:
    """Like a click that ipykernel 7 delivers on a subshell thread."""
    async def main() -> None:
        panel = make_panel(clf_df, **LONG)
        loop_thread = threading.get_ident()
        changed_on: set[int] = set()
        record = lambda _change: changed_on.add(threading.get_ident())  # noqa: E731
        for widget, trait in ((panel.pause_button, "description"), (panel.progress.status, "value"),
                              (panel.start_button, "disabled"), (panel.controls.hints["epochs"], "value")):
            widget.observe(record, trait)
        panel.observe(record, ["state", "current_epoch", "valid"])

        click_threads: list[int] = []
        panel.start_button.on_click(lambda _b: click_threads.append(threading.get_ident()))

        async def click_elsewhere(button: Any) -> None:
            worker = threading.Thread(target=button.click)
            worker.start()
            await asyncio.to_thread(worker.join)

        await click_elsewhere(panel.start_button)
        await until(lambda: panel.current_epoch >= 1, what="the first epoch")
        assert click_threads and click_threads[0] != loop_thread
        await click_elsewhere(panel.pause_button)
        await until(lambda: panel.state == "paused", what="the pause")
        await click_elsewhere(panel.pause_button)
        await until(lambda: panel.state == "running", what="the resume")
        await click_elsewhere(panel.stop_button)
        await panel.wait()
        assert panel.state == "stopped"

        # A control edited from another thread is validated on the loop thread too.
        worker = threading.Thread(target=lambda: setattr(panel.controls["epochs"], "value", 0))
        worker.start()
        await asyncio.to_thread(worker.join)
        await until(lambda: not panel.valid, what="the validation")
        assert "must be at least 1" in panel.controls.hints["epochs"].value
        assert changed_on == {loop_thread}

    asyncio.run(main())


def test_programmatic_control_mirrors_the_buttons(clf_df: pd.DataFrame) -> None:
    async def main() -> None:
        panel = make_panel(clf_df, **LONG)
        with pytest.raises(StateError, match="no run yet"):
            panel.pause()
        task = panel.start()
        assert isinstance(task, asyncio.Task)
        with pytest.raises(StateError, match="in progress"):
            panel.start()
        assert "in progress" in panel.message.value
        await until(lambda: panel.current_epoch >= 1, what="the first epoch")
        panel.pause()
        await until(lambda: panel.state == "paused", what="the pause")
        panel.resume()
        await until(lambda: panel.state == "running", what="the resume")
        panel.stop()
        run = await panel.wait()
        assert run is panel.run and run.state.value == "stopped"
        with pytest.raises(StateError, match="already ended"):
            panel.stop()
        assert "already ended" in panel.message.value

    asyncio.run(main())


def test_the_pause_button_follows_a_pause_asked_of_the_run_itself(clf_df: pd.DataFrame) -> None:
    async def main() -> None:
        panel = make_panel(clf_df, **LONG)
        panel.start()
        await until(lambda: panel.current_epoch >= 1, what="the first epoch")
        panel.run.pause()                                   # from code, not through the panel
        await until(lambda: panel.state == "paused", what="the pause")
        assert panel.pause_button.description == "Resume"
        panel.pause_button.click()                          # resumes; no "already paused" error
        await until(lambda: panel.state == "running", what="the resume")
        assert panel.pause_button.description == "Pause" and panel.message.value == ""
        panel.run.pause()
        panel.run.resume()
        panel.pause_button.click()                          # pauses: the run is not paused any more
        await until(lambda: panel.state == "paused", what="the second pause")
        assert panel.message.value == ""
        panel.stop()
        await panel.wait()

    asyncio.run(main())


def test_early_stopping_marks_the_best_epoch_and_shows_the_reason(clf_df: pd.DataFrame) -> None:
    async def main() -> TrainingPanel:
        # min_delta larger than any loss: only the first epoch counts as an improvement.
        panel = make_panel(clf_df, epochs=50, early_stopping=True, early_stopping_patience=2, min_delta=100.0)
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "early_stopped" and panel.current_epoch == 3
    assert panel.best_metrics["epoch"] == 1 and list(panel.curves.loss_best.x) == [1]
    assert "early stopping" in panel.reason
    status = panel.progress.status.value
    assert "early stopped" in status and "did not improve" in status and "early stopping" not in status
    assert panel.curves.loss_figure.title == "Loss: early stopped at 3, best 1"


def test_a_finished_panel_starts_again_with_the_previous_curves_faded(clf_df: pd.DataFrame) -> None:
    async def main() -> tuple[TrainingPanel, list[dict], Any]:
        panel = make_panel(clf_df, epochs=3)
        panel.start()
        first_run = await panel.wait()
        first = list(panel.history)
        panel.controls["epochs"].value = 4
        panel.start_button.click()
        await panel.wait_started()
        assert panel.run is not first_run and panel.history == [] and panel.state in ("pending", "running")
        await panel.wait()
        return panel, first, first_run

    panel, first, first_run = asyncio.run(main())
    assert panel.state == "completed" and len(panel.history) == 4
    ghost = panel.curves.loss_ghost
    assert list(ghost.x) == [1, 2, 3]
    np.testing.assert_allclose(ghost.y[1], [h["val_loss"] for h in first])
    assert ghost.opacities[0] < 1
    assert list(panel.curves.loss_lines.x) == [1, 2, 3, 4]
    assert first_run.state.value == "completed"


def test_several_panels_in_one_loop_are_independent(clf_df: pd.DataFrame) -> None:
    async def main() -> None:
        a, b = make_panel(clf_df, **LONG), make_panel(clf_df, epochs=4)
        a.start()
        b.start()
        await until(lambda: a.current_epoch >= 1, what="panel a's first epoch")
        a.pause()
        await until(lambda: a.state == "paused", what="panel a's pause")
        await b.wait()                                   # b finishes while a stays paused
        assert b.state == "completed" and len(b.history) == 4
        assert a.state == "paused" and a.pause_button.description == "Resume"
        assert b.pause_button.description == "Pause" and b.pause_button.disabled
        a.resume()
        a.stop()
        await a.wait()
        assert a.state == "stopped" and a.run is not b.run

    asyncio.run(main())


def test_errors_during_a_run_appear_in_the_panel(clf_df: pd.DataFrame, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    async def main() -> TrainingPanel:
        panel = make_panel(clf_df, epochs=2, output_path=str(blocker / "model"))
        panel.start()
        await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.state == "failed"
    assert "could not write the artifacts" in panel.error
    assert "could not write the artifacts" in panel.progress.status.value
    assert panel.progress.epoch_bar.bar_style == "danger"


def test_data_problems_found_on_start_are_shown_beside_the_controls(clf_df: pd.DataFrame) -> None:
    df = clf_df.copy()
    df.loc[3, "f2"] = np.nan

    async def main() -> TrainingPanel:
        panel = make_panel(df, epochs=2)
        task = panel.start()
        with pytest.raises(ConfigError):
            await task
        with pytest.raises(ConfigError):
            await panel.wait()
        return panel

    panel = asyncio.run(main())
    assert panel.run is None and panel.state == "pending" and not panel.preparing
    assert "missing values" in panel.controls.hints["missing_values"].value
    assert "missing values" in panel.message.value
    assert panel.start_button.disabled and not panel.valid     # until a control changes
    panel.controls["missing_values"].value = "impute"
    assert panel.valid and not panel.start_button.disabled


def test_start_without_an_event_loop_says_what_to_do(clf_df: pd.DataFrame) -> None:
    panel = make_panel(clf_df, epochs=2)
    with pytest.raises(StateError, match="running asyncio event loop"):
        panel.start()
    assert "running asyncio event loop" in panel.message.value


def test_widget_refreshes_are_throttled_by_time(clf_df: pd.DataFrame, comm_counter) -> None:
    async def main() -> tuple[TrainingPanel, float]:
        panel = make_panel(clf_df, epochs=20, batch_size=16)
        loop = asyncio.get_running_loop()
        began = loop.time()
        panel.start()
        await panel.wait()
        return panel, loop.time() - began

    panel, seconds = asyncio.run(main())
    assert len(panel.history) == 20
    interval = panel.redraw.throttle.interval
    # Each state change may flush at once; everything else waits for the interval.
    assert panel.redraw.throttle.flushes <= seconds / interval + 8
    batch_events = 20 * 2          # at least one batch_end and one epoch_end per epoch
    assert panel.redraw.throttle.flushes < batch_events
    assert comm_counter.sent["comm_msg"] > 0


def test_an_epoch_held_back_by_the_pacing_appears_without_another_event(clf_df: pd.DataFrame) -> None:
    """While training, new epochs reach the figures (and the epoch counter) at most once per
    curves.epoch_push_interval; one held back must still appear when no further event asks for a
    refresh (a slow next batch)."""
    async def main() -> None:
        panel = make_panel(clf_df, epochs=2)
        curves = panel.curves
        curves.epoch_push_interval = 1.0
        curves.begin_run(classification=True)
        curves.add_epoch({"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.7, "val_loss": 0.6,
                          "val_accuracy": 0.7, "learning_rate": 0.01, "time_per_epoch": 0.1}, improved=True)
        panel.refresh()
        await until(lambda: list(curves.loss_lines.x) == [1], timeout=5, what="the first epoch")
        curves.add_epoch({"epoch": 2, "train_loss": 0.4, "train_accuracy": 0.8, "val_loss": 0.5,
                          "val_accuracy": 0.8, "learning_rate": 0.01, "time_per_epoch": 0.1}, improved=True)
        panel.current_epoch = 2
        panel.refresh()             # the only request...
        panel.redraw.throttle.flush_now()       # ...drawn now, paced: the epoch waits for the interval
        assert list(curves.loss_lines.x) == [1]
        # ...and so does the counter: never "2 done" beside a chart with one epoch.
        assert "1/2 done" in panel.progress.epoch_text.value
        # Pushed once the interval has passed, without anyone asking again.
        await until(lambda: list(curves.loss_lines.x) == [1, 2], timeout=5, what="the held-back epoch")
        assert "2/2 done" in panel.progress.epoch_text.value
        panel.close()

    asyncio.run(main())
