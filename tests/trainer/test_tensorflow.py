"""What only the TensorFlow backend has: Keras-format artifacts (loaded in a fresh process, by
``trainer.load_model`` and by plain ``keras.models.load_model``), a user's own ``keras.Model``,
the ``mixed_float16`` policy, the compiled loop's stop flag, and refusing Keras on another backend.

The behaviour both backends share runs in the parametrised core tests. TensorFlow is imported
inside the tests, not at collection, so ``-m "not tensorflow"`` stays fast.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from trainer import ConfigError, StateError, Trainer, TrainingState, load_model
from trainer.data import windows

pytestmark = pytest.mark.tensorflow

REPO = Path(__file__).resolve().parents[2]
SEQUENCE = {"feature_columns": ["x", "noise"], "sequence_length": 6, "hidden_units": [16],
            "dropout_rate": 0.0, "learning_rate": 0.01, "epochs": 4}


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    pytest.importorskip("tensorflow")
    import trainer.backends.tf_backend  # noqa: F401  (refuses Keras on another backend)
    return pytest.importorskip("keras")


@pytest.fixture
def backend() -> str:
    """This module is about one backend: overrides conftest's parametrised fixture."""
    return "tensorflow"


@pytest.fixture
def tf_config(base_config):
    return base_config


def samples(model, df) -> np.ndarray:
    """The arrays a saved Keras model takes: preprocessed rows, or windows of them."""
    x = model.preprocessor.transform(df)
    window = model.preprocessor.sequence_length
    return x if window is None else np.ascontiguousarray(windows(x, window))


# ---------------------------------------------------------------------- artifacts

FRESH_PROCESS = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    cases = json.loads(sys.argv[1])

    # 1. Plain Keras, in a process that never imports this package.
    import keras
    for case in cases:
        model = keras.models.load_model(os.path.join(case["path"], "model.keras"))
        arrays = np.load(case["arrays"])
        np.testing.assert_allclose(model.predict(arrays["samples"], verbose=0), arrays["outputs"], rtol=1e-4, atol=1e-4)
    assert "trainer" not in sys.modules

    # 2. trainer.load_model, predicting on the raw DataFrame.
    import pandas as pd
    from trainer import load_model
    for case in cases:
        trained = load_model(case["path"])
        predicted = trained.predict(pd.read_pickle(case["data"]))
        expected = np.load(case["arrays"], allow_pickle=True)["predictions"]
        if trained.task == "classification":
            assert list(predicted) == list(expected), (case["path"], predicted[:10], expected[:10])
        else:
            np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-4)
    print("ok", len(cases))
