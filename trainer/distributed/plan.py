"""Which devices a run trains on: ``config.devices`` and ``config.device`` resolved against what
the framework sees, with a message that says what to change when the devices are not there.

Importing this module imports no framework; :func:`plan_devices` asks torch (``device_count``,
which does not initialise CUDA) or TensorFlow only when ``devices`` is not 1.
"""
from __future__ import annotations

import io
import pickle
import sys
import types
from dataclasses import dataclass
from typing import Any, Optional

from ..config import ConfigError, TrainingConfig


@dataclass(frozen=True)
class DevicePlan:
    """Where each replica trains: ``world_size`` processes (torch) or replicas (TensorFlow)."""

    framework: str                    # "torch" | "tensorflow"
    world_size: int
    device_type: str                  # "cpu" | "cuda"
    device_ids: tuple[int, ...] = ()  # the GPU of each rank or replica; () on the CPU

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def comm_backend(self) -> str:
        """torch.distributed's backend: NCCL between GPUs, gloo between CPU processes."""
        return "nccl" if self.device_type == "cuda" else "gloo"

    def rank_device(self, rank: int) -> str:
        """The ``device`` config value for one rank or replica ("cpu" or "cuda:N")."""
        return f"cuda:{self.device_ids[rank]}" if self.device_type == "cuda" else "cpu"

    def describe(self) -> str:
        if self.framework == "tensorflow":
            where = (f"GPUs {', '.join(map(str, self.device_ids))}" if self.device_type == "cuda"
                     else f"{self.world_size} CPU devices")
            return f"MirroredStrategy over {where}"
        where = (f"GPUs {', '.join(map(str, self.device_ids))}" if self.device_type == "cuda"
                 else "the CPU")
        return f"{self.world_size} processes on {where} (DistributedDataParallel, {self.comm_backend})"


def gpu_count(framework: str) -> tuple[int, str]:
    """(GPUs the framework sees, why none when 0)."""
    if framework == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        why = ("this is a CPU-only build of torch" if torch.version.cuda is None and torch.version.hip is None
               else "torch is a CUDA build but sees no GPU (driver? CUDA_VISIBLE_DEVICES?)")
        return count, why
    from ..backends import backend_module

    backend_module("tensorflow")   # a clear "install tensorflow" error if it is missing
    import tensorflow as tf

    count = len(tf.config.list_physical_devices("GPU"))
    why = ("this is a CPU-only build of TensorFlow (tensorflow-cpu)" if not tf.test.is_built_with_cuda()
           else "TensorFlow is a CUDA build but sees no GPU (driver? CUDA_VISIBLE_DEVICES?)")
    return count, why


def plan_devices(config: TrainingConfig, visible: Optional[tuple[int, str]] = None) -> DevicePlan:
    """Resolve ``devices`` for ``config``; ConfigError naming the field and the fix when the
    devices are not there or ``batch_size`` does not split evenly. ``visible`` (GPU count, why
    none) is used instead of asking the framework."""
    requested, device, framework = config.devices, config.device, config.backend
    if requested == 1:
        return DevicePlan(framework, 1, "cpu" if device == "cpu" else "auto")
    if device.startswith("cuda:"):
        raise ConfigError.single(
            "device", device, f"names one GPU, but devices={requested!r}; to train on several GPUs set "
                              f"device='cuda' and devices=[...] with their indices (e.g. devices=[1, 2])")
    if device == "cpu":
        if isinstance(requested, list):
            raise ConfigError.single(
                "devices", requested, "a list picks GPU indices, but device='cpu'; give a count instead "
                                      f"(devices={len(requested)} trains on {len(requested)} CPU processes or "
                                      "replicas), or set device='cuda'")
        world = 1 if requested == "auto" else int(requested)
        return _checked(config, DevicePlan(framework, world, "cpu"))

    gpus, why = visible if visible is not None else gpu_count(framework)
    if gpus == 0:
        if requested == "auto" and device == "auto":
            return DevicePlan(framework, 1, "cpu")
        wanted = len(requested) if isinstance(requested, list) else requested
        if device == "cuda":
            raise ConfigError.single("device", device, f"{framework} sees no GPU: {why}; use device='cpu' or 'auto'")
        cpu_hint = (f"set device='cpu' to train with {wanted} CPU processes instead (it works and tests "
                    f"distributed code, but on one machine it is rarely faster than devices=1), "
                    if isinstance(wanted, int) and framework == "torch" else
                    f"set device='cpu' to train on {wanted} CPU replicas instead, " if isinstance(wanted, int) else "")
        raise ConfigError.single("devices", requested, f"asks for GPUs, but {framework} sees none: {why}; "
                                                       f"{cpu_hint}or use devices=1")
    if requested == "auto":
        ids = tuple(range(gpus))
    elif isinstance(requested, list):
        missing = [i for i in requested if i >= gpus]
        if missing:
            raise ConfigError.single("devices", requested,
                                     f"GPU index {missing[0]} is not visible: {framework} sees {gpus} GPU(s), "
                                     f"indices 0..{gpus - 1} (CUDA_VISIBLE_DEVICES renumbers them)")
        ids = tuple(requested)
    else:
        if requested > gpus:
            raise ConfigError.single("devices", requested,
                                     f"only {gpus} GPU(s) are visible to {framework}; use devices={gpus} "
                                     f"or devices='auto'")
        ids = tuple(range(requested))
    return _checked(config, DevicePlan(framework, len(ids), "cuda", ids))


