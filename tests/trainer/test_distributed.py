"""Training on several devices: 2-process DistributedDataParallel on the CPU (gloo) against one
process on the same global batch, control across ranks, rank failures, the torchrun entry point,
and TensorFlow's MirroredStrategy on 2 logical CPU devices.

Every multi-process test starts real rank processes (a few seconds each on two cores), so they
are marked ``slow``; the planning and sharding checks run in milliseconds.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import types

import numpy as np
import pytest

from trainer import ConfigError, Trainer, TrainingConfig, TrainingState, datasets, load_model
from trainer.artifacts import TrainedModel
from trainer.distributed.control import PAUSE, RUN, STOP, decode, encode
from trainer.distributed.plan import check_spawnable, plan_devices

pytestmark = pytest.mark.distributed
slow = pytest.mark.slow
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def settings(**overrides) -> dict:
    base = {"backend": "torch", "device": "cpu", "seed": 0, "epochs": 3, "batch_size": 32,
            "hidden_units": [32, 16], "dropout_rate": 0.0, "learning_rate": 0.005,
            "learning_rate_scheduler": "none", "early_stopping": False, "target_column": "label"}
    base.update(overrides)
    return base


def assert_same_training(multi: list[dict], single: list[dict]) -> None:
    """Same epochs and learning rates; metrics equal up to floating-point summation order."""
    assert [h["epoch"] for h in multi] == [h["epoch"] for h in single]
    assert [h["learning_rate"] for h in multi] == [h["learning_rate"] for h in single]
    for key in METRICS:
        np.testing.assert_allclose([h[key] for h in multi], [h[key] for h in single], rtol=1e-4, atol=1e-6,
                                   err_msg=key)


@pytest.fixture(scope="module")
def uneven_df():
    """961 training rows: the last batch of 32 holds one sample, so one rank has none of it."""
    return datasets.make_classification(1201, seed=1)


# ---------------------------------------------------------------------- planning (fast)

def test_batch_size_is_global_and_must_split_evenly(clf_df):
    with pytest.raises(ConfigError) as err:
        Trainer(settings(devices=3, batch_size=32), clf_df)
    e = err.value.errors[0]
    assert e["field"] == "batch_size" and "global batch" in e["message"] and "30 or 33" in e["message"]


@pytest.mark.parametrize("config, gpus, field, words", [
    (dict(devices=4, device="auto"), 0, "devices", ["sees none", "device='cpu'", "4 CPU processes"]),
    (dict(devices=4, device="auto"), 2, "devices", ["only 2 GPU(s)", "devices=2"]),
    (dict(devices=[0, 3], device="cuda"), 2, "devices", ["GPU index 3 is not visible", "0..1"]),
    (dict(devices=2, device="cuda:1"), 4, "device", ["names one GPU", "devices=[1, 2]"]),
    (dict(devices=[0, 1], device="cpu"), 0, "devices", ["GPU indices", "devices=2"]),
    (dict(devices=2, device="cuda"), 0, "device", ["sees no GPU"]),
])
def test_missing_devices_are_explained(config, gpus, field, words):
    with pytest.raises(ConfigError) as err:
        plan_devices(TrainingConfig(**config), visible=(gpus, "a CPU-only build"))
    e = err.value.errors[0]
    assert e["field"] == field
    for word in words:
        assert word in e["message"]


def test_device_plans():
    plan = lambda gpus, **c: plan_devices(TrainingConfig(**c), visible=(gpus, ""))
    assert plan(0, devices="auto").world_size == 1                      # no GPU: one process, as today
    auto = plan(4, devices="auto", batch_size=64)
    assert (auto.world_size, auto.device_ids, auto.comm_backend) == (4, (0, 1, 2, 3), "nccl")
    picked = plan(4, devices=[2, 3], device="cuda")
    assert picked.device_ids == (2, 3) and picked.rank_device(1) == "cuda:3"
    cpu = plan(0, devices=2, device="cpu")
    assert (cpu.world_size, cpu.comm_backend, cpu.rank_device(1)) == (2, "gloo", "cpu")
    assert plan(4, devices=[3]).world_size == 1


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without GPUs")
def test_gpu_devices_on_a_cpu_only_machine_say_how_to_use_cpu_processes(clf_df):
    with pytest.raises(ConfigError) as err:
        Trainer(settings(devices=2, device="auto"), clf_df)
    assert "device='cpu'" in err.value.errors[0]["message"]


def test_a_model_class_from_the_notebook_is_refused_with_the_fix(monkeypatch):
    import torch

    notebook = types.ModuleType("__main__")      # a kernel's __main__: no file, no module spec

    class NotebookNet(torch.nn.Linear):
        pass

    NotebookNet.__module__, NotebookNet.__qualname__ = "__main__", "NotebookNet"
    notebook.NotebookNet = NotebookNet
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    with pytest.raises(ConfigError) as err:
        check_spawnable(NotebookNet(4, 2), 2)
    message = err.value.errors[0]["message"]
    assert "NotebookNet" in message and ".py file" in message and "devices=1" in message


def test_a_script_main_can_carry_its_classes(monkeypatch):
    import torch

    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/train.py"       # spawn re-imports a script's main module

    class ScriptNet(torch.nn.Linear):
        pass

    ScriptNet.__module__, ScriptNet.__qualname__ = "__main__", "ScriptNet"
    script.ScriptNet = ScriptNet
    monkeypatch.setitem(sys.modules, "__main__", script)
    model = ScriptNet(4, 2)
    data = check_spawnable(model, 2)
    # What a rank receives rebuilds the script's own class with the same weights.
    import io

    rebuilt = torch.load(io.BytesIO(data), weights_only=False)
    assert type(rebuilt) is ScriptNet
    assert torch.equal(rebuilt.weight, model.weight) and torch.equal(rebuilt.bias, model.bias)


def test_the_strongest_request_of_any_rank_wins():
    world = 4
    assert decode(sum(encode(r, world) for r in [RUN] * 4), world) == RUN
    assert decode(sum(encode(r, world) for r in [RUN, PAUSE, RUN, RUN]), world) == PAUSE
    assert decode(sum(encode(r, world) for r in [PAUSE] * 4), world) == PAUSE
    assert decode(sum(encode(r, world) for r in [PAUSE, PAUSE, STOP, PAUSE]), world) == STOP


@pytest.mark.parametrize("n, batch_size, world", [(961, 32, 2), (100, 8, 4), (5, 4, 4), (64, 64, 2)])
def test_ranks_share_each_global_batch_without_overlap(n, batch_size, world):
    from trainer.distributed.torch_ddp import shard_positions

    shards = [shard_positions(n, batch_size, r, world) for r in range(world)]
    batches = -(-n // batch_size)
    for positions, offsets, sizes in shards:
        assert len(offsets) == batches + 1 and len(sizes) == batches      # equal batch counts
    for b in range(batches):
        parts = [positions[offsets[b]:offsets[b + 1]] for positions, offsets, _ in shards]
        assert sorted(np.concatenate(parts)) == list(range(b * batch_size, min(n, (b + 1) * batch_size)))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


# ---------------------------------------------------------------------- two processes on the CPU

@slow
def test_two_processes_train_like_one_on_the_same_global_batch(uneven_df, tmp_path):
    config = settings(epochs=8, learning_rate=0.02, learning_rate_scheduler="plateau", patience=0, factor=0.5,
                      early_stopping=True, early_stopping_patience=2, min_delta=0.02)
    single = Trainer({**config, "output_path": str(tmp_path / "one")}, uneven_df).fit()
    events, threads = [], set()

    def record(event, data):
        events.append(event)
        threads.add(threading.get_ident())

    multi = Trainer({**config, "devices": 2, "output_path": str(tmp_path / "two")}, uneven_df, callbacks=[record])
    assert isinstance(multi, Trainer) and "2 processes" in multi.device_name
    multi.fit()

    assert single.state == TrainingState.EARLY_STOPPED      # the decisions under test happen
    assert len({h["learning_rate"] for h in single.history}) > 1
    assert multi.state == single.state and multi.reason == single.reason, multi.reason
    assert_same_training(multi.history, single.history)
    assert multi.best_metrics["epoch"] == single.best_metrics["epoch"]
    assert multi.progress()["current_epoch"] == len(multi.history)
    # Rank 0 alone reported: one epoch_end per epoch, all on this (the event loop's) thread.
    assert events.count("epoch_end") == len(multi.history) and events.count("train_end") == 1
    assert threads == {threading.get_ident()}
    # ... and wrote the same checkpoints and artifacts as one process.
    names = lambda d: sorted(p.name for p in (d / "checkpoints").iterdir())
    assert names(tmp_path / "two") == names(tmp_path / "one")
    assert multi.artifacts_path == tmp_path / "two"
    saved = load_model(tmp_path / "two").predict_proba(uneven_df)
    in_kernel = TrainedModel.from_run(multi).predict_proba(uneven_df)      # the weights came back
    np.testing.assert_allclose(saved, in_kernel, atol=1e-6)
    np.testing.assert_allclose(saved, load_model(tmp_path / "one").predict_proba(uneven_df), atol=1e-3)


async def _until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@slow
def test_pause_resume_and_stop_reach_every_rank(clf_df, tmp_path):
    out = tmp_path / "run"
    config = settings(devices=2, epochs=60, batch_size=8, output_path=str(out))
    states = []

    async def drive() -> Trainer:
        run = Trainer(config, clf_df, callbacks=[lambda e, d: states.append(d["new"]) if e == "state_change" else None])
        run.start()
        await _until(lambda: run.current_epoch >= 1)
        run.pause()
        await _until(lambda: run.state == TrainingState.PAUSED)
        where = (run.current_epoch, run.batch)
        await asyncio.sleep(1.0)
        assert (run.state, run.current_epoch, run.batch) == (TrainingState.PAUSED, *where)
        run.resume()
        await _until(lambda: (run.current_epoch, run.batch) != where)
        assert run.state == TrainingState.RUNNING
        run.stop()
        await asyncio.wait_for(run.wait(), 120)
        return run

    run = asyncio.run(drive())
    assert run.state == TrainingState.STOPPED and run.reason.startswith("stopped by the user"), run.reason
    assert states == ["running", "paused", "running", "stopped"]
    assert (out / "metadata.json").exists()

    # The stopped run continues from rank 0's checkpoint, again on two processes, and ends where an
    # uninterrupted single process does: pausing and stopping changed nothing.
    epochs = run.current_epoch + 1
    resumed = Trainer.from_checkpoint(out, clf_df, epochs=epochs).fit()
    assert resumed.state == TrainingState.COMPLETED, resumed.reason
    straight = Trainer(settings(epochs=epochs, batch_size=8), clf_df).fit()
    assert_same_training(resumed.history, straight.history)


@slow
def test_a_failing_rank_fails_the_run_with_its_message_and_advice(clf_df):
    from tests.trainer.ddp_models import FailsOnRank

    run = Trainer(settings(devices=2, epochs=5), clf_df, model=FailsOnRank(4, 2))
    started = time.monotonic()
    run.fit()
    assert run.state == TrainingState.FAILED
    assert "rank 1 of 2 failed" in run.reason and "out of memory" in run.reason, run.reason
    assert "16 samples per step" in run.reason and "batch_size=16" in run.reason and run.error == run.reason
    assert time.monotonic() - started < 120      # the waiting rank was ended, not left hanging


@slow
def test_a_killed_rank_is_reported_and_the_others_are_ended(clf_df):
    from tests.trainer.ddp_models import DiesOnRank

    run = Trainer(settings(devices=2, epochs=5), clf_df, model=DiesOnRank(4, 2))
    assert run.fit().state == TrainingState.FAILED
    assert "rank 1 of 2 exited unexpectedly (killed by SIGKILL" in run.reason, run.reason
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name.startswith("epoch-widgets-rank")]


@slow
def test_a_failure_in_the_launcher_after_the_start_says_what_it_was_and_ends_the_ranks(clf_df):
    import multiprocessing

    from trainer.distributed.launcher import LaunchedRun

    class BreaksAtEpoch1(LaunchedRun):
        async def _handle(self, msg):
            if msg.get("event") == "epoch_end":
                raise RuntimeError("the launcher broke at epoch 1")
            return await super()._handle(msg)

    run = BreaksAtEpoch1(settings(devices=2, epochs=1000), clf_df)
    run.fit()
    assert run.state == TrainingState.FAILED and run.wait_until_done(0)
    assert run.reason == run.error == "RuntimeError: the launcher broke at epoch 1", run.reason
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("epoch-widgets-rank")]


# ---------------------------------------------------------------------- torchrun

@slow
def test_the_rank_entry_point_runs_under_torchrun(clf_df, tmp_path):
    config = settings(epochs=3, output_path=str(tmp_path / "out"))
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    clf_df.to_csv(tmp_path / "data.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "trainer.distributed", "--config", str(tmp_path / "cfg.json"), "--data", str(tmp_path / "data.csv")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "completed: finished all 3 epochs" in done.stdout and done.stdout.count("epoch    1/3") == 1
    saved = json.loads((tmp_path / "out" / "history.json").read_text())
    single = Trainer({k: v for k, v in config.items() if k != "output_path"}, clf_df).fit()
    assert_same_training(saved["history"], single.history)


def test_a_rank_ends_with_its_code_and_its_output_flushed_without_interpreter_teardown():
    # exit_rank skips teardown (where torch's leftover C++ objects can abort a finished rank), so
    # it must flush what Python still buffers: the final progress lines a pipe would otherwise lose.
    script = ("import atexit, logging, sys\n"
              "from trainer.distributed.rank import exit_rank\n"
              "atexit.register(lambda: print('teardown ran'))\n"
              "logging.basicConfig(format='%(message)s')\n"
              "print('progress line'); print('to stderr', file=sys.stderr); logging.warning('logged')\n"
              "exit_rank(3)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stdout == "progress line\n" and "to stderr" in done.stderr and "logged" in done.stderr


@slow
def test_the_rank_entry_point_explains_itself_outside_torchrun(tmp_path):
    done = subprocess.run([sys.executable, "-m", "trainer.distributed", "--config", str(tmp_path / "none.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "torchrun --standalone --nproc-per-node 2" in done.stderr


# ---------------------------------------------------------------------- TensorFlow

TF_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    import numpy as np
    from trainer import Trainer, datasets
    df = datasets.make_classification(1201, seed=1)
    config = json.loads(sys.argv[1])
    multi = Trainer({**config, "devices": 2}, df)     # before TensorFlow starts: 2 logical CPUs
    described = multi.device_name
    multi.fit()
    single = Trainer(config, df).fit()
    weights = max(float(np.abs(a.numpy() - b.numpy()).max())
                  for a, b in zip(single.backend.model.weights, multi.backend.model.weights))

    async def control():
        run = Trainer({**config, "devices": 2, "epochs": 200, "batch_size": 8, "dropout_rate": 0.2}, df)
        run.start()
        while run.current_epoch < 1:
            await asyncio.sleep(0.01)
        run.pause()
        while run.state.value != "paused":
            await asyncio.sleep(0.01)
        where = (run.current_epoch, run.batch)
        await asyncio.sleep(0.5)
        held = where == (run.current_epoch, run.batch)
        run.resume()
        while (run.current_epoch, run.batch) == where:
            await asyncio.sleep(0.01)
        run.stop()
        await run.wait()
        return held, run.state.value

    held, final = asyncio.run(control())
    print("RESULT", json.dumps({"described": described, "multi": multi.history, "single": single.history,
                                "weights": weights, "held": held, "final": final, "state": multi.state.value}))
""")


