"""The built-in Keras architectures, mirroring ``torch_models``: MLP on rows; CNN, LSTM and GRU on
(batch, time, features).

Only Keras's own layers are used, so a saved ``model.keras`` loads with plain
``keras.models.load_model`` in a process that never imports this package. Every initialiser and
dropout layer gets its own seed derived from the run seed: no global random state is read or
changed, so concurrent runs in one kernel build and train independently.
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np

MIXED_POLICY = "mixed_float16"


def seed_stream(seed: int) -> Callable[[], int]:
    """Distinct, reproducible 31-bit seeds derived from ``seed``, one per call."""
    count = 0

    def next_seed() -> int:
        nonlocal count
        count += 1
        return int(np.random.SeedSequence([seed, count]).generate_state(1)[0] & 0x7FFFFFFF)

    return next_seed


def reseed_dropout(model: keras.Model, seed: int) -> None:
    """Give each SeedGenerator of a user's model (its dropout layers') a state derived from the run seed."""
    seeds = seed_stream(seed)
    for layer in model._flatten_layers():
        for generator in getattr(layer, "_seed_generators", ()):
            generator.state.assign(np.array([seeds(), 0], dtype=generator.state.dtype))


def dropout_layers(model: keras.Model) -> list[keras.layers.Dropout]:
    """Every dropout layer of ``model`` (a steered run changes their rate)."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dropout)]


def build_model(spec: dict[str, Any], seed: int, mixed_precision: bool = False) -> keras.Model:
    """Build from a spec: model_type, n_features, n_outputs, hidden_units, dropout_rate,
    sequence_length (for cnn/lstm/gru). With ``mixed_precision`` the hidden layers use the
    ``mixed_float16`` policy and the output layer stays float32, as Keras's guide advises."""
    kind = spec["model_type"]
    n_features, n_outputs = int(spec["n_features"]), int(spec["n_outputs"])
    units = [int(u) for u in spec["hidden_units"]]
    rate = float(spec["dropout_rate"])
    seeds = seed_stream(seed)
    dtype = MIXED_POLICY if mixed_precision else "float32"
    L = keras.layers

    def glorot() -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=seeds())

    def dropout(h: Any, force: bool = False) -> Any:
        # torch's MLP and ConvNet skip a zero-rate dropout; its RecurrentNet always has one.
        if rate > 0 or force:
            return L.Dropout(rate, seed=seeds(), dtype=dtype)(h)
        return h

    if kind == "mlp":
        inputs = keras.Input((n_features,), name="features")
        h = inputs
        for u in units:
            h = L.Dense(u, activation="relu", kernel_initializer=glorot(), dtype=dtype)(h)
            h = dropout(h)
    elif kind == "cnn":
        window = int(spec["sequence_length"])
        inputs = keras.Input((window, n_features), name="windows")
        h = inputs
        for u in units:
            h = L.Conv1D(u, 3, padding="same", activation="relu", kernel_initializer=glorot(), dtype=dtype)(h)
            h = dropout(h)
        # As torch's ConvNet: the head sees the whole flattened window, so any step can matter.
        h = L.Flatten(dtype=dtype)(h)
    elif kind in ("lstm", "gru"):
        window = int(spec["sequence_length"])
        inputs = keras.Input((window, n_features), name="windows")
        rnn = L.LSTM if kind == "lstm" else L.GRU
        h = inputs
        for i, u in enumerate(units):
            # Only the last step feeds the head, so the last layer returns just that step.
            h = rnn(u, return_sequences=i < len(units) - 1, kernel_initializer=glorot(),
                    recurrent_initializer=keras.initializers.Orthogonal(seed=seeds()), dtype=dtype)(h)
            h = dropout(h, force=True)
    else:
        raise ValueError(f"unknown model_type {kind!r}; choose one of mlp, cnn, lstm, gru")
    outputs = L.Dense(n_outputs, kernel_initializer=glorot(), dtype="float32", name="head")(h)
    return keras.Model(inputs, outputs, name=f"epoch_widgets_{kind}")