def _checked(config: TrainingConfig, plan: DevicePlan) -> DevicePlan:
    n, bs = plan.world_size, config.batch_size
    if n > 1 and bs % n:
        lower, upper = bs // n * n, (bs // n + 1) * n
        options = f"{lower} or {upper}" if lower else f"{upper}"
        raise ConfigError.single("batch_size", bs,
                                 f"with {n} devices batch_size is the global batch, split evenly ({bs} / {n} "
                                 f"per device does not divide); use {options}")
    return plan


def launches_processes(config: Any) -> bool:
    """Whether ``config`` trains in spawned torch processes (``devices`` asks for several torch
    devices). A config that cannot be planned answers False: the run then raises the planning
    error from its usual place."""
    devices = config.get("devices", 1) if isinstance(config, dict) else getattr(config, "devices", 1)
    if devices == 1:
        return False
    try:
        config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
        return config.backend == "torch" and plan_devices(config).distributed
    except (ConfigError, ImportError):
        return False


def single_device_config(config: TrainingConfig, plan: DevicePlan, rank: int = 0) -> TrainingConfig:
    """The config one rank's (or one replica set's first) framework backend runs with."""
    if plan.device_type == "auto":
        return config
    return config.replace(device=plan.rank_device(rank), devices=1)


# ---------------------------------------------------------------------- what spawn can carry

def _main_is_importable() -> bool:
    """Whether a spawned process can re-create ``__main__`` (a script or ``-m`` module can;
    a notebook kernel or an interactive session cannot)."""
    main = sys.modules.get("__main__")
    return bool(getattr(getattr(main, "__spec__", None), "name", None) or getattr(main, "__file__", None))


def check_spawnable(model: Any, world_size: int) -> Optional[bytes]:
    """``model`` serialised (``torch.save``) for ``world_size`` fresh worker processes, or
    ConfigError saying why they could not rebuild it and what to do. None without a model."""
    if model is None:
        return None
    import torch

    found: list[str] = []

    class Pickler(pickle.Pickler):
        # Records what the pickle would import from __main__ (torch.save subclasses this class).
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
                found.append(getattr(obj, "__qualname__", repr(obj)))
            return NotImplemented

    recording = types.ModuleType("pickle_recording_main")
    recording.__dict__.update({k: getattr(pickle, k) for k in ("dump", "dumps", "load", "loads", "Unpickler")})
    recording.Pickler = Pickler
    name = type(model).__name__
    buf = io.BytesIO()
    try:
        torch.save(model, buf, pickle_module=recording)
    except Exception as exc:
        raise ConfigError.single(
            "model", name, f"cannot be sent to the {world_size} worker processes ({type(exc).__name__}: {exc}); "
                           f"define the model's class at the top level of a .py module and import it, or use devices=1") from None
    if found and not _main_is_importable():
        listed = ", ".join(sorted(set(found)))
        raise ConfigError.single(
            "model", name,
            f"uses {listed}, defined in the notebook (__main__); the {world_size} worker processes start fresh "
            f"(the 'spawn' method, so a CUDA context in the kernel cannot break them) and cannot import it. "
            f"Move it into a .py file beside the notebook and import it from there "
            f"(e.g. `from mymodels import {found[0].split('.')[0]}`), or use devices=1")
    return buf.getvalue()
