"""Steering a run whose batches are computed elsewhere: every DDP rank applies a change at the
same step (the run then trains like one process replaying the change), and a Ray actor applies
it as a local run does."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time

import pytest

from tests.trainer.test_distributed import assert_same_training, settings
from trainer import ConfigError, StateError, Trainer, TrainingState
from trainer.executors import run_factory

pytestmark = pytest.mark.slow


async def until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.distributed
def test_every_rank_applies_a_change_at_the_same_step(clf_df):
    config = settings(devices=2, epochs=40, batch_size=16)

    async def drive() -> Trainer:
        run = Trainer(config, clf_df)
        run.start()
        await until(lambda: run.current_epoch >= 1)
        # From a thread: update() waits until the ranks have applied it.
        running = await asyncio.to_thread(run.update, learning_rate=0.02, batch_size=32)
        with pytest.raises(ConfigError, match="does not divide by 2"):
            await asyncio.to_thread(run.update, batch_size=33)
        run.pause()
        await until(lambda: run.state == TrainingState.PAUSED)
        paused = await asyncio.to_thread(run.update, epochs=run.current_epoch + 2, learning_rate=0.01)
        assert run.state == TrainingState.PAUSED and (paused["epoch"], paused["batch"]) == (run.current_epoch + 1,
                                                                                              run.batch)
        run.resume()
        await asyncio.wait_for(run.wait(), 120)
        assert run.config_changes == [running, paused] and run.config.learning_rate == 0.01
        return run

    multi = asyncio.run(drive())
    assert multi.state == TrainingState.COMPLETED, multi.reason
    assert len(multi.history) == multi.config_changes[1]["changes"]["epochs"]["new"]
    # One process replaying the changes at the recorded steps trains alike: every rank applied
    # each change at the step rank 0 recorded.
    single = Trainer(settings(epochs=40, batch_size=16), clf_df, replay=multi).fit()
    assert_same_training(multi.history, single.history)
    with pytest.raises(StateError, match="already ended"):
        multi.update(learning_rate=0.1)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import trainer.loop
    from trainer import ConfigError, Trainer, datasets
    trainer.loop.SLICE_SECONDS = 0.0       # a batch_end after every batch
    df = datasets.make_classification(1201, seed=1)
    config = json.loads(sys.argv[1])
    multi = Trainer({**config, "devices": 2}, df)     # before TensorFlow starts: 2 logical CPUs
    refused = []

    def steer(event, data):
        if event == "batch_end" and (data["epoch"], data["batch"]) == (1, 5):
            try:
                multi.update(batch_size=15)
            except ConfigError as exc:
                refused.append(str(exc))
            multi.update(learning_rate=0.02, batch_size=16)
    multi.add_callback(steer)
    multi.fit()
    single = Trainer(config, df, replay=multi).fit()
    print("RESULT", json.dumps({"multi": multi.history, "single": single.history, "refused": refused,
                                "changes": multi.config_changes}))
""")


@pytest.mark.distributed
@pytest.mark.tensorflow
def test_mirrored_replicas_take_a_change_like_one_device():
    config = settings(backend="tensorflow")     # no dropout: replicas draw other masks than one device
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(config)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert "does not divide by 2" in result["refused"][0]
    assert [(c["epoch"], c["batch"]) for c in result["changes"]] == [(1, 5)]
    assert [h["learning_rate"] for h in result["multi"]] == [0.02] * 3
    assert_same_training(result["multi"], result["single"])


@pytest.mark.ray
def test_a_ray_actor_applies_a_change_and_answers_with_its_event(clf_df, ray_instance):
    config = {"model_type": "mlp", "epochs": 1000, "batch_size": 32, "hidden_units": [16], "seed": 0,
              "device": "cpu", "target_column": "label", "early_stopping": False, "learning_rate_scheduler": "none"}

    async def main():
        run = run_factory("ray")(config, clf_df)
        task = run.start()
        await until(lambda: run.current_epoch >= 1)
        run.pause()
        await until(lambda: run.state == TrainingState.PAUSED)
        event = await asyncio.to_thread(run.update, learning_rate=0.02, epochs=run.current_epoch + 2)
        assert run.state == TrainingState.PAUSED and event["changes"]["learning_rate"] == {"old": 0.001, "new": 0.02}
        with pytest.raises(ConfigError) as refused:
            await asyncio.to_thread(run.update, hidden_units=[4])
        assert refused.value.errors[0]["field"] == "hidden_units"
        run.resume()
        await asyncio.wait_for(task, 120)
        return run, event

    run, event = asyncio.run(main())
    assert run.state == TrainingState.COMPLETED and len(run.history) == event["changes"]["epochs"]["new"]
    assert run.history[-1]["learning_rate"] == 0.02 and run.config_changes == [event]
    with pytest.raises(StateError, match="already ended"):
        run.update(learning_rate=0.1)
