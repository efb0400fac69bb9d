"""Whether a run's model fits in the memory it will train in, and the refusal of one that cannot.

:func:`check_fits` is called when a run is built, after the data is prepared and before the model
exists: it estimates each memory budget the run draws on (``trainer.model_size``) against what is
available there (``trainer.available_memory``) and raises a ConfigError naming the fields to change
and a setting that fits. Importing this module imports no framework; :func:`placements` asks the
backend's framework which device a run will use (the backend imports it next anyway) unless
``device="cpu"``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from .available_memory import Budget, gpu_available, ram_available
from .config import ConfigError, TrainingConfig
from .model_size import (CHECKPOINT_COPIES, EVAL_CHUNK, FLOAT_BYTES, NEVER_REFUSED_BELOW, SUGGESTION_SHARE, DataShape,
                         MemoryEstimate, ModelSpec, estimate_memory, gib)


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
