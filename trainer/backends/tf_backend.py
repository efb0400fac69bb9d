"""TensorFlow backend (Keras 3 on TensorFlow): the PyTorch backend's models, metrics and semantics.

Speed: one compiled function trains a whole slice of batches in a ``tf.while_loop`` whose condition
reads the batch index, the slice deadline (``tf.timestamp``) and a stop flag (a ``tf.Variable``).
:meth:`TFBackend.interrupt` sets the flag from any thread the moment a pause or stop is requested,
so a pause still lands after the batch in progress while Python is entered once per slice, not per
batch. Metrics are summed in device variables and read once per slice.

Reproducibility: every initialiser and dropout layer of a built-in model has its own seed derived
from the run seed, and dropout draws from ``SeedGenerator`` state that lives in the model's own
variables. Nothing global (TF's global seed, Keras's global SeedGenerator, the global dtype policy)
is read or changed, so a paused and resumed seeded run repeats an uninterrupted one batch for batch,
and concurrent runs in one kernel do not disturb each other. A user's own ``keras.Model`` keeps its
initial weights; its dropout generators are re-seeded from the run seed, but random ops that draw
from Keras's global generator (``seed=None`` inside its ``call``) stay shared and unseeded.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..config import ConfigError, TrainingConfig
from ..data import PreparedData
from .base import Backend, BackendUnavailable

# Keras picks its backend once, at first import; only fill in the choice if the user made none.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

if not keras.__version__.startswith(("3.", "4.")):
    raise BackendUnavailable(
        f"backend 'tensorflow' needs Keras 3, but keras {keras.__version__} is installed. "
        f"Install it with: pip install 'keras>=3'")
if keras.backend.backend() != "tensorflow":
    raise BackendUnavailable(
        f"backend 'tensorflow' needs Keras running on TensorFlow, but Keras is configured for "
        f"{keras.backend.backend()!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}). Set "
        f"KERAS_BACKEND=tensorflow before anything imports keras (restart the kernel), or choose backend='torch'.")

from .tf_models import MIXED_POLICY, build_model, dropout_layers, reseed_dropout  # noqa: E402
from .tf_saving import (EVAL_CHUNK, arrays_to_bytes, assign_all, atomic_keras_save, bytes_to_arrays,  # noqa: E402
                        check_layout, json_bytes, load_predict_fn, predictor)

__all__ = ["TFBackend", "create", "load_predict_fn", "resolve_device"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_IDS = tf.TensorSpec([None], tf.int64)
_SCALAR_INT = tf.TensorSpec([], tf.int64)


def resolve_device(requested: str) -> str:
    """The TensorFlow device for a config's ``device`` ("auto", "cpu", "cuda", "cuda:N")."""
    if requested == "cpu":
        return "/CPU:0"
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    index = int(requested.split(":")[1]) if ":" in requested else 0
    if not gpus:
        built = "a CUDA build" if tf.test.is_built_with_cuda() else "a CPU-only build (tensorflow-cpu)"
        raise ConfigError.single("device", requested, f"TensorFlow sees no GPU ({built}); use device='cpu' or 'auto'")
    if index >= len(gpus):
        raise ConfigError.single("device", requested, f"only {len(gpus)} GPU(s) are visible to TensorFlow")
    return f"/GPU:{index}"


def _make_optimizer(name: str, lr: float) -> keras.optimizers.Optimizer:
    # torch's defaults, so both backends run the same recipe: eps 1e-8, AdamW decay 0.01.
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=0.01, epsilon=1e-8)
    return keras.optimizers.Adam(lr, epsilon=1e-8)


@contextlib.contextmanager
def _readable_errors() -> Iterator[None]:
    """Re-raise a TensorFlow runtime error with its message cut to what a user can act on."""
    try:
        yield
    except tf.errors.OpError as exc:
        short = _summarise(exc.message)
        try:
            error: Exception = type(exc)(exc.node_def, exc.op, short)
        except TypeError:
            error = RuntimeError(short)
        raise error from None


def _summarise(message: str) -> str:
    # "Graph execution error: Detected at node X defined at (most recent call last): File ...
    # <the error> [[{{node X}}]] [Op:...]": keep the error and the innermost line of user code.
    lines = [line for line in message.splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith("File ")]
    body = lines[frames[-1] + 1:] if frames else lines
    body = [re.sub(r"\s*\[Op:[^\]]*\]$", "", line) for line in body if not line.lstrip().startswith("[[")]
    text = " ".join(line.strip() for line in body if line.strip()) or lines[-1].strip()
    ours = (_PACKAGE_DIR, os.path.dirname(keras.__file__), os.path.dirname(tf.__file__), os.path.dirname(os.__file__))
    user_frames = [lines[i].strip() for i in frames if not any(d in lines[i] for d in ours)]
    if user_frames:
        text += f" (raised by {user_frames[-1]})"
    if "OOM" in text or "ResourceExhausted" in message:
        text = "out of memory: " + text
    return text


