"""The learning-rate finder: the curve and its rules, exact restore of the run's state on both
backends, stopping, refusals, and a suggestion that trains well on a real dataset."""
from __future__ import annotations

import asyncio
import json
import math
import threading

import numpy as np
import pytest

from trainer import ConfigError, LRFinder, StateError, Trainer, TrainingState
from trainer.lr_finder import DIVERGE_FACTOR, SMOOTHING, _steepest, _valley, suggest


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "time_per_epoch"} for entry in history]


def full_state(run: Trainer) -> dict[str, np.ndarray]:
    """Every weight tensor, optimiser slot and RNG state of the run's backend, as arrays."""
    backend = run.backend
    out: dict[str, np.ndarray] = {}
    if run.config.backend == "torch":
        for name, tensor in backend.model.state_dict().items():
            out[f"model/{name}"] = tensor.detach().cpu().numpy().copy()
        opt = backend.optimizer.state_dict()
        for index, slots in opt["state"].items():
            for key, value in slots.items():
                out[f"optimizer/{index}/{key}"] = np.asarray(value.cpu() if hasattr(value, "cpu") else value).copy()
        for i, group in enumerate(opt["param_groups"]):
            out[f"optimizer/group{i}/lr"] = np.asarray(group["lr"])
        out["rng_cpu"] = backend._rng_cpu.numpy().copy()
    else:
        for v in backend.model.variables:          # includes the dropout layers' seed generators
            out[f"model/{v.path}"] = np.asarray(v.numpy()).copy()
        for v in backend.optimizer.variables:      # iterations, learning rate, every slot
            out[f"optimizer/{v.path}"] = np.asarray(v.numpy()).copy()
    return out


def assert_bit_identical(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    assert sorted(before) == sorted(after)
    for name in before:
        a, b = before[name], after[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), f"{name} changed"


# ---------------------------------------------------------------------- exact restore

def test_lr_find_leaves_weights_optimizer_and_rng_bit_identical(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=2), clf_df)
    during: list[dict] = []
    before = full_state(run)
    result = run.lr_find(num_iter=30, on_step=lambda p: during.append(full_state(run)) if len(during) < 1 else None)
    assert len(result.history) >= 10 and run.state == TrainingState.PENDING
    changed = [k for k in before if k.startswith("model/") and before[k].tobytes() != during[0][k].tobytes()]
    assert changed, "the search did not train"
    assert_bit_identical(before, full_state(run))

    run.fit()                                  # after a run the optimiser holds real slots
    assert run.state == TrainingState.COMPLETED
    before = full_state(run)
    assert any(k.startswith("optimizer/") and np.any(v) for k, v in before.items() if "lr" not in k)
    run.lr_find(num_iter=20)
    assert_bit_identical(before, full_state(run))


def test_a_run_after_lr_find_repeats_one_without(backend, base_config, clf_df):
    cfg = base_config(epochs=3, dropout_rate=0.3)        # dropout: the RNG must be restored too
    searched = Trainer(cfg, clf_df)
    searched.lr_find(num_iter=25)
    searched.fit()
    plain = Trainer(cfg, clf_df).fit()
    assert comparable(searched.history) == comparable(plain.history)
    # Two models: Keras numbers their layers' names, so compare in order.
    mine, theirs = full_state(searched), full_state(plain)
    assert len(mine) == len(theirs)
    for (name, a), b in zip(mine.items(), theirs.values()):
        assert a.tobytes() == b.tobytes(), name


# ---------------------------------------------------------------------- the curve and the rules

@pytest.mark.parametrize("backend", ["torch"])     # backend-independent logic: one backend is enough
def test_the_curve_is_an_exponential_ramp_with_a_bias_corrected_average(backend, base_config, clf_df):
    run = Trainer(base_config(), clf_df)
    result = run.lr_find(start_lr=1e-5, end_lr=1e3, num_iter=60)
    h = result.history
    assert list(h.columns) == ["iteration", "learning_rate", "loss", "smoothed_loss"]
    assert h["iteration"].tolist() == list(range(1, len(h) + 1))
    assert h["learning_rate"].iloc[0] == pytest.approx(1e-5)
    ratios = h["learning_rate"].iloc[1:].to_numpy() / h["learning_rate"].iloc[:-1].to_numpy()
    np.testing.assert_allclose(ratios, (1e3 / 1e-5) ** (1 / 59))
    avg, expected = 0.0, []
    for i, loss in enumerate(h["loss"]):
        avg = SMOOTHING * avg + (1 - SMOOTHING) * loss
        expected.append(avg / (1 - SMOOTHING ** (i + 1)))
    np.testing.assert_allclose(h["smoothed_loss"], expected, rtol=1e-12)
    # Up to 1000 the loss diverges: the search stops at the first smoothed loss above 4 x the best.
    assert result.diverged and not result.stopped and len(h) < 60 and "diverged" in result.reason
    smoothed = h["smoothed_loss"].to_numpy()
    last = smoothed[-1]
    assert not math.isfinite(last) or last > DIVERGE_FACTOR * smoothed[:-1].min()
    assert all(s <= DIVERGE_FACTOR * smoothed[:i + 1].min() for i, s in enumerate(smoothed[:-1]))
    # The suggestion is a rate of the curve, picked by the rule it names.
    assert result.rule == "valley" and result.suggestion in h["learning_rate"].tolist()
    assert result.suggestions == suggest(h["learning_rate"].to_numpy(), smoothed, 60)[0]
    assert result.suggestion_loss == pytest.approx(float(h.loc[h.learning_rate == result.suggestion, "smoothed_loss"].iloc[0]))
    steep = run.lr_find(start_lr=1e-5, end_lr=1e3, num_iter=60, rule="steepest")
    assert steep.rule == "steepest" and steep.suggestion == steep.suggestions["steepest"] == result.suggestions["steepest"]
    assert run.config.replace(learning_rate=result.suggestion) == result.apply(run.config)
    d = result.to_dict()
    assert d["suggestion"] == result.suggestion and len(d["history"]["loss"]) == len(h)
    json.dumps(d, allow_nan=False)                   # strict JSON even where the loss blew up


