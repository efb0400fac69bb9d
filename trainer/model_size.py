"""How big a built-in model is and what training it takes in memory, from the config and the
prepared data's shape alone, and the refusal of a model that cannot fit.

The parameter count is exact for both backends (they differ only in LSTM biases: torch keeps two
per gate, Keras one). The memory estimate adds, for the chosen ``batch_size``: weights, gradients,
optimizer state (Adam/AdamW two copies of the weights, SGD with momentum one), the activations
kept for the backward pass (with a safety factor for the backward pass's own buffers) or the
evaluation chunk's, whichever is larger, and the data tensors training adds.

Importing this module imports no framework; :func:`placements` asks the backend's framework which
device a run will use (the backend imports it next anyway) unless ``device="cpu"``.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from .available_memory import Budget, gpu_available, ram_available
from .config import ConfigError, TrainingConfig

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
        """From a :class:`trainer.data.PreparedData`."""
        pre = data.preprocessor
        return cls(n_features=pre.n_features, n_outputs=pre.n_outputs, window=data.window,
                   n_rows=len(data.x), n_train=len(data.train_index), n_val=len(data.val_index),
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


# ---------------------------------------------------------------------- where training puts it

@dataclass(frozen=True)
class Placement:
    """One memory budget a run draws on (the RAM, or one GPU) and what it holds there."""

    where: str                      # "RAM" or "cuda:N"
    label: str                      # for messages: "on the CPU", "on GPU cuda:0", ...
    world_size: int = 1             # devices sharing each batch
    replicas: int = 1               # model copies training here (CPU processes or replicas)
    mirror: bool = False            # plus the kernel's CPU copy of the weights (torch, several processes)
    weights_only: bool = False      # the CPU side of a model that trains on GPUs: weights, checkpoints
    start_cuda: bool = False        # a single torch process that starts CUDA on this GPU anyway

    def need(self, spec: ModelSpec, shape: DataShape, **custom: Any) -> MemoryEstimate:
        """The memory this placement needs (``custom``: layers/parameters/trainable of a user's model)."""
        batch = max(1, spec.batch_size // self.world_size)
        est = estimate_memory(spec, shape, batch_size=batch, where=self.where, **custom)
        if self.weights_only:
            # torch builds the model on the CPU before moving it, and serialises checkpoints there.
            ckpt = CHECKPOINT_COPIES * (est.weights + est.optimizer) if spec.checkpoints else 0
            return replace(est, gradients=0, optimizer=0, activations=0, data=0, copies=ckpt)
        if self.replicas > 1:
            n = self.replicas
            est = replace(est, weights=est.weights * n, gradients=est.gradients * n, optimizer=est.optimizer * n,
                          activations=est.activations * n, data=est.data * n, copies=est.copies * n,
                          overhead=est.overhead * n, replicas=n)
        if self.mirror:
            est = replace(est, weights=est.weights + est.parameters * FLOAT_BYTES)
        return est

    def budget(self, framework: str, for_training: bool = True) -> Optional[Budget]:
        """What is available here now (None when it cannot be told)."""
        if self.where == "RAM":
            return ram_available()
        index = int(self.where.split(":")[1])
        return gpu_available(index, framework, may_start_cuda=self.start_cuda and for_training)


def _inside_torch_rank() -> bool:
    """Whether this process is one rank of a torch.distributed run (the launcher checked the job)."""
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def _single_device(config: TrainingConfig) -> Optional[str]:
    """"cpu" or "cuda:N" for a one-device run, asking the backend's framework (None if missing)."""
    if config.device == "cpu":
        return "cpu"
    from .backends import BackendUnavailable, backend_module

    try:
        module = backend_module(config.backend)
    except BackendUnavailable:
        return None           # the backend says what to install, from the usual place
    device = module.resolve_device(config.device)
    if config.backend == "torch":
        return f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"
    return f"cuda:{device.rsplit(':', 1)[1]}" if "GPU" in device.upper() else "cpu"


def placements(config: TrainingConfig) -> list[Placement]:
    """The budgets a run of ``config`` draws on; [] when they cannot be told here."""
    framework = config.backend
    if config.devices != 1 and framework == "torch" and _inside_torch_rank():
        return []            # one rank of a launched job: the launcher checked the whole job
    if config.devices == 1:
        device = _single_device(config)
        if device is None:
            return []
        if device == "cpu":
            return [Placement("RAM", "on the CPU")]
        gpu = Placement(device, f"on GPU {device}", start_cuda=framework == "torch")
        # torch builds the model on the CPU before moving it to the GPU.
        return [Placement("RAM", "to build the model before moving it to the GPU", weights_only=True), gpu] if framework == "torch" else [gpu]
    from .distributed import plan_devices

    try:
        plan = plan_devices(config)
    except (ConfigError, ImportError):
        return []             # the same error comes from the usual place
    n = plan.world_size
    if not plan.distributed:
        if plan.device_type == "cpu":
            return [Placement("RAM", "on the CPU")]
        if plan.device_type == "cuda":
            return placements(config.replace(device=plan.rank_device(0), devices=1))
        return placements(config.replace(devices=1))
    if plan.device_type == "cpu":
        what = f"in {n} worker processes" if framework == "torch" else f"on {n} CPU replicas"
        return [Placement("RAM", what, world_size=n, replicas=n, mirror=framework == "torch")]
    gpus = [Placement(f"cuda:{i}", f"on GPU cuda:{i} (one of {n})", world_size=n) for i in plan.device_ids]
    return ([Placement("RAM", "for the kernel's copy of the model", weights_only=True)] + gpus
            if framework == "torch" else gpus)


# ---------------------------------------------------------------------- refusing what cannot fit

def _units_text(units: Sequence[int]) -> str:
    if len(units) > 3 and len(set(units)) == 1:
        return f"[{units[0]}] * {len(units)}"
    return str(list(units))


def _suggestion_fits(placement: Placement, spec: ModelSpec, shape: DataShape, budget: Budget) -> tuple[bool, int]:
    need = placement.need(spec, shape).total
    return need <= budget.bytes * SUGGESTION_SHARE, need


def _smaller_units(placement: Placement, spec: ModelSpec, shape: DataShape,
                   budget: Budget) -> Optional[tuple[tuple[int, ...], int]]:
    for k in range(1, 24):
        units = tuple(max(1, u >> k) for u in spec.hidden_units)
        ok, need = _suggestion_fits(placement, replace(spec, hidden_units=units), shape, budget)
        if ok:
            return units, need
        if max(units) == 1:
            break
    return None


def _smaller_batch(placement: Placement, spec: ModelSpec, shape: DataShape,
                   budget: Budget) -> Optional[tuple[int, int]]:
    step = placement.world_size       # with several devices the batch must stay a multiple of them
    batch = spec.batch_size
    while batch > step:
        batch = max(step, (batch // 2) // step * step)
        ok, need = _suggestion_fits(placement, replace(spec, batch_size=batch), shape, budget)
        if ok:
            return batch, need
    return None


def _shorter_window(placement: Placement, spec: ModelSpec, shape: DataShape,
                    budget: Budget) -> Optional[tuple[int, int]]:
    window = shape.window or 0
    while window > 2:
        window = max(2, window // 2)
        ok, need = _suggestion_fits(placement, spec, replace(shape, window=window), budget)
        if ok:
            return window, need
    return None


def too_big(need: MemoryEstimate, budget: Optional[Budget]) -> bool:
    """Whether ``need`` does not fit ``budget`` (never for a small model, or an unknown budget)."""
    return (budget is not None and need.total > budget.bytes
            and need.total - need.overhead >= NEVER_REFUSED_BELOW)


def refusal(config: TrainingConfig, shape: DataShape, placement: Placement, need: MemoryEstimate,
            budget: Budget) -> list[dict[str, Any]]:
    """ConfigError entries for a run that needs ``need`` where only ``budget`` is available:
    always ``hidden_units``; ``batch_size`` (and ``sequence_length``) when activations dominate."""
    spec = ModelSpec.of(config)
    per_device = f" ({need.batch_size} per device)" if placement.world_size > 1 else ""
    where = "the RAM" if placement.where == "RAM" else f"GPU {placement.where}"
    if placement.weights_only:
        message = (f"the {config.model_type} has {need.parameters:,} parameters; the RAM needs about "
                   f"{gib(need.total)} ({need.breakdown()}) {placement.label}, but has {gib(budget.bytes)} "
                   f"available ({budget.source})")
    else:
        message = (f"the {config.model_type} has {need.parameters:,} parameters; training it {placement.label} "
                   f"with batch_size={config.batch_size}{per_device} needs about {gib(need.total)} "
                   f"({need.breakdown()}), but {where} has {gib(budget.bytes)} available ({budget.source})")
    activations_dominate = need.activations > need.model_state
    if activations_dominate and need.evaluation:
        message += (f". Most of it is evaluation, which runs {min(max(shape.n_val, 1), EVAL_CHUNK)} validation "
                    f"samples per forward pass whatever the batch_size")
    message += ". Use fewer or narrower hidden layers"
    smaller = _smaller_units(placement, spec, shape, budget)
    if smaller:
        message += f"; e.g. hidden_units={_units_text(smaller[0])} would need about {gib(smaller[1])}"
    errors = [{"field": "hidden_units", "value": list(config.hidden_units), "message": message}]
    if activations_dominate and not need.evaluation:
        batch = _smaller_batch(placement, spec, shape, budget)
        fix = (f"batch_size={batch[0]} would need about {gib(batch[1])}" if batch else
               "a smaller batch alone does not make it fit")
        errors.append({"field": "batch_size", "value": config.batch_size,
                       "message": f"the activations of one batch take {gib(need.activations)} of the "
                                  f"{gib(need.total)}; {fix}"})
    if activations_dominate and config.is_sequence_model and shape.window:
        window = _shorter_window(placement, spec, shape, budget)
        fix = (f"sequence_length={window[0]} would need about {gib(window[1])}" if window else
               "a shorter window alone does not make it fit")
        errors.append({"field": "sequence_length", "value": config.sequence_length,
                       "message": f"activations grow with the window of {shape.window} rows per sample; {fix}"})
    return errors


def check_fits(config: TrainingConfig, data: Any, model: Any = None) -> Optional[MemoryEstimate]:
    """Refuse, with a ConfigError naming the fields to change, a built-in model whose training
    would not fit in the memory available (RAM or GPU); return the estimate for the main device.
    A user's own ``model`` is not estimated (None)."""
    if model is not None:
        return None
    shape = DataShape.of(data)
    spec = ModelSpec.of(config)
    main: Optional[MemoryEstimate] = None
    for placement in placements(config):
        need = placement.need(spec, shape)
        if not placement.weights_only:
            main = main or need
        budget = placement.budget(config.backend)
        if too_big(need, budget):
            raise ConfigError(refusal(config, shape, placement, need, budget))
    return main