@slow
@pytest.mark.tensorflow
def test_tensorflow_mirrored_strategy_on_two_logical_cpus_trains_like_one_device(tmp_path):
    config = settings(backend="tensorflow", learning_rate_scheduler="step", step_size=1, gamma=0.5)
    done = subprocess.run([sys.executable, "-c", TF_SCRIPT, json.dumps(config)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["described"] == "MirroredStrategy over 2 CPU devices" and result["state"] == "completed"
    assert_same_training(result["multi"], result["single"])
    assert result["weights"] < 1e-4
    assert result["held"] and result["final"] == "stopped"


@slow
@pytest.mark.tensorflow
def test_tensorflow_cannot_add_cpu_replicas_once_started(tmp_path):
    pytest.importorskip("tensorflow")
    script = textwrap.dedent("""
        import tensorflow as tf
        from trainer import ConfigError, Trainer, datasets
        tf.constant(1.0)     # TensorFlow's runtime starts with one CPU device
        try:
            Trainer({"backend": "tensorflow", "device": "cpu", "devices": 2, "target_column": "label"},
                    datasets.make_classification(200, seed=1))
        except ConfigError as exc:
            print("MESSAGE", exc.errors[0]["field"], exc.errors[0]["message"])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "MESSAGE devices" in done.stdout and "restart the kernel" in done.stdout, done.stderr[-2000:]


# ---------------------------------------------------------------------- programs the ranks cannot import

UNGUARDED_SCRIPT = textwrap.dedent("""
    from trainer import ConfigError, Trainer, datasets
    df = datasets.make_classification(30000, seed=1)
    try:
        run = Trainer({"backend": "torch", "device": "cpu", "devices": 2, "seed": 0, "epochs": 2,
                       "target_column": "label"}, df)
    except ConfigError as exc:
        print("REFUSED", exc.errors[0]["field"], exc.errors[0]["message"])
    else:
        run.fit()
        print("STATE", run.state.value, run.reason)
""")


@slow
def test_a_script_on_standard_input_is_refused_before_any_process_starts(tmp_path):
    # Spawned ranks re-import the main module; "<stdin>" cannot be, and the launch used to hang.
    done = subprocess.run([sys.executable, "-"], input=UNGUARDED_SCRIPT, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert "REFUSED devices" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "'<stdin>', not a file" in done.stdout and 'if __name__ == "__main__":' in done.stdout


@slow
def test_ranks_that_die_before_reporting_fail_the_run_within_seconds_saying_why(tmp_path):
    # A rank that dies while starting (here: it re-runs a script that has no main guard, which
    # refuses to train inside a rank) fails the run at once, naming the fix.
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        from trainer import Trainer, datasets
        run = Trainer({"backend": "torch", "device": "cpu", "devices": 2, "seed": 0, "epochs": 2,
                       "target_column": "label"}, datasets.make_classification(30000, seed=1))
        run.fit()
        print("STATE", run.state.value, run.reason)
    """))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.stdout.count("STATE") == 1, done.stdout + done.stderr[-2000:]     # no rank trained on its own
    assert "STATE failed rank" in done.stdout and "exited before it started training (exit code 1)" in done.stdout
    assert 'under `if __name__ == "__main__":`' in done.stdout
    assert time.monotonic() - started < 120
