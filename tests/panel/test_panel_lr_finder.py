"""Find LR in the panel: the search plotted live in the LR finder tab, its suggestion put into
learning_rate, stopped like a run, and a run and a search never at once."""
from __future__ import annotations

import asyncio
import threading

import pytest

from epoch_widgets import TrainingPanel
from trainer import ConfigError, StateError, Trainer

from .conftest import until

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "learning_rate": 0.01, "device": "cpu",
        "learning_rate_scheduler": "none", "early_stopping": False, "epochs": 2}


def test_find_lr_plots_the_search_and_puts_the_suggestion_into_learning_rate(clf_df):
    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        drawn: list[int] = []
        search = panel.lr_search
        search.view.smoothed.observe(lambda change: drawn.append(len(change["new"])), "x")
        panel.find_lr_button.click()
        assert search.active and panel.views.titles[panel.views.selected_index] == "LR finder"
        assert panel.start_button.disabled and panel.find_lr_button.disabled
        assert not panel.stop_button.disabled and panel.pause_button.disabled
        assert panel.controls["learning_rate"].disabled
        result = await search.task
        assert result is panel.lr_result and result.suggestion is not None
        assert len(drawn) >= 2 and max(drawn) == len(result.history)        # drawn while it searched
        view = search.view
        assert list(view.pick.x) == [result.suggestion] and type(view.x).__name__ == "LogScale"
        assert "suggested learning_rate" in view.message.value and not view.apply_button.disabled
        assert not panel.start_button.disabled and not panel.controls["learning_rate"].disabled
        view.apply_button.click()
        # Rounded to 3 significant digits, not 0.007054802310718645.
        rounded = float(f"{result.suggestion:.3g}")
        assert panel.controls["learning_rate"].value == rounded == pytest.approx(result.suggestion, rel=5e-3)
        assert panel.config.learning_rate == rounded
        assert f"learning_rate is now {rounded:g}" in view.message.value
        return panel

    panel = asyncio.run(main())
    assert panel.run is None           # the search's throwaway run is not the panel's run
    panel.close()


def test_the_stop_button_ends_a_search_with_the_curve_so_far(clf_df):
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        task = panel.find_lr(num_iter=100_000, end_lr=1.0)
        await until(lambda: panel.lr_search.finder is not None and len(panel.lr_search.finder.points) >= 3,
                    what="the search's first batches")
        panel.stop_button.click()
        result = await task
        assert result.stopped and 3 <= len(result.history) < 100_000
        assert "stopped after" in result.reason and "stopped" in panel.lr_search.view.message.value.lower()
        assert not panel.lr_search.active and panel.stop_button.disabled and not panel.start_button.disabled
        panel.close()

    asyncio.run(main())


def test_a_run_and_a_search_exclude_each_other(clf_df):
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **{**FAST, "epochs": 500})
        task = panel.find_lr(num_iter=100_000, end_lr=1.0)
        with pytest.raises(StateError, match="learning-rate search is in progress"):
            panel.start()
        assert "learning-rate search is in progress" in panel.message.value
        panel.stop()
        await task
        panel.start()
        await panel.wait_started()
        with pytest.raises(StateError, match="a run is in progress"):
            panel.find_lr()
        assert panel.find_lr_button.disabled
        panel.stop()
        await panel.wait()
        panel.close()

    asyncio.run(main())


def test_the_search_writes_nothing_even_where_another_run_is_saved(clf_df, tmp_path):
    out = tmp_path / "run"
    Trainer({**FAST, "target_column": "label", "output_path": str(out)}, clf_df).fit()
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))

    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", output_path=str(out), loggers=["tensorboard"],
                              **FAST)
        result = await panel.find_lr(num_iter=20)
        assert len(result.history) == 20 and not panel.overwrite.offered
        panel.close()

    asyncio.run(main())
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_invalid_settings_or_options_say_why(clf_df):
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        panel.controls["batch_size"].value = 0
        with pytest.raises(ConfigError):
            panel.find_lr()
        assert not panel.lr_search.active
        panel.controls["batch_size"].value = 32
        with pytest.raises(ConfigError, match="num_iter"):
            await panel.find_lr(num_iter=3)
        assert "Find LR failed" in panel.message.value and "num_iter" in panel.lr_search.view.message.value
        with pytest.raises(StateError, match="no suggested rate yet"):
            panel.use_suggested_rate()
        panel.close()

    asyncio.run(main())


def test_use_suggested_rate_from_another_thread_changes_the_control_on_the_loop_thread(clf_df):
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        result = await panel.find_lr(num_iter=30)
        changed_on: list[int] = []
        panel.controls["learning_rate"].observe(lambda _c: changed_on.append(threading.get_ident()), "value")
        clicker = threading.Thread(target=panel.lr_search.view.apply_button.click)
        clicker.start()
        await asyncio.to_thread(clicker.join)
        await until(lambda: bool(changed_on), what="the learning_rate control")
        assert changed_on == [threading.get_ident()]
        assert panel.controls["learning_rate"].value == float(f"{result.suggestion:.3g}")
        panel.close()

    asyncio.run(main())


def test_start_and_find_lr_clicked_together_from_another_thread_never_both_go(clf_df):
    """Clicks as ipykernel 7 delivers them (a subshell thread), Start and Find LR alternating
    fast: the first wins, every other is refused, and a run and a search never overlap."""
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **{**FAST, "epochs": 500})
        loop = asyncio.get_running_loop()
        overlaps: list[str] = []
        panel.observe(lambda _c: overlaps.append("both") if panel.lr_search.active and panel.actions.run_active()
                      else None, "preparing")
        for first, second in ((panel.start_button, panel.find_lr_button), (panel.find_lr_button, panel.start_button)):
            handled = loop.create_future()

            def clicks() -> None:
                for _ in range(25):
                    first.click()
                    second.click()
                # Handed to the loop after every click above, so it runs after all of them.
                loop.call_soon_threadsafe(handled.set_result, None)

            clicker = threading.Thread(target=clicks)
            clicker.start()
            await handled
            await asyncio.to_thread(clicker.join)
            searching, running = panel.lr_search.active, panel.actions.run_active()
            assert searching != running, (searching, running)
            assert searching == (first is panel.find_lr_button)
            assert "in progress; stop it before" in panel.message.value
            assert not overlaps
            if searching:
                panel.stop()
                await panel.lr_search.task
            else:
                await panel.wait_started()
                panel.stop()
                await panel.wait()
            assert not panel.lr_search.active and not panel.actions.run_active()
        panel.close()

    asyncio.run(main())