def test_valley_and_steepest_on_a_known_curve():
    lrs = np.logspace(-6, 0, 90)
    flat = np.full(20, 2.0)
    gentle = np.linspace(1.99, 1.5, 25)                       # slow descent
    steep = np.linspace(1.45, 0.5, 15)                        # the steepest stretch
    rise = np.linspace(0.6, 3.0, 30)
    losses = np.concatenate([flat, gentle, steep, rise])
    # steepest: the most negative slope against log(rate) lies in the steep stretch
    assert 45 <= _steepest(lrs, losses) < 60
    # valley: the longest decreasing run is one flat point and the whole descent (41 points ending
    # at 59, so fastai's start is 59 - 41 = 18); the pick is start + 41 // 3 + int(41 / 6), about
    # halfway along it: well before the bottom.
    assert _valley(losses) == 18 + 13 + 6
    # Too short a curve: no suggestion, and a note says why.
    suggestions, notes = suggest(lrs[:12], losses[:12], 100)
    assert suggestions == {"valley": None, "steepest": None} and "too few" in notes[0]


# ---------------------------------------------------------------------- stopping and refusals

def test_should_stop_ends_the_search_and_restores_the_state(backend, base_config, clf_df):
    run = Trainer(base_config(), clf_df)
    before = full_state(run)
    steps: list[dict] = []
    result = run.lr_find(num_iter=100, on_step=steps.append, should_stop=lambda: len(steps) >= 12)
    assert result.stopped and not result.diverged and len(result.history) == 12 == len(steps)
    assert "stopped after 12 of 100" in result.reason
    assert steps[-1] == result.history.iloc[-1].to_dict()
    assert_bit_identical(before, full_state(run))


@pytest.mark.parametrize("backend", ["torch"])     # backend-independent logic: one backend is enough
def test_a_search_stopped_before_its_first_batch_returns_an_empty_curve_and_no_rate(backend, base_config, clf_df):
    # The panel's Stop can land between Find LR's start and its first batch.
    result = Trainer(base_config(), clf_df).lr_find(num_iter=100, should_stop=lambda: True)
    assert result.stopped and "stopped after 0 of 100" in result.reason and result.history.empty
    assert result.history.dtypes.to_dict() == {"iteration": "int64", "learning_rate": "float64", "loss": "float64",
                                               "smoothed_loss": "float64"}
    assert result.suggestion is None and "too few" in result.notes[0]


@pytest.mark.parametrize("backend", ["torch"])     # backend-independent logic: one backend is enough
def test_the_async_search_stops_from_the_event_loop(backend, base_config, clf_df):
    run = Trainer(base_config(), clf_df)
    before = full_state(run)

    async def main():
        loop = asyncio.get_running_loop()
        five = asyncio.Event()
        threads: set[int] = set()

        def on_step(point):
            threads.add(threading.get_ident())
            if point["iteration"] == 5:
                loop.call_soon_threadsafe(five.set)

        finder = LRFinder(run, num_iter=100_000, on_step=on_step)      # would run for minutes
        task = asyncio.ensure_future(finder.arun())
        await asyncio.wait_for(five.wait(), 120)
        assert finder.running
        finder.stop()                                   # as the panel's Stop button does
        result = await asyncio.wait_for(task, 120)
        assert threading.get_ident() not in threads     # it searched off the event loop
        # Cancelling the awaiting task stops a search too, after restoring the state.
        cancelled = LRFinder(run, num_iter=100_000)
        task = asyncio.ensure_future(cancelled.arun())
        while len(cancelled.points) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not cancelled.running and cancelled.result.stopped
        return result

    result = asyncio.run(main())
    assert result.stopped and 5 <= len(result.history) < 100_000
    assert_bit_identical(before, full_state(run))


