"""How big a built-in model is and what training it takes in memory, from the config and the
prepared data's shape alone (``trainer.memory_fit`` decides whether that fits where it runs).

The parameter count is exact for both backends (they differ only in LSTM biases: torch keeps two
per gate, Keras one). The memory estimate adds, for the chosen ``batch_size``: weights, gradients,
optimizer state (Adam/AdamW two copies of the weights, SGD with momentum one), the activations
kept for the backward pass (with a safety factor for the backward pass's own buffers) or the
evaluation chunk's, whichever is larger, and the data tensors training adds.

Importing this module imports no framework.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from .config import TrainingConfig

FLOAT_BYTES = 4                 # weights and activations are float32 (mixed precision keeps float32 weights)
ACTIVATION_SAFETY = 2.0         # the backward pass holds gradients of activations next to them
OPTIMIZER_COPIES = {"adam": 2, "adamw": 2, "sgd": 1}    # state tensors per weight (SGD: momentum)
EVAL_CHUNK = 8192               # both backends evaluate this many samples per forward pass
EPOCH_GATHER_LIMIT = 512 * 2**20    # torch gathers an epoch's samples at once up to this size
# Activation elements kept per output element for the backward pass of a recurrent layer: the
# input and recurrent projections of every gate, the gates, the cell state and its tanh (LSTM;
# torch's CPU LSTM is one fused kernel, its GRU a chain of element-wise steps that each keep theirs).
# Measured with benchmarks/model_size_estimate.py.
_RECURRENT_SAVED = {"lstm": 10.0, "gru": 14.0}
_CONV_SAVED = 2.0               # the output and the convolution's reordered input buffers
_DROPOUT_SAVED = 1.25           # the output plus a one-byte mask per element
CHECKPOINT_COPIES = 2           # a checkpoint's state is serialised into a buffer, then copied out of it
PROCESS_OVERHEAD = 256 * 2**20  # what the framework allocates for itself in a process (kernels, threads)
GPU_OVERHEAD = 256 * 2**20      # library workspaces on a GPU (cuBLAS, cuDNN)
# What a run adds in a process whose framework is already imported (its threads, autograd and
# allocator caches): a 2,466-parameter MLP raised the peak RSS of such a process by 8 MiB (2,000
# rows) and 14 MiB (40,000 rows) beyond what its estimate's parts hold.
RUN_OVERHEAD = 16 * 2**20
# A model whose own training needs less than this is never refused: that much is within what the
# rest of the process comes and goes by, and refusing it on a nearly full machine helps no one.
NEVER_REFUSED_BELOW = 256 * 2**20
# A suggested fix should leave room for everything else running: it aims at half of what is available.
SUGGESTION_SHARE = 0.5


def gib(n: float) -> str:
    """A byte count for people: GiB from 0.1 GiB up, else MiB, KiB or bytes."""
    if n >= 2**30 / 10:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{n / 2**10:.0f} KiB" if n >= 2**10 else f"{int(n)} B"


@dataclass(frozen=True)
class DataShape:
    """What the model and the data tensors' sizes depend on, from the prepared data."""

    n_features: int                 # after one-hot encoding
    n_outputs: int
    window: Optional[int] = None    # sequence_length for cnn/lstm/gru
    n_rows: int = 0
    n_train: int = 0
    n_val: int = 0
    classification: bool = True

    @classmethod
    def of(cls, data: Any) -> "DataShape":
        """From a :class:`trainer.data.PreparedData` or streamed data."""
        pre = data.preprocessor
        return cls(n_features=pre.n_features, n_outputs=pre.n_outputs, window=data.window,
                   # streamed data holds a shuffle buffer and the one read ahead, not the table
                   n_rows=min(data.n_rows, 2 * data.buffer_rows) if data.streamed else data.n_rows,
                   n_train=data.n_train, n_val=data.n_val,
                   classification=pre.task == "classification")

    @property
    def sample_bytes(self) -> int:
        return self.n_features * (self.window or 1) * FLOAT_BYTES

    @property
    def input_shape(self) -> tuple[Optional[int], ...]:
        return (None, self.n_features) if self.window is None else (None, self.window, self.n_features)