""")


@pytest.mark.slow
def test_artifacts_load_in_a_fresh_process_with_load_model_and_with_plain_keras(keras, tf_config, clf_df, seq_df, tmp_path):
    runs = {
        "mlp": (tf_config(epochs=2, output_path=str(tmp_path / "mlp")), clf_df),
        "gru_regression": (tf_config(model_type="gru", target_column="y", output_path=str(tmp_path / "gru"), **SEQUENCE), seq_df),
        "cnn_mixed_precision": (tf_config(model_type="cnn", mixed_precision=True, output_path=str(tmp_path / "cnn"), **SEQUENCE), seq_df),
    }
    cases = []
    for name, (cfg, df) in runs.items():
        run = Trainer(cfg, df).fit()
        assert run.state == TrainingState.COMPLETED, run.reason
        assert (run.artifacts_path / "model.keras").is_file()
        trained = load_model(run.artifacts_path)
        arrays, data = tmp_path / f"{name}.npz", tmp_path / f"{name}.pkl"
        x = samples(trained, df)
        outputs = run.backend.predict_outputs(x)
        np.testing.assert_allclose(trained.decision_function(df), outputs, rtol=1e-5, atol=1e-5)
        np.savez(arrays, samples=x, outputs=outputs, predictions=trained.predict(df))
        df.to_pickle(data)
        cases.append({"path": str(run.artifacts_path), "arrays": str(arrays), "data": str(data)})
    meta = json.loads((tmp_path / "cnn" / "metadata.json").read_text())
    assert meta["backend"] == "tensorflow" and meta["model"]["weights"] == "model.keras"
    assert meta["model"]["mixed_precision"] is True

    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps(cases)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(f"ok {len(cases)}")


# ---------------------------------------------------------------------- a user's own model

@pytest.fixture(scope="module")
def tiny_net(keras):
    @keras.saving.register_keras_serializable(package="epoch_widgets_tests")
    class TinyNet(keras.Model):
        """A subclassed model with dropout, serialisable through get_config."""

        def __init__(self, units: int = 16, n_outputs: int = 2, **kwargs):
            super().__init__(**kwargs)
            self.units, self.n_outputs = units, n_outputs
            self.hidden = keras.layers.Dense(units, activation="relu")
            self.drop = keras.layers.Dropout(0.2)
            self.out_layer = keras.layers.Dense(n_outputs)

        def call(self, x, training=False):
            return self.out_layer(self.drop(self.hidden(x), training=training))

        def get_config(self):
            return {**super().get_config(), "units": self.units, "n_outputs": self.n_outputs}

    return TinyNet


def test_a_users_keras_model_trains_and_its_artifacts_load(keras, tiny_net, tf_config, clf_df, tmp_path):
    run = Trainer(tf_config(epochs=6, output_path=str(tmp_path / "own")), clf_df, model=tiny_net()).fit()
    assert run.state == TrainingState.COMPLETED
    assert list(run.history[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                    "learning_rate", "time_per_epoch"]
    assert run.history[-1]["val_accuracy"] > 0.8
    meta = json.loads((tmp_path / "own" / "metadata.json").read_text())["model"]
    assert meta["custom_model"] and meta["module_class"].endswith("TinyNet") and "spec" not in meta
    expected = run.backend.predict_outputs(samples(load_model(tmp_path / "own"), clf_df))
    np.testing.assert_allclose(load_model(tmp_path / "own").decision_function(clf_df), expected, rtol=1e-5, atol=1e-5)
    # An instance of the class takes the saved weights too.
    np.testing.assert_allclose(load_model(tmp_path / "own", model=tiny_net()).decision_function(clf_df), expected,
                               rtol=1e-5, atol=1e-5)


def test_seeded_runs_of_a_users_model_share_their_dropout_masks(keras, tiny_net, tf_config, clf_df):
    # Same initial weights (copied) and same run seed: the dropout generators are re-seeded from
    # the run seed, so the histories agree.
    first = tiny_net()
    first(np.zeros((1, 4), np.float32))
    second = tiny_net()
    second(np.zeros((1, 4), np.float32))
    second.set_weights(first.get_weights())
    a = Trainer(tf_config(epochs=2), clf_df, model=first).fit()
    b = Trainer(tf_config(epochs=2), clf_df, model=second).fit()
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_per_epoch"} for e in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)


def test_a_model_keras_cannot_save_whole_keeps_its_weights(keras, tf_config, clf_df, tmp_path):
    class Configless(keras.Model):
        """Takes a function in __init__ and has no get_config: Keras cannot serialise it."""

        def __init__(self, activation):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation=activation)
            self.out_layer = keras.layers.Dense(2)

        def call(self, x):
            return self.out_layer(self.hidden(x))

    relu = lambda t: keras.ops.relu(t)  # noqa: E731
    run = Trainer(tf_config(epochs=1, output_path=str(tmp_path / "own")), clf_df, model=Configless(relu)).fit()
    assert run.state == TrainingState.COMPLETED, run.reason
    meta = json.loads((tmp_path / "own" / "metadata.json").read_text())["model"]
    assert meta["weights"] == "model.weights.h5" and meta["weights_only"]
    with pytest.raises(RuntimeError, match=r"model=YourModel"):
        load_model(tmp_path / "own")
    reloaded = load_model(tmp_path / "own", model=Configless(relu))
    expected = run.backend.predict_outputs(samples(reloaded, clf_df))
    np.testing.assert_allclose(reloaded.decision_function(clf_df), expected, rtol=1e-5, atol=1e-5)


def test_a_users_keras_model_on_windows(keras, tf_config, seq_df):
    model = keras.Sequential([keras.Input((6, 2)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    run = Trainer(tf_config(model_type="lstm", **{**SEQUENCE, "epochs": 6}), seq_df, model=model).fit()
    assert run.backend.model is model                       # trained in place, not replaced
    assert run.history[-1]["val_accuracy"] > 0.75


def test_an_error_inside_the_compiled_loop_fails_the_run_and_the_process_survives(keras, tf_config, clf_df):
    import tensorflow as tf

    class Exploding(keras.Model):
        """Learns like a linear model until training call ``after``, then fails inside the graph."""

        def __init__(self, after: int):
            super().__init__()
            self.linear = keras.layers.Dense(2)
            self.after = after
            self.calls = tf.Variable(0, trainable=False)

        def call(self, x, training=False):
            if training:
                self.calls.assign_add(1)
                tf.debugging.assert_less_equal(self.calls, self.after, message="simulated failure inside call")
            return self.linear(x)

    batches_per_epoch = -(-int(len(clf_df) * 0.8) // 32)
    run = Trainer(tf_config(epochs=5), clf_df, model=Exploding(after=2 * batches_per_epoch + 3)).fit()
    assert run.state == TrainingState.FAILED
    assert run.reason.startswith("InvalidArgumentError: assertion failed: [simulated failure inside call]")
    assert "Graph execution error" not in run.reason and len(run.reason) < 400     # TF's trace, cut short
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert Trainer(tf_config(epochs=1), clf_df).fit().state == TrainingState.COMPLETED


def test_a_wrong_model_is_refused_naming_the_problem(keras, tf_config, clf_df):
    torch = pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="expected a keras.Model.*backend='torch'") as info:
        Trainer(tf_config(), clf_df, model=torch.nn.Linear(4, 2))
    assert info.value.errors[0]["field"] == "model"
    three_outputs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ConfigError, match=r"returned shape \(2, 3\); expected \(batch, 2\)"):
        Trainer(tf_config(), clf_df, model=three_outputs)
    wrong_input = keras.Sequential([keras.Input((7,)), keras.layers.Dense(2)])
    with pytest.raises(ConfigError, match="failed on an input batch of shape"):
        Trainer(tf_config(), clf_df, model=wrong_input)


# ---------------------------------------------------------------------- mixed precision

def test_mixed_precision_computes_in_float16_with_a_float32_head_and_learns(keras, tf_config, clf_df):
    run = Trainer(tf_config(epochs=6, mixed_precision=True), clf_df).fit()
    assert run.state == TrainingState.COMPLETED, run.reason
    model = run.backend.model
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert {layer.dtype_policy.name for layer in dense[:-1]} == {"mixed_float16"}
    assert dense[-1].dtype_policy.name == "float32"
    assert isinstance(run.backend.optimizer, keras.optimizers.LossScaleOptimizer)
    assert run.history[-1]["val_accuracy"] > 0.85


def test_mixed_precision_with_a_float32_user_model_is_refused(keras, tiny_net, tf_config, clf_df):
    with pytest.raises(ConfigError, match="mixed_float16") as info:
        Trainer(tf_config(mixed_precision=True), clf_df, model=tiny_net())
    assert info.value.errors[0]["field"] == "mixed_precision"


# ---------------------------------------------------------------------- the compiled loop

def test_the_compiled_loop_ends_after_the_batch_in_progress(keras, tf_config):
    from trainer.datasets import make_classification
    run = Trainer(tf_config(batch_size=1, dropout_rate=0.0), make_classification(2500, seed=3))
    backend = run.backend
    n_batches = backend.begin_epoch(np.arange(len(run.data.train_index)))
    far = time.perf_counter() + 600

    # Already interrupted, or past the deadline: exactly one batch, as the Backend contract says.
    assert backend.train_batches(0, n_batches, far, lambda: True) == 1
    assert backend.train_batches(1, n_batches, time.perf_counter() - 1, lambda: False) == 2

    # Interrupted from another thread mid-call: the call returns after the batch then in progress.
    steps = backend.optimizer.iterations
    seen_after_interrupt = []

    def interrupter():
        while int(steps.numpy()) < 20:
            time.sleep(0.0005)
        backend.interrupt()
        seen_after_interrupt.append(int(steps.numpy()))

    thread = threading.Thread(target=interrupter)
    thread.start()
    ended = backend.train_batches(2, n_batches, far, lambda: False)
    thread.join()
    assert 20 <= ended <= seen_after_interrupt[0] + 1 < n_batches
    assert int(steps.numpy()) == ended                 # no batch ran after the call returned
    assert backend.train_batches(ended, ended + 3, far, lambda: False) == ended + 3   # the flag was cleared


def test_concurrent_seeded_runs_do_not_disturb_each_other(keras, tf_config, clf_df):
    # Nothing global is seeded or drawn from: two runs sharing the kernel's loop, one of them
    # paused and resumed repeatedly, each repeat their run alone.
    configs = [tf_config(epochs=2, dropout_rate=0.3, seed=seed) for seed in (1, 2)]
    alone = [Trainer(cfg, clf_df).fit().history for cfg in configs]

    async def together():
        runs = [Trainer(cfg, clf_df) for cfg in configs]
        loop = asyncio.get_running_loop()

        def resume():
            with contextlib.suppress(StateError):      # the pause may have outlived the run
                runs[0].resume()

        def pause_briefly(event, data):
            if event == "batch_end" and runs[0].state == TrainingState.RUNNING:
                runs[0].pause()
                loop.call_later(0.005, resume)

        runs[0].add_callback(pause_briefly)
        for run in runs:
            run.start()
        return [(await run.wait()).history for run in runs]

    strip = lambda h: [{k: v for k, v in e.items() if k != "time_per_epoch"} for e in h]  # noqa: E731
    assert [strip(h) for h in asyncio.run(together())] == [strip(h) for h in alone]


# ---------------------------------------------------------------------- installation problems

@pytest.mark.slow
def test_keras_configured_for_another_backend_is_refused_clearly(tmp_path):
    pytest.importorskip("torch")
    script = textwrap.dedent("""
        import keras   # with KERAS_BACKEND=torch
        from trainer import Trainer, datasets
        from trainer.backends import BackendUnavailable
        try:
            Trainer({"backend": "tensorflow", "target_column": "label", "epochs": 1}, datasets.make_classification(200))
        except BackendUnavailable as exc:
            print(exc)
        run = Trainer({"backend": "torch", "target_column": "label", "epochs": 1, "seed": 0}, datasets.make_classification(200)).fit()
        print(run.state.value)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    message, state = done.stdout.strip().splitlines()[-2:]
    assert "Keras is configured for 'torch'" in message and "KERAS_BACKEND=tensorflow" in message
    assert state == "completed"