def _computes_in_float16(model: keras.Model) -> bool:
    return any(layer.compute_dtype == "float16" for layer in model._flatten_layers())


class TFBackend(Backend):
    name = "tensorflow"

    def __init__(self, config: TrainingConfig, data: PreparedData, seed: int, model: Optional[keras.Model] = None):
        super().__init__(config, data, seed, model)
        if model is not None and not isinstance(model, keras.Model):
            hint = " (a torch module needs backend='torch')" if type(model).__module__.startswith("torch") else ""
            raise ConfigError.single("model", type(model).__name__, f"expected a keras.Model for the tensorflow backend{hint}")
        self.device = resolve_device(config.device)
        pre = data.preprocessor
        self.classification = pre.task == "classification"
        self.batch_size = config.batch_size
        self.window = data.window
        self.custom_model = model is not None
        self.spec = {"model_type": config.model_type, "n_features": pre.n_features, "n_outputs": pre.n_outputs,
                     "hidden_units": list(config.hidden_units), "dropout_rate": config.dropout_rate,
                     "sequence_length": self.window}
        # A sample is a row (mlp) or the window of rows starting at its id; its target is the
        # window's last row. Batches are gathered inside the compiled loop, so nothing is copied per epoch.
        self._offset = 0 if self.window is None else self.window - 1
        with tf.device(self.device):
            self.x = tf.constant(data.x)
            self.y = tf.constant(data.y)
            self._steps = tf.range(self.window or 1, dtype=tf.int64)
            self.train_ids = tf.constant(data.train_index - self._offset, tf.int64)
            self.val_ids = tf.constant(data.val_index - self._offset, tf.int64)
            if model is None:
                self.model = build_model(self.spec, seed, config.mixed_precision)
            else:
                self.model = model
                reseed_dropout(model, seed)
            self._check_model_output()
            if config.mixed_precision and not _computes_in_float16(self.model):
                raise ConfigError.single("mixed_precision", True,
                                         "your keras.Model computes in float32; build its layers with dtype="
                                         f"'{MIXED_POLICY}' (keep the output layer float32), or set mixed_precision=False")
            inner = _make_optimizer(config.optimizer, config.learning_rate)
            # float16 activations need loss scaling so small gradients do not underflow.
            self.optimizer = (keras.optimizers.LossScaleOptimizer(inner) if _computes_in_float16(self.model) else inner)
            self.optimizer.build(self.model.trainable_variables)
            self._loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            self._score_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        with tf.device("/CPU:0"):
            # Read by the loop condition on the host, so checking it never waits for a GPU.
            self._stop = tf.Variable(False, trainable=False)
        self._compile()
        self._eval_fn = tf.function(self._eval_chunk, input_signature=[_IDS])
        self._predict_fn = predictor(self.model)
        self._epoch_ids = self.train_ids
        self._n = 0
        self._seen = 0

    # ------------------------------------------------------------------ helpers
    @property
    def device_name(self) -> str:
        if self.device.startswith("/GPU"):
            index = int(self.device.rsplit(":", 1)[1])
            gpu = tf.config.list_physical_devices("GPU")[index]
            name = tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
            return f"GPU:{index} ({name})"
        return "cpu"

    def _gather(self, ids: tf.Tensor) -> tf.Tensor:
        if self.window is None:
            return tf.gather(self.x, ids)
        return tf.gather(self.x, ids[:, None] + self._steps)

    def _targets(self, ids: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.y, ids + self._offset)

    def _check_model_output(self) -> None:
        probe = self._gather(self.train_ids[:2])
        want = self.spec["n_outputs"]
        try:
            out = self.model(probe, training=False)
        except Exception as exc:
            raise ConfigError.single("model", type(self.model).__name__,
                                     f"the model failed on an input batch of shape {tuple(probe.shape)} "
                                     f"({type(exc).__name__}: {exc})") from None
        shape = tuple(getattr(out, "shape", ()))
        ok = len(shape) == 2 and shape[1] == want or (want == 1 and len(shape) == 1)
        if not ok:
            raise ConfigError.single("model", type(self.model).__name__,
                                     f"the model returned shape {shape}; expected (batch, {want})")

    def _loss_terms(self, out: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Per-sample losses (float32) and the batch's summed score (correct count or absolute error)."""
        out = tf.cast(out, tf.float32)
        if self.classification:
            per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=out)
            score = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, axis=1), target), tf.float64))
        else:
            err = tf.reshape(out, [-1]) - target
            per = tf.square(err)
            score = tf.reduce_sum(tf.cast(tf.abs(err), tf.float64))
        return per, score

    def set_learning_rate(self, lr: float) -> None:
        # Assigns the optimiser's learning-rate variable, which the compiled loop reads: no retracing.
        self.optimizer.learning_rate = lr

    def _compile(self) -> None:
        """The training loops, traced at their next call (they hold batch size and dropout rates as constants)."""
        self._train_fn = tf.function(self._train_loop, input_signature=[_IDS, _SCALAR_INT, _SCALAR_INT,
                                                                        tf.TensorSpec([], tf.float64)])
        self._one_batch_fn: Optional[Callable[[tf.Tensor], tf.Tensor]] = None    # see train_one_batch

    def dropout_layers(self) -> int:
        return len(dropout_layers(self.model))

    def set_dropout(self, rate: float) -> None:
        for layer in dropout_layers(self.model):
            layer.rate = rate
        self._compile()

    def set_batch_size(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._compile()

    def interrupt(self) -> None:
        """End a running slice after the batch in progress (any thread)."""
        self._stop.assign(True)

    # ------------------------------------------------------------------ training
    def _train_step(self, ids: tf.Tensor) -> None:
        loss, score, n = self._apply_step(ids)
        self._loss_sum.assign_add(tf.cast(loss, tf.float64) * n)
        self._score_sum.assign_add(score)

    def _apply_step(self, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One optimiser step on the batch ``ids``: (mean loss, summed score, batch size)."""
        xb, yb = self._gather(ids), self._targets(ids)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.model(xb, training=True)
            per, score = self._loss_terms(out, yb)
            loss = tf.reduce_mean(per)
            # A user's model may add regularisation losses; optimise them, report the data loss.
            total = tf.add_n([loss, *[tf.cast(r, tf.float32) for r in self.model.losses]]) if self.model.losses else loss
            scaled = self.optimizer.scale_loss(total)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return loss, score, tf.cast(tf.shape(yb)[0], tf.float64)

    def _one_batch(self, ids: tf.Tensor) -> tf.Tensor:
        with tf.device(self.device):
            return self._apply_step(ids)[0]

    def train_one_batch(self, positions: np.ndarray, lr: float) -> float:
        # Its own compiled function, traced on first use only: the epoch loop's stays as it is.
        if self._one_batch_fn is None:
            self._one_batch_fn = tf.function(self._one_batch, input_signature=[_IDS])
        self.set_learning_rate(lr)
        with tf.device(self.device):
            ids = tf.gather(self.train_ids, tf.constant(np.asarray(positions, dtype=np.int64)))
        with _readable_errors():
            return float(self._one_batch_fn(ids).numpy())

    def _train_loop(self, ids: tf.Tensor, start: tf.Tensor, end: tf.Tensor, deadline: tf.Tensor) -> tf.Tensor:
        with tf.device(self.device):
            n = tf.size(ids, out_type=tf.int64)
            bs = tf.constant(self.batch_size, tf.int64)

            def more(b: tf.Tensor) -> tf.Tensor:
                # The first batch always runs; later ones only until the flag or the deadline.
                go_on = tf.logical_and(tf.logical_not(self._stop.read_value()), tf.timestamp() < deadline)
                return tf.logical_and(b < end, tf.logical_or(tf.equal(b, start), go_on))

            def body(b: tf.Tensor) -> tuple[tf.Tensor]:
                lo = b * bs
                self._train_step(ids[lo:tf.minimum(lo + bs, n)])
                return (b + 1,)

            # Batches depend on each other's weights; one at a time keeps the stop check exact.
            return tf.while_loop(more, body, (start,), parallel_iterations=1)[0]

    def begin_epoch(self, order: np.ndarray) -> int:
        with tf.device(self.device):
            self._epoch_ids = tf.gather(self.train_ids, tf.constant(order, tf.int64))
        self._n = len(order)
        self._seen = 0
        self._loss_sum.assign(0.0)
        self._score_sum.assign(0.0)
        return math.ceil(self._n / self.batch_size)

    def train_batches(self, start: int, end: int, deadline: float, interrupted: Callable[[], bool]) -> int:
        if start >= end:
            return start
        # Clear the flag before looking at interrupted(): a pause arriving in between sets it again.
        self._stop.assign(False)
        if interrupted():
            self._stop.assign(True)     # the call then runs exactly one batch
        wall_deadline = time.time() + (deadline - time.perf_counter())   # tf.timestamp() is wall time
        # One call runs until `end`, the deadline or the stop flag, whichever comes first.
        with _readable_errors():
            b = int(self._train_fn(self._epoch_ids, tf.constant(start, tf.int64), tf.constant(end, tf.int64),
                                   tf.constant(wall_deadline, tf.float64)))
        self._seen = min(b * self.batch_size, self._n)
        return b

    def running_loss(self) -> float:
        return float(self._loss_sum.numpy()) / max(self._seen, 1)

    def end_epoch(self) -> dict[str, float]:
        return self.split_metrics("train", float(self._loss_sum.numpy()), float(self._score_sum.numpy()), self._seen)

    def _eval_chunk(self, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.device(self.device):
            per, score = self._loss_terms(self.model(self._gather(ids), training=False), self._targets(ids))
            return tf.reduce_sum(tf.cast(per, tf.float64)), score

    def evaluate(self) -> dict[str, float]:
        total = int(self.val_ids.shape[0])
        with tf.device(self.device), _readable_errors():
            loss_sum = score_sum = tf.constant(0.0, tf.float64)
            for lo in range(0, total, EVAL_CHUNK):
                loss, score = self._eval_fn(self.val_ids[lo:lo + EVAL_CHUNK])
                loss_sum, score_sum = loss_sum + loss, score_sum + score
        return self.split_metrics("val", float(loss_sum.numpy()), float(score_sum.numpy()), total)

    # ------------------------------------------------------------------ weights
    def snapshot(self) -> list[tf.Tensor]:
        # Copies on the model's device; a read value is immune to later in-place updates.
        with tf.device(self.device):
            return [tf.identity(w.value) for w in self.model.weights]

    def restore(self, snapshot: list[tf.Tensor]) -> None:
        for w, value in zip(self.model.weights, snapshot):
            w.assign(value)

    def save_model(self, directory: Path) -> dict[str, Any]:
        meta: dict[str, Any] = {"framework": "tensorflow", "tensorflow_version": tf.__version__,
                                "keras_version": keras.__version__, "custom_model": self.custom_model,
                                "mixed_precision": _computes_in_float16(self.model),
                                "input_shape": [self.spec["n_features"]] if self.window is None
                                else [self.window, self.spec["n_features"]]}
        if not self.custom_model:
            meta["spec"] = self.spec
        else:
            meta["module_class"] = f"{type(self.model).__module__}.{type(self.model).__qualname__}"
        try:
            atomic_keras_save(self.model.save, directory / "model.keras")
            meta["weights"] = "model.keras"
        except Exception as exc:
            if not self.custom_model:
                raise
            # A user's model Keras cannot serialise whole (no get_config): keep its weights, and
            # loading then needs an instance of the class.
            atomic_keras_save(self.model.save_weights, directory / "model.weights.h5")
            meta["weights"] = "model.weights.h5"
            meta["weights_only"] = True
            meta["save_error"] = f"{type(exc).__name__}: {exc}"
        return meta

    def predict_outputs(self, samples: np.ndarray) -> np.ndarray:
        with tf.device(self.device):
            return self._predict_fn(samples)

    # ------------------------------------------------------------------ checkpoints
    def _state_variables(self) -> list[Any]:
        # model.variables includes the dropout SeedGenerators' states (model.weights does not);
        # optimizer.variables includes the iteration count and, for loss scaling, the scale.
        return [*self.model.variables, *self.optimizer.variables]

    def checkpoint_state(self) -> dict[str, bytes]:
        variables = self._state_variables()
        layout = [{"path": v.path, "shape": list(v.shape), "dtype": str(v.dtype)} for v in variables]
        return {"tf_variables.npz": arrays_to_bytes([np.asarray(v.numpy()) for v in variables]),
                "tf_variables.json": json_bytes(layout)}

    def load_checkpoint_state(self, members: dict[str, bytes]) -> None:
        if "tf_variables.npz" not in members:
            raise ValueError(f"the checkpoint holds no TensorFlow state (members: {sorted(members)}); "
                             f"was it written by another backend?")
        assign_all(self._state_variables(), bytes_to_arrays(members["tf_variables.npz"]), "model and optimiser")

    def epoch_totals(self) -> dict[str, Any]:
        return {"loss_sum": float(self._loss_sum.numpy()), "score_sum": float(self._score_sum.numpy()),
                "seen": self._seen}

    def restore_epoch_totals(self, totals: dict[str, Any]) -> None:
        self._loss_sum.assign(totals["loss_sum"])
        self._score_sum.assign(totals["score_sum"])
        self._seen = int(totals["seen"])

    def encode_weights(self, snapshot: list[tf.Tensor]) -> bytes:
        return arrays_to_bytes([np.asarray(t.numpy()) for t in snapshot])

    def decode_weights(self, data: bytes) -> list[np.ndarray]:
        arrays = bytes_to_arrays(data)
        check_layout(self.model.weights, arrays, "best weights")
        return arrays


def check_checkpoint_state(members: dict[str, bytes]) -> None:
    """Raise if a checkpoint's TensorFlow state does not load (before a model exists to load it into)."""
    bytes_to_arrays(members["tf_variables.npz"])


def create(config: TrainingConfig, data: PreparedData, seed: int, model: Any = None) -> TFBackend:
    return TFBackend(config, data, seed, model)
