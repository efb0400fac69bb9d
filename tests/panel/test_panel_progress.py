"""The state line and counters: wording that agrees with the counters, elapsed time without pauses."""
from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd

from epoch_widgets import TrainingPanel
from epoch_widgets.panel.progress import ProgressView, Snapshot, describe

from .conftest import until
from .test_panel_training import LONG, make_panel


def test_paused_wording_agrees_with_the_epoch_counter() -> None:
    view = ProgressView()
    view.update(Snapshot(state="paused", current_epoch=11, total_epochs=20, batch=37, num_batches=60,
                         reason="paused in epoch 12 after batch 37"))
    assert "paused" in view.status.value
    assert "during epoch 12 of 20, after batch 37 of 60" in view.status.value
    assert view.epoch_text.value.count("11/20 done") == 1        # 11 done, the 12th in progress
    assert "paused in epoch" not in view.status.value             # the trainer's words are not repeated


def test_end_reasons_do_not_repeat_the_state() -> None:
    early = describe(Snapshot(state="early_stopped", reason="early stopping: val_loss did not improve by more "
                                                            "than min_delta=0.001 for 5 epochs (best 0.2 at epoch 7)"))
    assert early.startswith("val_loss did not improve") and "early stopping" not in early
    assert describe(Snapshot(state="stopped", reason="stopped by the user after epoch 4")) == "by the user after epoch 4"
    assert describe(Snapshot(state="completed", reason="finished all 20 epochs")) == "all 20 epochs"
    assert describe(Snapshot(state="running", current_epoch=3, total_epochs=20)) == "epoch 4 of 20"
    assert describe(Snapshot(state="failed", error="loss is NaN")) == "loss is NaN"
    assert describe(Snapshot(state="pending", preparing="loading PyTorch…")) == "loading PyTorch…"


def test_a_real_pause_stops_the_elapsed_time(clf_df: pd.DataFrame) -> None:
    async def main() -> None:
        panel = make_panel(clf_df, **LONG)
        panel.start()
        await until(lambda: panel.current_epoch >= 1, what="the first epoch")
        panel.pause()
        await until(lambda: panel.state == "paused", what="the pause")
        at_pause = panel.adapter.elapsed()
        await asyncio.sleep(0.5)
        assert panel.adapter.elapsed() == at_pause
        epoch = panel.current_epoch
        panel.redraw.now()
        assert f"during epoch {epoch + 1} of {LONG['epochs']}" in panel.progress.status.value
        assert f"{epoch}/{LONG['epochs']} done" in panel.progress.epoch_text.value
        panel.resume()
        await until(lambda: panel.adapter.elapsed() > at_pause, what="time to count again")
        panel.stop()
        await panel.wait()

    asyncio.run(main())


def test_start_shows_preparing_at_once_and_a_second_start_cannot_slip_in(clf_df: pd.DataFrame) -> None:
    """Item 1: clicks from several threads at once (ipykernel 7 subshells) start one run; the refusal
    message goes away when the run ends."""
    import threading

    async def main() -> tuple[TrainingPanel, list[Any]]:
        panel = make_panel(clf_df, epochs=3)
        runs: list[Any] = []
        panel.observe(lambda ch: runs.append(ch["new"]), "run")
        states: list[str] = []
        panel.progress.status.observe(lambda ch: states.append(ch["new"]), "value")
        workers = [threading.Thread(target=panel.start_button.click) for _ in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            await asyncio.to_thread(w.join)
        await until(lambda: panel.actions.task is not None, what="the start")
        assert "in progress" in panel.message.value or panel.start_button.disabled
        await panel.wait()
        await until(lambda: panel.state == "completed", what="the end")
        assert any("preparing" in s for s in states)          # said before the model was built
        return panel, runs

    panel, runs = asyncio.run(main())
    assert len(runs) == 1 and runs[0] is panel.run
    assert "in progress" not in panel.message.value           # no longer true, so gone
    assert not panel.start_button.disabled
