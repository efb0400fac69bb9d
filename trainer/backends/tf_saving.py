"""Saving and loading TensorFlow models and state: the ``.keras`` file written atomically, the
prediction function of a saved model, and the variables of a checkpoint as bytes."""
from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..confined import ConfinementError, confined_path
from .user_model import build_user_model

# Keras picks its backend once, at first import; only fill in the choice if the user made none.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

EVAL_CHUNK = 8192


def atomic_keras_save(save: Callable[[str], None], target: Path) -> None:
    # Keras picks the format from the suffix, so the temporary file keeps it.
    suffix = ".weights.h5" if target.name.endswith(".weights.h5") else target.suffix
    tmp = target.with_name(f".{uuid.uuid4().hex}.tmp{suffix}")
    try:
        save(str(tmp))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def predictor(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    @tf.function(reduce_retracing=True)
    def forward(x: tf.Tensor) -> tf.Tensor:
        return tf.cast(model(x, training=False), tf.float32)

    def predict(samples: np.ndarray) -> np.ndarray:
        outs = []
        for lo in range(0, len(samples), EVAL_CHUNK):
            chunk = np.ascontiguousarray(samples[lo:lo + EVAL_CHUNK], dtype=np.float32)
            outs.append(forward(tf.constant(chunk)).numpy().reshape(len(chunk), -1))
        return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)

    return predict


def load_predict_fn(directory: Path, meta: dict[str, Any], model: Any = None,
                    trust_pickle: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A function from sample arrays to raw outputs, for a saved model.

    The ``.keras`` file is read with Keras's ``safe_mode`` (no Python code from the file, e.g. a
    ``Lambda`` layer's, is run); ``trust_pickle=True`` turns it off. ``model`` takes an instance, a
    class or factory, or a ``"package.module:name"`` string (see ``user_model``)."""
    path = _weights_path(Path(directory), meta.get("weights"), (".keras", ".weights.h5") if model is not None
                         else (".weights.h5",) if meta.get("weights_only") else (".keras",))
    if model is not None:
        model = build_user_model(model, keras.Model, "keras.Model")
        model(np.zeros((1, *meta["input_shape"]), np.float32), training=False)   # builds its weights
        model.load_weights(str(path))
    elif meta.get("weights_only"):
        raise RuntimeError(
            f"the saved model is a custom {meta.get('module_class')} that Keras could not save whole "
            f"({meta.get('save_error')}); pass an instance to load its weights: load_model(path, model=YourModel(...)), "
            f"or give the class get_config() and @keras.saving.register_keras_serializable()")
    else:
        try:
            model = keras.models.load_model(str(path), compile=False, safe_mode=not trust_pickle)
        except (TypeError, ValueError) as exc:
            if not meta.get("custom_model"):
                raise
            raise RuntimeError(
                f"the saved model is a custom {meta.get('module_class')} that Keras cannot rebuild here ({exc}); "
                f"import the module that defines it (registered with @keras.saving.register_keras_serializable()), "
                f"or pass an instance: load_model(path, model=YourModel(...))") from None
    return predictor(model)


def _weights_path(directory: Path, name: Any, suffixes: tuple[str, ...]) -> Path:
    """The model file metadata.json names, inside ``directory``, in a format its loader reads
    safely: a ``.keras`` archive for a whole model (Keras's older ``.h5`` models may carry code),
    ``.weights.h5`` (or the archive) for weights loaded into a given model."""
    try:
        path = confined_path(directory, name, "metadata.json's weights file")
    except ConfinementError as exc:
        raise ValueError(f"refusing to load from {str(directory)!r}: {exc}") from None
    if not path.name.endswith(suffixes):
        raise ValueError(f"refusing to load from {str(directory)!r}: metadata.json's weights file {name!r} is not "
                         f"a {' or '.join(suffixes)} file, the only kind load_model reads here")
    return path


# ---------------------------------------------------------------------- checkpoint encoding

def arrays_to_bytes(arrays: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *arrays)        # members arr_0, arr_1, ... in variable order
    return buf.getvalue()


def bytes_to_arrays(data: bytes) -> list[np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def check_layout(variables: list[Any], arrays: list[np.ndarray], what: str) -> None:
    shapes = [tuple(v.shape) for v in variables]
    saved = [a.shape for a in arrays]
    if shapes != saved:
        raise ValueError(f"the checkpoint's {what} do not fit this model: it holds {len(saved)} arrays "
                         f"shaped {saved[:6]}{' ...' if len(saved) > 6 else ''}, the model has {len(shapes)} "
                         f"shaped {shapes[:6]}{' ...' if len(shapes) > 6 else ''}")


def assign_all(variables: list[Any], arrays: list[np.ndarray], what: str) -> None:
    check_layout(variables, arrays, what)
    for v, a in zip(variables, arrays):
        v.assign(a)
