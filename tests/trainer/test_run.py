"""The epoch loop: history and progress shapes, events, control (pause/resume/stop), determinism
across pauses, and failures that end a run without taking the process down."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

import trainer.loop
from trainer import Callback, StateError, Trainer, TrainingState, load_model

CLASSIFICATION_KEYS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                            "learning_rate", "time_per_epoch"]


def comparable(history: list[dict]) -> list[dict]:
    """A history without wall-clock times: what must be identical between reproducible runs."""
    return [{k: v for k, v in entry.items() if k != "time_per_epoch"} for entry in history]


@pytest.fixture
def one_batch_slices(monkeypatch):
    """Every batch its own slice, so a batch_end observer can act after any chosen batch."""
    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 0.0)


class Recorder(Callback):
    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.threads: set[int] = set()

    def on_event(self, run, event, data):
        self.events.append((event, data))
        self.threads.add(threading.get_ident())
        super().on_event(run, event, data)

    def names(self) -> list[str]:
        return [e for e, _ in self.events]

    def states(self) -> list[tuple[str, str]]:
        return [(d["old"], d["new"]) for e, d in self.events if e == "state_change"]


# ---------------------------------------------------------------------- a plain run

def test_fit_produces_spec_history_and_progress(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=3), clf_df)
    assert run.state == TrainingState.PENDING and run.history == [] and run.best_metrics == {}
    assert run.fit() is run
    assert run.state == TrainingState.COMPLETED and run.reason == "finished all 3 epochs"
    assert [list(h) for h in run.history] == [CLASSIFICATION_KEYS] * 3
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    json.dumps(run.history)                                  # plain, JSON-safe values
    assert all(h["time_per_epoch"] > 0 for h in run.history)
    progress = run.progress()
    assert progress["current_epoch"] == 3 and progress["total_epochs"] == 3
    assert progress["training_state"] == "completed"
    assert progress["latest_metrics"] == run.history[-1]
    best = min(run.history, key=lambda h: h["val_loss"])
    assert progress["best_metrics"] == {"loss": best["val_loss"], "accuracy": best["val_accuracy"],
                                        "epoch": best["epoch"]}
    assert list(run.history_frame().columns) == CLASSIFICATION_KEYS


def test_regression_history_reports_mae_instead_of_accuracy(backend, base_config, reg_df):
    run = Trainer(base_config(epochs=2, target_column="target"), reg_df).fit()
    assert list(run.history[0]) == ["epoch", "train_loss", "train_mae", "val_loss", "val_mae",
                                    "learning_rate", "time_per_epoch"]
    assert set(run.best_metrics) == {"loss", "mae", "epoch"}


def test_events_arrive_in_order_to_callbacks_and_functions(backend, base_config, clf_df):
    rec = Recorder()
    seen: list[str] = []
    run = Trainer(base_config(epochs=2), clf_df, callbacks=[rec])
    unsubscribe = run.add_callback(lambda event, data: seen.append(event))
    late: list[str] = []
    run.add_callback(lambda event, data: late.append(event))()   # unsubscribed at once
    run.fit()
    names = rec.names()
    assert seen == names and late == []
    assert names[:2] == ["state_change", "train_begin"] and names[-2:] == ["state_change", "train_end"]
    body = [n for n in names[2:-2] if n != "batch_end"]
    assert body == ["epoch_begin", "epoch_end"] * 2
    assert "batch_end" in names
    assert rec.states() == [("pending", "running"), ("running", "completed")]
    data = dict(rec.events)
    assert data["train_begin"] == {"total_epochs": 2, "start_epoch": 0, "task": "classification", "device": "cpu"}
    assert data["epoch_end"]["metrics"] == run.history[-1] and isinstance(data["epoch_end"]["improved"], bool)
    assert data["epoch_end"]["best_epoch"] == run.best_metrics["epoch"]
    assert data["train_end"] == {"state": "completed", "best_metrics": run.best_metrics, "reason": run.reason,
                                 "error": None, "artifacts_path": None, "last_checkpoint": None}
    batch = next(d for e, d in rec.events if e == "batch_end")
    assert set(batch) == {"epoch", "batch", "num_batches", "loss"} and 1 <= batch["batch"] <= batch["num_batches"]
    begin = next(d for e, d in rec.events if e == "epoch_begin")
    assert begin == {"epoch": 1, "learning_rate": 0.005, "batch": 0, "num_batches": batch["num_batches"]}
    change = next(d for e, d in rec.events if e == "state_change")
    assert set(change) == {"old", "new", "reason", "error", "elapsed"}
    json.dumps([d for _, d in rec.events], allow_nan=False)     # every event can cross a pipe as strict JSON
    unsubscribe()


def test_a_follower_rebuilds_the_runs_state_from_its_events(backend, base_config, clf_df, tmp_path):
    from trainer import RunFollower, RunState

    run = Trainer(base_config(epochs=3, output_path=str(tmp_path / "out")), clf_df)
    here = RunFollower.of(run)                                    # in this process
    there = RunFollower(RunState.from_snapshot(json.loads(json.dumps(run.run_state.snapshot()))))
    run.add_callback(lambda event, data: there.apply(event, json.loads(json.dumps(data))))   # "across a pipe"
    heard: list[str] = []
    here.listen(lambda event, data: heard.append(here.state.state.value))
    run.fit()
    for follower in (here, there):
        copy = follower.state
        assert copy.progress() == run.progress() and copy.history == run.history
        assert copy.best_metrics == run.best_metrics and copy.state == TrainingState.COMPLETED
        assert copy.artifacts_path == str(tmp_path / "out") and copy.last_checkpoint == str(run.last_checkpoint)
        assert 0 < copy.elapsed() and abs(copy.elapsed() - run.run_state.elapsed()) < 1.0
    assert heard[0] == "running" and heard[-1] == "completed"    # listeners read the state after each event
    here.detach()


def test_a_failing_observer_never_stops_the_run(backend, base_config, clf_df):
    def broken(event, data):
        raise RuntimeError("observer bug")

    class BrokenCallback(Callback):
        def on_epoch_end(self, run, data):
            raise KeyError("also broken")

    rec = Recorder()
    run = Trainer(base_config(epochs=2), clf_df, callbacks=[broken, BrokenCallback(), rec]).fit()
    assert run.state == TrainingState.COMPLETED and len(run.history) == 2
    assert rec.names().count("epoch_end") == 2                 # later observers still hear everything
    assert any("observer bug" in e for e in run.observer_errors)
    assert any("also broken" in e for e in run.observer_errors)


def test_past_the_cap_observer_errors_are_neither_kept_nor_logged_but_said_once(caplog):
    from trainer.events import MAX_ERRORS, EventBus

    def broken(event, data):
        raise RuntimeError("batch observer bug")

    bus = EventBus(owner=None)
    bus.add(broken)
    with caplog.at_level(logging.WARNING, logger="trainer"):
        for _ in range(MAX_ERRORS + 50):
            bus.emit("batch_end", {})
    assert len(bus.errors) == MAX_ERRORS
    records = [r for r in caplog.records if r.name == "trainer"]
    assert len(records) == MAX_ERRORS + 1
    assert all(r.exc_info for r in records[:MAX_ERRORS])
    last = records[-1]
    assert "further observer errors of this run are suppressed" in last.getMessage() and not last.exc_info


def test_seeded_runs_are_reproducible_and_seeds_matter(backend, base_config, clf_df):
    a = Trainer(base_config(epochs=2, seed=7), clf_df).fit()
    b = Trainer(base_config(epochs=2, seed=7), clf_df).fit()
    c = Trainer(base_config(epochs=2, seed=8), clf_df).fit()
    assert comparable(a.history) == comparable(b.history)
    assert comparable(a.history) != comparable(c.history)


def test_an_unseeded_run_records_the_seed_that_reproduces_it(backend, base_config, clf_df):
    a = Trainer(base_config(epochs=2, seed=None), clf_df).fit()
    again = Trainer(base_config(epochs=2, seed=a.seed), clf_df).fit()
    assert isinstance(a.seed, int) and comparable(a.history) == comparable(again.history)


# ---------------------------------------------------------------------- asyncio face

def test_start_keeps_the_event_loop_responsive(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=4), clf_df)
    rec = Recorder()
    run.add_callback(rec)
    ticks = 0

    async def main():
        nonlocal ticks
        task = run.start()
        assert isinstance(task, asyncio.Task) and not task.done()
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.005)
        await run.wait()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert run.state == TrainingState.COMPLETED
    assert ticks > 5                           # the loop kept running other work while training
    assert rec.threads == {loop_thread}         # events arrive on the loop's thread


def test_every_slice_of_a_run_computes_on_one_thread_while_the_loop_pool_has_others(
        backend, base_config, clf_df, one_batch_slices):
    # Slices that wandered between the default pool's threads ran measurably slower; a notebook's
    # loop pool always has several idle threads (the panel's own background work starts them).
    run = Trainer(base_config(epochs=2), clf_df)
    threads: list[str] = []
    train_batches = run.backend.train_batches

    computed_on: set[threading.Thread] = set()

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        computed_on.add(threading.current_thread())
        return train_batches(*args, **kwargs)

    run.backend.train_batches = recording

    async def main():
        # Several idle threads in the default pool, as a panel leaves behind.
        await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.02) for _ in range(4)))
        run.start()
        await run.wait()
        # An ended run leaves no thread behind: a thread still exiting while the interpreter tears
        # down can abort the process.
        return [t.name for t in computed_on if t.is_alive()]

    left_behind = asyncio.run(main())
    assert run.state == TrainingState.COMPLETED and len(threads) > 10
    assert len(set(threads)) == 1 and threads[0].startswith("trainer-compute")
    assert left_behind == []


def test_fit_inside_a_running_loop_works_like_a_notebook_cell(backend, base_config, clf_df):
    async def cell():
        return Trainer(base_config(epochs=2), clf_df).fit()

    run = asyncio.run(cell())
    assert run.state == TrainingState.COMPLETED and len(run.history) == 2


def test_start_without_a_loop_and_restarting_are_refused(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=1), clf_df)
    with pytest.raises(StateError, match="fit()"):
        run.start()
    with pytest.raises(StateError, match="start()"):
        asyncio.run(run.wait())
    run.fit()
    with pytest.raises(StateError, match="create a new Trainer"):
        run.fit()


def test_control_actions_the_state_does_not_allow(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=1), clf_df)
    with pytest.raises(StateError, match="not paused"):
        run.resume()
    run.fit()
    for action in (run.pause, run.resume, run.stop):
        with pytest.raises(StateError, match="already ended"):
            action()


def test_concurrent_runs_in_one_loop_stay_reproducible(backend, base_config, clf_df, reg_df):
    cfg_a, cfg_b = base_config(epochs=3, dropout_rate=0.3, seed=1), base_config(epochs=3, target_column="target", seed=2)
    alone_a, alone_b = Trainer(cfg_a, clf_df).fit(), Trainer(cfg_b, reg_df).fit()
    a, b = Trainer(cfg_a, clf_df), Trainer(cfg_b, reg_df)

    async def main():
        a.start()
        b.start()
        await asyncio.gather(a.wait(), b.wait())

    asyncio.run(main())
    assert comparable(a.history) == comparable(alone_a.history)
    assert comparable(b.history) == comparable(alone_b.history)


# ---------------------------------------------------------------------- pause and resume

def run_with_pauses(run: Trainer, pause_at: set[tuple[int, int]], hold: float = 0.01) -> Recorder:
    """Start ``run`` and pause it after each (epoch, batch) in ``pause_at`` for ``hold`` seconds."""
    rec = Recorder()

    async def main():
        loop = asyncio.get_running_loop()

        def on_event(event, data):
            if event == "batch_end" and (data["epoch"], data["batch"]) in pause_at:
                run.pause()
            elif event == "state_change" and data["new"] == "paused":
                # Paused right after the batch that asked for it, before any further batch.
                rec.events.append(("paused_at", {"epoch": run.current_epoch + 1, "batch": run.batch}))
                # Resume only once the pause has landed: a timer started at the request could fire
                # first when an epoch's end (validation) outlasts it on a busy machine.
                loop.call_later(hold, run.resume)

        run.add_callback(rec)
        run.add_callback(on_event)
        run.start()
        await run.wait()

    asyncio.run(main())
    return rec


def test_pause_takes_effect_after_the_current_batch(backend, base_config, clf_df, one_batch_slices):
    run = Trainer(base_config(epochs=2), clf_df)
    pause_at = {(1, 4), (2, 11)}
    rec = run_with_pauses(run, pause_at)
    assert {(d["epoch"], d["batch"]) for e, d in rec.events if e == "paused_at"} == pause_at
    assert rec.states() == [("pending", "running"), ("running", "paused"), ("paused", "running"),
                            ("running", "paused"), ("paused", "running"), ("running", "completed")]
    assert run.state == TrainingState.COMPLETED


def test_pause_and_resume_give_the_same_history_as_an_uninterrupted_run(backend, base_config, clf_df, monkeypatch):
    cfg = base_config(epochs=4, dropout_rate=0.3, learning_rate_scheduler="step", step_size=1, gamma=0.7)
    reference = Trainer(cfg, clf_df).fit()               # default time slices, no pauses

    monkeypatch.setattr(trainer.loop, "SLICE_SECONDS", 0.0)
    run = Trainer(cfg, clf_df)
    # (2, 30) is an epoch's last batch: that pause holds before epoch 3's first batch.
    pause_at = {(1, 1), (1, 2), (1, 17), (2, 30), (3, 8), (4, 29)}
    rec = run_with_pauses(run, pause_at)
    paused = [(d["epoch"], d["batch"]) for e, d in rec.events if e == "paused_at"]
    assert sorted(paused) == [(1, 1), (1, 2), (1, 17), (3, 0), (3, 8), (4, 29)]
    assert comparable(run.history) == comparable(reference.history)


def test_pausing_from_another_thread_keeps_the_history(backend, base_config, clf_df):
    cfg = base_config(epochs=3, dropout_rate=0.3)
    reference = Trainer(cfg, clf_df).fit()
    run = Trainer(cfg, clf_df)
    rec = Recorder()
    run.add_callback(rec)
    done = threading.Event()

    def toggler():
        # Pause and resume at whatever batch the run happens to be; a finished run refuses.
        while not done.is_set():
            try:
                run.pause()
                time.sleep(0.02)
                run.resume()
            except StateError:
                pass
            time.sleep(0.01)

    worker = threading.Thread(target=toggler)
    worker.start()
    try:
        run.fit()
    finally:
        done.set()
        worker.join()
    assert ("running", "paused") in rec.states()
    assert comparable(run.history) == comparable(reference.history)


def test_time_per_epoch_excludes_paused_time(backend, base_config, clf_df, one_batch_slices):
    run = Trainer(base_config(epochs=2), clf_df)
    started = time.perf_counter()
    run_with_pauses(run, {(2, 5)}, hold=1.5)
    assert time.perf_counter() - started >= 1.5
    assert run.history[1]["time_per_epoch"] < 1.5


def test_pause_requested_twice_is_refused_and_a_run_can_be_paused_before_it_starts(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=1), clf_df)
    run.pause()
    with pytest.raises(StateError, match="already paused"):
        run.pause()
    rec = Recorder()
    run.add_callback(rec)

    async def main():
        run.start()
        while run.state != TrainingState.PAUSED:
            await asyncio.sleep(0.005)
        assert run.batch == 0 and run.history == []
        run.resume()
        await run.wait()

    asyncio.run(main())
    assert run.state == TrainingState.COMPLETED


# ---------------------------------------------------------------------- stop

def test_stop_mid_epoch_keeps_completed_epochs_and_writes_artifacts(backend, base_config, clf_df, tmp_path, one_batch_slices):
    out = tmp_path / "stopped"
    run = Trainer(base_config(epochs=10, output_path=str(out)), clf_df)
    rec = Recorder()
    run.add_callback(rec)
    run.add_callback(lambda e, d: run.stop() if e == "batch_end" and (d["epoch"], d["batch"]) == (3, 5) else None)
    run.fit()
    assert run.state == TrainingState.STOPPED
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert "during epoch 3" in run.reason
    assert rec.states()[-1] == ("running", "stopped")
    event, end = rec.events[-1]
    assert event == "train_end" and end["state"] == "stopped" and end["reason"] == run.reason
    assert end["best_metrics"] == run.best_metrics and end["artifacts_path"] == str(out)
    saved = json.loads((out / "history.json").read_text())
    assert saved["state"] == "stopped" and saved["history"] == run.history
    assert json.loads((out / "metadata.json").read_text())["epochs_completed"] == 2
    assert load_model(out).predict(clf_df).shape == (len(clf_df),)


def test_stop_at_an_epoch_end(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=10), clf_df)
    run.add_callback(lambda e, d: run.stop() if e == "epoch_end" and d["metrics"]["epoch"] == 2 else None)
    run.fit()
    assert run.state == TrainingState.STOPPED and len(run.history) == 2 and "after epoch 2" in run.reason


def test_stop_while_paused(backend, base_config, clf_df, one_batch_slices):
    run = Trainer(base_config(epochs=5), clf_df)
    rec = Recorder()
    run.add_callback(rec)

    def on_event(event, data):
        if event == "batch_end" and (data["epoch"], data["batch"]) == (2, 3):
            run.pause()
        elif event == "state_change" and data["new"] == "paused":
            run.stop()

    run.add_callback(on_event)
    run.fit()
    assert run.state == TrainingState.STOPPED and len(run.history) == 1
    assert rec.states()[-2:] == [("running", "paused"), ("paused", "stopped")]


def test_stop_from_another_thread(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=10_000), clf_df)

    async def main():
        run.start()
        await run.wait()

    runner = threading.Thread(target=asyncio.run, args=(main(),))
    runner.start()
    deadline = time.monotonic() + 60
    while run.current_epoch < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    run.stop()
    assert run.wait_until_done(60)
    runner.join(60)
    assert run.state == TrainingState.STOPPED and 1 <= len(run.history) < 10_000


# ---------------------------------------------------------------------- failures

def test_nan_loss_fails_the_run_with_a_readable_reason(backend, base_config, reg_df, tmp_path):
    run = Trainer(base_config(target_column="target", optimizer="sgd", learning_rate=10.0,
                              output_path=str(tmp_path / "nan")), reg_df).fit()
    assert run.state == TrainingState.FAILED
    assert "loss became nan" in run.reason.lower() and "learning_rate" in run.reason
    assert run.error == run.reason and run.progress()["error"] == run.reason
    assert json.loads((tmp_path / "nan" / "history.json").read_text())["state"] == "failed"


def test_a_loss_that_diverges_mid_run_keeps_the_history_so_far(backend, base_config, reg_df):
    # Cosine annealing from 0.001 "down" to eta_min=50 raises the rate every epoch until SGD diverges.
    run = Trainer(base_config(target_column="target", optimizer="sgd", learning_rate=0.001,
                              learning_rate_scheduler="cosine", T_max=6, eta_min=50.0, epochs=6), reg_df).fit()
    assert run.state == TrainingState.FAILED
    assert len(run.history) >= 1 and all(h["epoch"] == i for i, h in enumerate(run.history, 1))
    assert f"epoch {len(run.history) + 1}" in run.reason
    assert run.progress()["training_state"] == "failed"


@pytest.fixture
def exploding_module(backend):
    if backend != "torch":
        pytest.skip("a torch.nn.Module is for the torch backend")
    torch = pytest.importorskip("torch")

    class Exploding(torch.nn.Module):
        """Learns like a linear model until its training call number ``after``, then raises."""

        def __init__(self, after: int):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)
            self.after, self.calls = after, 0

        def forward(self, x):
            if self.training:
                self.calls += 1
                if self.calls > self.after:
                    raise RuntimeError("simulated failure inside forward")
            return self.linear(x)

    return Exploding


def test_an_exception_in_the_model_fails_the_run_and_the_process_survives(exploding_module, base_config, clf_df, tmp_path):
    batches_per_epoch = -(-int(len(clf_df) * 0.8) // 32)
    rec = Recorder()
    run = Trainer(base_config(epochs=5, output_path=str(tmp_path / "boom")), clf_df,
                  model=exploding_module(after=2 * batches_per_epoch + 3), callbacks=[rec]).fit()
    assert run.state == TrainingState.FAILED
    assert "RuntimeError: simulated failure inside forward" in run.reason
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert rec.events[-1][1]["state"] == "failed" and rec.states()[-1] == ("running", "failed")
    saved = json.loads((tmp_path / "boom" / "history.json").read_text())
    assert saved["state"] == "failed" and len(saved["history"]) == 2
    # The process carries on: a new run trains normally.
    assert Trainer(base_config(epochs=1), clf_df).fit().state == TrainingState.COMPLETED


def test_a_failure_with_the_asyncio_face_does_not_raise_from_wait(exploding_module, base_config, clf_df):
    run = Trainer(base_config(epochs=3), clf_df, model=exploding_module(after=5))

    async def main():
        run.start()
        await run.wait()

    asyncio.run(main())
    assert run.state == TrainingState.FAILED and run.history == []


def test_an_observer_finishing_slowly_holds_the_end_but_not_the_event_loop(clf_df):
    class SlowWriter(Callback):
        """Like a tracking logger whose server is slow: finish() blocks until its writes are done."""

        def __init__(self):
            self.finished_at = self.final_heard_at = None

        def finish(self, run, data):
            assert data["state"] == "completed" and run.state == TrainingState.RUNNING
            time.sleep(1.0)
            self.finished_at = time.monotonic()

        def on_state_change(self, run, data):
            if data["new"] == "completed":
                self.final_heard_at = time.monotonic()

    writer = SlowWriter()

    async def drive():
        run = Trainer({"seed": 0, "epochs": 1, "device": "cpu", "target_column": "label"}, clf_df, callbacks=[writer])
        task = run.start()
        ticks = []
        while not task.done():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)
        await run.wait()
        return max(b - a for a, b in zip(ticks, ticks[1:]))

    longest_gap = asyncio.run(drive())
    assert writer.finished_at is not None and writer.finished_at <= writer.final_heard_at
    assert longest_gap < 0.8      # the loop kept turning while finish() slept for a second


def test_a_cancel_mid_slice_interrupts_it_and_restores_the_best_weights_after_it(clf_df):
    """Cancelling the run's task while a slice trains on the compute thread: the slice ends at its
    next batch, and only then are the best weights restored (on that thread): none trains after."""
    import torch

    run = Trainer({"backend": "torch", "seed": 0, "epochs": 3, "batch_size": 32, "hidden_units": [8],
                   "device": "cpu", "target_column": "label", "early_stopping": False,
                   "restore_best_weights": True}, clf_df)
    backend, order = run.backend, []
    train_batches, restore = backend.train_batches, backend.restore
    in_epoch_2, slice_over = threading.Event(), threading.Event()

    def blocking_slice(start, end, deadline, interrupted):
        if run.current_epoch == 1 and not in_epoch_2.is_set():
            in_epoch_2.set()
            # Blocks until the cancel interrupts the slice (before the fix nothing did: 3 s, then on).
            limit = time.monotonic() + 3
            while not interrupted() and time.monotonic() < limit:
                time.sleep(0.01)
            order.append("batch")
            try:
                return train_batches(start, start + 1, time.perf_counter() + 60, lambda: False)
            finally:
                slice_over.set()
        order.append("batch")
        return train_batches(start, end, deadline, interrupted)

    def recorded_restore(snapshot):
        order.append("restore")
        restore(snapshot)

    backend.train_batches, backend.restore = blocking_slice, recorded_restore

    async def cancel_mid_slice():
        task = run.start()
        await asyncio.to_thread(in_epoch_2.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_slice())
    assert slice_over.wait(10)
    assert run.state == TrainingState.STOPPED and run.reason == "cancelled"
    assert order[-1] == "restore" and order.count("restore") == 1, order
    best = run._best_snapshot
    assert all(torch.equal(v, best[k]) for k, v in run.backend.model.state_dict().items())