@dataclass(frozen=True)
class LayerSize:
    """One layer: output shape (``None`` for the batch), parameters, and the activation elements
    per sample it keeps for the backward pass."""

    name: str
    type: str
    output_shape: tuple[Optional[int], ...]
    parameters: int = 0
    trainable_parameters: int = 0
    saved: Optional[float] = None       # None: twice the output (a layer and its activation)

    @property
    def output_elements(self) -> int:
        return math.prod(d for d in self.output_shape[1:] if d is not None) if self.output_shape else 0

    @property
    def saved_elements(self) -> float:
        return self.saved if self.saved is not None else 2.0 * self.output_elements


@dataclass(frozen=True)
class ModelSpec:
    """The config fields the size depends on (a copy cheap to vary when looking for a fix)."""

    model_type: str
    hidden_units: tuple[int, ...]
    dropout_rate: float
    backend: str
    optimizer: str
    batch_size: int
    keeps_best: bool = True         # restore_best_weights: a copy of the best epoch's weights
    checkpoints: bool = False       # checkpoints are serialised in memory before they are written

    @classmethod
    def of(cls, config: TrainingConfig) -> "ModelSpec":
        return cls(config.model_type, tuple(config.hidden_units), config.dropout_rate, config.backend,
                   config.optimizer, config.batch_size, config.restore_best_weights,
                   bool(config.output_path and config.checkpoints))


# ---------------------------------------------------------------------- the built-in architectures

def _p(n: int) -> dict[str, int]:
    return {"parameters": n, "trainable_parameters": n}


def builtin_layers(spec: ModelSpec, shape: DataShape) -> list[LayerSize]:
    """The layers of the built-in model (``trainer/backends/torch_models.py`` or ``tf_models.py``)
    with their exact parameter counts, named as the framework names them."""
    f, out, units, window = shape.n_features, shape.n_outputs, spec.hidden_units, shape.window
    dropout = spec.dropout_rate > 0
    torch = spec.backend == "torch"
    layers: list[LayerSize] = []
    if spec.model_type == "mlp":
        width = f
        if not torch:
            layers.append(LayerSize("features", "InputLayer", (None, f), saved=f))
        else:
            layers.append(LayerSize("input", "Input", (None, f), saved=f))
        index = 0
        for i, u in enumerate(units):
            weights = width * u + u
            if torch:
                layers += [LayerSize(str(index), "Linear", (None, u), **_p(weights), saved=u),
                           LayerSize(str(index + 1), "ReLU", (None, u), saved=u)]
                index += 2
            else:
                layers.append(LayerSize(_keras_name("dense", i), "Dense", (None, u), **_p(weights)))
            if dropout:
                layers.append(LayerSize(str(index) if torch else _keras_name("dropout", i), "Dropout",
                                        (None, u), saved=_DROPOUT_SAVED * u))
                index += 1
            width = u
        layers.append(LayerSize(str(index) if torch else "head", "Linear" if torch else "Dense",
                                (None, out), **_p(width * out + out), saved=out))
        return layers

    if window is None:
        raise ValueError(f"a {spec.model_type} needs the data's sequence_length")
    if spec.model_type == "cnn":
        width = f
        layers.append(LayerSize("input" if torch else "windows", "Input" if torch else "InputLayer",
                                (None, window, f), saved=2 * window * f))   # torch also transposes it
        index = 0
        for i, c in enumerate(units):
            weights = width * c * 3 + c
            if torch:
                layers += [LayerSize(f"body.{index}", "Conv1d", (None, c, window), **_p(weights),
                                     saved=_CONV_SAVED * c * window),
                           LayerSize(f"body.{index + 1}", "ReLU", (None, c, window), saved=c * window)]
                index += 2
            else:
                layers.append(LayerSize(_keras_name("conv1d", i), "Conv1D", (None, window, c), **_p(weights),
                                        saved=(_CONV_SAVED + 1) * c * window))
            if dropout:
                layers.append(LayerSize(f"body.{index}" if torch else _keras_name("dropout", i), "Dropout",
                                        (None, c, window) if torch else (None, window, c),
                                        saved=_DROPOUT_SAVED * c * window))
                index += 1
            width = c
        if not torch:
            layers.append(LayerSize("flatten", "Flatten", (None, window * width), saved=0))
        layers.append(LayerSize("head", "Linear" if torch else "Dense", (None, out),
                                **_p(width * window * out + out), saved=out))
        return layers

    if spec.model_type in ("lstm", "gru"):
        gates = 4 if spec.model_type == "lstm" else 3
        # torch keeps an input and a recurrent bias per gate; Keras's LSTM one, its GRU two
        # (reset_after=True, the default).
        biases = 2 if torch or spec.model_type == "gru" else 1
        kind = "LSTM" if spec.model_type == "lstm" else "GRU"
        layers.append(LayerSize("input" if torch else "windows", "Input" if torch else "InputLayer",
                                (None, window, f), saved=window * f))
        width = f
        for i, h in enumerate(units):
            weights = gates * (width * h + h * h + biases * h)
            last = i == len(units) - 1
            shown = (None, window, h) if torch or not last else (None, h)
            saved = _RECURRENT_SAVED[spec.model_type] * window * h
            name = f"layers.{i}" if torch else _keras_name(spec.model_type, i)
            layers.append(LayerSize(name, kind, shown, **_p(weights), saved=saved))
            # The torch model applies its one Dropout module after every layer (rate 0 included).
            layers.append(LayerSize("dropout" if torch else _keras_name("dropout", i), "Dropout", shown,
                                    saved=_DROPOUT_SAVED * math.prod(d for d in shown[1:] if d)))
            width = h
        layers.append(LayerSize("head", "Linear" if torch else "Dense", (None, out), **_p(width * out + out), saved=out))
        return layers
    raise ValueError(f"unknown model_type {spec.model_type!r}")


