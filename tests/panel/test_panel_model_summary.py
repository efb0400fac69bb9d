"""The Model summary tab: the controls' config summarised off the event loop once the controls
settle, what Trainer would refuse shown and Start kept disabled, and no stale summary left shown."""
from __future__ import annotations

import asyncio
import random
import threading

import pandas as pd

import epoch_widgets.panel.model_view as model_view
from epoch_widgets import TrainingPanel
from trainer.summary import model_summary

FAST = {"seed": 0, "batch_size": 32, "hidden_units": [16], "device": "cpu", "learning_rate_scheduler": "none",
        "early_stopping": False, "epochs": 2}
HUGE = "65536, 65536, 65536, 65536"          # about 13 billion parameters: no machine here trains it


def parameters(df: pd.DataFrame, units: list[int]) -> int:
    return model_summary({**FAST, "target_column": "label", "hidden_units": units}, df).total_parameters


def test_the_summary_follows_the_controls_and_is_computed_in_a_worker_thread(clf_df, monkeypatch):
    threads: list[int] = []

    def spy(*args, **kwargs):            # the real summary, noting the thread it runs on
        threads.append(threading.get_ident())
        return model_summary(*args, **kwargs)

    monkeypatch.setattr(model_view, "model_summary", spy)

    async def main() -> TrainingPanel:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        assert panel.model_summary is None                   # not on the loop, not yet
        summary = await panel.wait_summary()
        assert summary is not None and summary.total_parameters == parameters(clf_df, [16])
        view = panel.tabs.model.view.value
        assert "Linear" in view and f"{summary.total_parameters:,} parameters" in view
        model_tab = panel.controls.view.children[panel.controls.group_order.index("model")]
        assert panel.tabs.model.headline in model_tab.children
        assert f"{summary.total_parameters:,} parameters" in panel.tabs.model.headline.value
        # Several changes in a row: one summary, of the last settings.
        computed = panel.tabs.model.computed
        for units in ("64", "64, 32", "128, 64"):
            panel.controls["hidden_units"].value = units
        assert "updating" in panel.tabs.model.view.value
        summary = await panel.wait_summary()
        assert panel.tabs.model.computed == computed + 1
        assert summary.total_parameters == parameters(clf_df, [128, 64])
        # Settings seen before and valid again: nothing to compute.
        panel.controls["hidden_units"].value = "0"
        assert panel.model_summary is None and "once the settings are valid" in panel.tabs.model.view.value
        panel.controls["hidden_units"].value = "128, 64"
        await panel.wait_summary()
        assert panel.tabs.model.computed == computed + 2 and panel.model_summary.total_parameters == summary.total_parameters
        return panel

    loop_thread = threading.get_ident()
    panel = asyncio.run(main())
    assert threads and loop_thread not in threads
    panel.close()


def test_a_model_too_big_for_this_machine_says_so_and_keeps_start_disabled(clf_df):
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        await panel.wait_summary()
        assert not panel.start_button.disabled and not panel.find_lr_button.disabled
        panel.controls["hidden_units"].value = HUGE
        summary = await panel.wait_summary()
        assert summary.fits is False and summary.problem
        assert "Too big for this machine" in panel.tabs.model.view.value
        assert "Too big for this machine" in panel.tabs.model.headline.value
        assert panel.start_button.disabled and panel.find_lr_button.disabled and not panel.valid
        assert "parameters" in panel.errors["hidden_units"]              # beside the control too
        assert "Start is disabled" in panel.message.value
        # Revalidating (as Start does) keeps the refusal: the settings did not change.
        panel.revalidate()
        assert panel.start_button.disabled and "hidden_units" in panel.errors
        panel.controls["hidden_units"].value = "32"
        await panel.wait_summary()
        assert panel.model_summary.fits is not False
        assert not panel.start_button.disabled and panel.valid and "hidden_units" not in panel.errors
        panel.close()

    asyncio.run(main())


def test_data_trainer_would_refuse_shows_before_start(clf_df):
    df = clf_df.assign(label=clf_df["label"].astype(float))
    df.loc[:5, "label"] = float("nan")                 # a target with missing values

    async def main() -> None:
        panel = TrainingPanel(data=df, target_column="label", **FAST)
        await panel.wait_summary()
        assert panel.model_summary is None and "would refuse" in panel.tabs.model.view.value
        assert "label" in panel.tabs.model.error and panel.start_button.disabled
        panel.close()

    asyncio.run(main())


def test_hammering_the_controls_never_leaves_a_stale_summary(clf_df):
    """Changes arriving while a summary is computed, at random moments: the summary shown is the
    last settings' summary, every time."""
    rng = random.Random(0)
    choices = [[8], [16, 8], [32], [24, 12], [40]]
    expected = {tuple(u): parameters(clf_df, u) for u in choices}

    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        panel.tabs.model.debounce = 0.01          # let computations overlap the changes
        for _round in range(4):
            for _ in range(rng.randint(1, 6)):
                units = rng.choice(choices)
                panel.controls["hidden_units"].value = ", ".join(map(str, units))
                await asyncio.sleep(rng.choice([0, 0.001, 0.02, 0.05]))
            summary = await panel.wait_summary()
            assert summary.total_parameters == expected[tuple(units)]
            assert f"{summary.total_parameters:,} parameters" in panel.tabs.model.view.value
        panel.close()

    asyncio.run(main())


def test_without_an_event_loop_the_view_says_when_it_computes(clf_df):
    panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
    assert panel.model_summary is None and "event loop" in panel.tabs.model.view.value
    panel.close()


def test_closing_the_panel_cancels_a_pending_summary(clf_df):
    async def main() -> None:
        panel = TrainingPanel(data=clf_df, target_column="label", **FAST)
        panel.controls["hidden_units"].value = "24"
        assert panel.tabs.model.busy
        panel.close()
        assert not panel.tabs.model.busy and panel.model_summary is None

    asyncio.run(main())
