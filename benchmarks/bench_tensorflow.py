"""TensorFlow backend throughput against Keras's own ``model.fit``, with the PyTorch backend beside it.

Same data and model as DESIGN.md's peers table (``shared/bench/peers.py``, keras mode): an MLP
20->128->64->32->2 with dropout 0.2, Adam 1e-3, synthetic linearly separable rows. Each figure is
training samples per second over the median epoch after the first (validation included, as in
``fit``'s epoch), measured in this one process, one trainer after the other, so the ratio compares
like with like on a noisy machine.

    python benchmarks/bench_tensorflow.py            # env: ROWS (100000), EPOCHS (4), BATCH_SIZES (32,256)

Exit status 1 when our TensorFlow backend is slower than ``model.fit`` (target ratio >= 1.0).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trainer.datasets import make_benchmark  # noqa: E402

ROWS = int(os.environ.get("ROWS", 100_000))
EPOCHS = int(os.environ.get("EPOCHS", 4))
BATCH_SIZES = [int(b) for b in os.environ.get("BATCH_SIZES", "32,256").split(",")]
F = 20
HIDDEN = [128, 64, 32]
TARGET = 1.0


def make_data() -> tuple[np.ndarray, np.ndarray]:
    df = make_benchmark(ROWS, F)
    return df.drop(columns="label").to_numpy(copy=True), df["label"].to_numpy(copy=True)


def median_rate(n_train: int, epoch_seconds: list[float]) -> float:
    timed = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds   # the first epoch traces/compiles
    return n_train / statistics.median(timed)


def keras_fit(x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """peers.py's keras mode: the model.fit a Keras user writes."""
    import keras
    keras.utils.set_random_seed(0)
    n_train = int(len(x) * 0.8)
    model = keras.Sequential([keras.Input((F,))] + [layer for u in HIDDEN for layer in
                                                    (keras.layers.Dense(u, activation="relu"), keras.layers.Dropout(0.2))]
                             + [keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            times.append(time.perf_counter() - self.t0)

    model.fit(x[:n_train], y[:n_train], batch_size=batch_size, epochs=EPOCHS,
              validation_data=(x[n_train:], y[n_train:]), callbacks=[Timer()], verbose=0)
    return median_rate(n_train, times)


def ours(df: pd.DataFrame, backend: str, batch_size: int) -> float:
    """Our Trainer on ``backend`` with the same model and recipe."""
    from trainer import Trainer
    config = {"backend": backend, "device": "cpu", "seed": 0, "epochs": EPOCHS, "batch_size": batch_size,
              "hidden_units": HIDDEN, "dropout_rate": 0.2, "learning_rate": 1e-3, "optimizer": "adam",
              "learning_rate_scheduler": "none", "early_stopping": False, "validation_split": 0.2,
              "target_column": "target"}
    run = Trainer(config, df).fit()
    if run.state.value != "completed":
        raise RuntimeError(f"{backend} run ended {run.state.value}: {run.reason}")
    return median_rate(len(run.data.train_index), [e["time_per_epoch"] for e in run.history])


def main() -> int:
    x, y = make_data()
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(F)]).assign(target=y)
    print(f"MLP {F}->{'->'.join(map(str, HIDDEN))}->2, {ROWS} rows (80% train), {EPOCHS} epochs, "
          f"median epoch after the first; train samples/s")
    print(f"{'batch':>6} {'keras fit':>11} {'ours (tf)':>11} {'ratio':>7} {'ours (torch)':>13}")
    ok = True
    for bs in BATCH_SIZES:
        fit = keras_fit(x, y, bs)
        tf_rate = ours(df, "tensorflow", bs)
        torch_rate = ours(df, "torch", bs)
        ratio = tf_rate / fit
        ok &= ratio >= TARGET
        print(f"{bs:>6} {fit:>11,.0f} {tf_rate:>11,.0f} {ratio:>7.2f} {torch_rate:>13,.0f}", flush=True)
    print(f"target: ours (tf) / keras fit >= {TARGET:.1f} at every batch size: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