def test_lr_find_is_refused_while_the_run_trains_or_is_paused(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=10_000), clf_df)
    refusals: list[str] = []

    def on_event(event, data):
        if event == "batch_end" and not refusals:
            try:
                run.lr_find()
            except StateError as exc:
                refusals.append(str(exc))
            run.pause()
        elif event == "state_change" and data["new"] == "paused":
            try:
                run.lr_find()
            except StateError as exc:
                refusals.append(str(exc))
            run.stop()

    run.add_callback(on_event)

    async def main():
        run.start()
        await run.wait()

    asyncio.run(main())
    assert run.state == TrainingState.STOPPED
    assert len(refusals) == 2 and "while the run is running" in refusals[0] and "while the run is paused" in refusals[1]


@pytest.mark.parametrize("backend", ["torch"])     # backend-independent logic: one backend is enough
def test_starting_the_run_during_a_search_is_refused(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=1), clf_df)
    refusals: list[str] = []

    def on_step(point):
        if point["iteration"] == 3:
            try:
                run.fit()
            except StateError as exc:
                refusals.append(str(exc))
            try:
                run.lr_find()
            except StateError as exc:
                refusals.append(str(exc))

    run.lr_find(num_iter=10, on_step=on_step)
    assert len(refusals) == 2 and "while lr_find() is searching" in refusals[0] and "already searching" in refusals[1]
    assert run.state == TrainingState.PENDING and run.started_at is None
    assert run.fit().state == TrainingState.COMPLETED          # nothing was lost by the refusal


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch"])     # backend-independent logic: one backend is enough
def test_racing_fit_and_lr_find_never_train_at_once(backend, base_config, clf_df):
    """fit() and lr_find() from two threads at the same moment, many times: either may win, but
    the search never trains while the run does, and the run is never left half-claimed."""
    df = clf_df.head(200)
    busy = (TrainingState.RUNNING, TrainingState.PAUSED)
    for _ in range(20):
        run = Trainer(base_config(epochs=1), df)
        gate = threading.Barrier(2)
        overlaps, outcomes = [], {}

        def find():
            gate.wait()
            try:
                # (a search after the run has ended is fine: it may win that way)
                run.lr_find(num_iter=10, on_step=lambda p: overlaps.append(run.state) if run.state in busy else None)
                outcomes["find"] = "searched"
            except StateError:
                outcomes["find"] = "refused"

        def train():
            gate.wait()
            try:
                run.fit()
                outcomes["fit"] = "trained"
            except StateError:
                outcomes["fit"] = "refused"

        threads = [threading.Thread(target=find), threading.Thread(target=train)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not overlaps
        assert "searched" in outcomes.values() or "trained" in outcomes.values(), outcomes
        if outcomes["fit"] == "trained":
            assert run.state == TrainingState.COMPLETED
        else:
            assert run.state == TrainingState.PENDING and run.started_at is None
            assert run.fit().state == TrainingState.COMPLETED


@pytest.mark.parametrize("backend", ["torch"])     # backend-independent logic: one backend is enough
def test_bad_arguments_are_config_errors_naming_the_field(backend, base_config, clf_df):
    run = Trainer(base_config(), clf_df)
    for kwargs, field in [({"start_lr": 0}, "start_lr"), ({"end_lr": 1e-8}, "end_lr"), ({"num_iter": 3}, "num_iter"),
                          ({"num_iter": 50.0}, "num_iter"), ({"rule": "minimum"}, "rule"), ({"end_lr": math.inf}, "end_lr")]:
        with pytest.raises(ConfigError) as err:
            run.lr_find(**kwargs)
        assert err.value.errors[0]["field"] == field, kwargs
    assert run.state == TrainingState.PENDING


def test_several_devices_are_refused_with_the_fix(clf_df):
    run = Trainer({"target_column": "label", "device": "cpu", "devices": 2, "epochs": 1}, clf_df)
    with pytest.raises(ConfigError, match="devices=1"):
        run.lr_find()


# ---------------------------------------------------------------------- a real dataset

@pytest.mark.slow
def test_the_suggestion_trains_about_as_well_as_the_best_of_a_grid(backend):
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True).frame          # 1,797 8x8 images, bundled with scikit-learn
    cfg = {"backend": backend, "target_column": "target", "seed": 0, "epochs": 5, "batch_size": 32,
           "hidden_units": [64], "dropout_rate": 0.1, "early_stopping": False, "learning_rate_scheduler": "none",
           "device": "cpu"}
    result = Trainer(cfg, digits).lr_find()
    assert result.suggestion is not None and 1e-5 < result.suggestion < 1.0, result

    def accuracy(lr: float) -> float:
        run = Trainer({**cfg, "learning_rate": lr}, digits).fit()
        return run.best_metrics["accuracy"]

    grid = {lr: accuracy(lr) for lr in (1e-4, 1e-3, 3e-3, 1e-2, 3e-2)}
    suggested = accuracy(result.suggestion)
    assert suggested >= max(grid.values()) - 0.02, (result.suggestion, suggested, grid)