def _keras_name(base: str, i: int) -> str:
    return base if i == 0 else f"{base}_{i}"


def count_parameters(config: TrainingConfig, shape: DataShape) -> int:
    """The built-in model's exact parameter count on ``config.backend``."""
    return sum(layer.parameters for layer in builtin_layers(ModelSpec.of(config), shape))


# ---------------------------------------------------------------------- the memory estimate

@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes training needs in one place (the RAM or one GPU), by part."""

    parameters: int
    trainable_parameters: int
    batch_size: int                 # per device
    weights: int
    gradients: int
    optimizer: int
    activations: int
    data: int
    copies: int = 0                 # the best epoch's weights; checkpoints serialised before writing
    overhead: int = 0               # the framework's own working memory
    where: str = "RAM"
    optimizer_name: str = "adam"
    replicas: int = 1               # model copies training in this place (CPU processes or replicas)
    evaluation: bool = False        # the activations are evaluation's (EVAL_CHUNK samples), not a batch's

    @property
    def model_state(self) -> int:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> int:
        return self.model_state + self.activations + self.data + self.copies + self.overhead

    def breakdown(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients),
                 (f"{self.optimizer_name} state", self.optimizer), ("activations", self.activations),
                 ("data", self.data), ("copies", self.copies), ("framework", self.overhead)]
        return ", ".join(f"{name} {gib(value)}" for name, value in parts if value)

    def to_dict(self) -> dict[str, Any]:
        return {"parameters": int(self.parameters), "trainable_parameters": int(self.trainable_parameters),
                "batch_size": int(self.batch_size), "where": self.where, "replicas": int(self.replicas),
                "optimizer": self.optimizer_name,
                "activations_from": "evaluation" if self.evaluation else "training",
                "bytes": {"weights": int(self.weights), "gradients": int(self.gradients),
                          "optimizer": int(self.optimizer), "activations": int(self.activations),
                          "data": int(self.data), "copies": int(self.copies), "framework": int(self.overhead),
                          "total": int(self.total)}}


def as_trained_here(memory: MemoryEstimate, config: TrainingConfig) -> MemoryEstimate:
    """The estimate shown for a one-device CPU run when this process has imported the framework
    (summarising a built-in model does): its import memory is spent already and not in what is
    available, so a run adds only its working memory (a 2,466-parameter MLP: about 16 MiB, not
    0.3 GiB). The refusal (``memory_fit``) still counts a fresh process's, to be safe."""
    if (config.devices == 1 and memory.where == "RAM" and memory.replicas == 1
            and config.backend in sys.modules and memory.overhead > RUN_OVERHEAD):
        return replace(memory, overhead=RUN_OVERHEAD)
    return memory


def _data_bytes(framework: str, on_gpu: bool, shape: DataShape, batch: int) -> int:
    x = shape.n_rows * shape.n_features * FLOAT_BYTES
    y = shape.n_rows * (8 if shape.classification else 4)
    ids = shape.n_train * 8 * 2          # the epoch's shuffled ids and its targets
    if framework == "torch":
        # The torch backend uses the prepared arrays in place on the CPU and copies them to a GPU;
        # it gathers the shuffled epoch at once below a size limit, else batch by batch.
        gather = shape.n_train * shape.sample_bytes
        gather = gather if gather <= EPOCH_GATHER_LIMIT else batch * shape.sample_bytes
        return gather + ids + ((x + y) if on_gpu else 0)
    # TensorFlow copies the arrays into tensors and gathers each batch inside its compiled loop.
    return x + y + ids + batch * shape.sample_bytes


def estimate_memory(spec: ModelSpec, shape: DataShape, *, layers: Optional[Sequence[LayerSize]] = None,
                    parameters: Optional[int] = None, trainable: Optional[int] = None,
                    batch_size: Optional[int] = None, where: str = "RAM") -> MemoryEstimate:
    """Training memory for one model copy on one device (``where``); ``layers`` default to the
    built-in model's, ``parameters``/``trainable`` to their sums."""
    layers = list(layers) if layers is not None else builtin_layers(spec, shape)
    total = parameters if parameters is not None else sum(layer.parameters for layer in layers)
    train = trainable if trainable is not None else sum(layer.trainable_parameters for layer in layers)
    # A batch holds at most the whole training split.
    batch = min(batch_size or spec.batch_size, max(shape.n_train, 1)) if shape.n_train else (batch_size or spec.batch_size)
    saved = sum(layer.saved_elements for layer in layers)
    outputs = [layer.output_elements for layer in layers] or [0]
    # Evaluation keeps nothing for a backward pass: at most two consecutive layers' outputs live.
    eval_peak = max([a + b for a, b in zip(outputs, outputs[1:])] or outputs)
    train_bytes = batch * saved * FLOAT_BYTES * ACTIVATION_SAFETY
    eval_bytes = min(max(shape.n_val, 1), EVAL_CHUNK) * eval_peak * FLOAT_BYTES
    weights = int(total) * FLOAT_BYTES
    optimizer = OPTIMIZER_COPIES.get(spec.optimizer, 2) * int(train) * FLOAT_BYTES
    on_gpu = where != "RAM"
    copies = weights if spec.keeps_best else 0
    if spec.checkpoints and not on_gpu:
        copies += CHECKPOINT_COPIES * (weights + optimizer)
    return MemoryEstimate(
        parameters=int(total), trainable_parameters=int(train), batch_size=batch,
        weights=weights, gradients=int(train) * FLOAT_BYTES, optimizer=optimizer,
        activations=int(max(train_bytes, eval_bytes)), data=_data_bytes(spec.backend, on_gpu, shape, batch),
        copies=copies, overhead=GPU_OVERHEAD if on_gpu else PROCESS_OVERHEAD, where=where,
        optimizer_name=spec.optimizer, evaluation=eval_bytes > train_bytes)
