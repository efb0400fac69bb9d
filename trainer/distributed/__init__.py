"""Training on several devices with the frameworks' own engines.

- torch: DistributedDataParallel, one process per device (``nccl`` between GPUs, ``gloo`` between
  CPU processes). ``Trainer(config, df)`` with ``devices`` > 1 returns a
  :class:`~trainer.distributed.launcher.LaunchedRun`, which spawns the ranks (``rank.py``) and
  follows rank 0 through the usual run-handle interface; ``python -m trainer.distributed`` is the
  per-rank entry point for ``torchrun`` (several machines, ``torchrun.py``).
- tensorflow: ``tf.distribute.MirroredStrategy`` over several GPUs (or logical CPU devices) in
  the training process itself (:mod:`trainer.distributed.tf_mirrored`).

``batch_size`` is the global batch with any number of devices: each of N devices trains on
``batch_size / N`` samples of every batch, and the gradient is the mean over the whole batch, so
``learning_rate`` keeps its meaning and results match one device up to floating-point rounding.

Importing this package imports no framework.
"""
from __future__ import annotations

from typing import Any

from ..config import ConfigError, TrainingConfig
from .plan import DevicePlan, launches_processes, plan_devices, single_device_config

__all__ = ["DevicePlan", "plan_devices", "launches_processes", "create_backend"]


def create_backend(config: TrainingConfig, data: Any, seed: int, model: Any = None) -> Any:
    """The backend of a run in this process for a config whose ``devices`` is not 1."""
    from ..backends import create_backend as create_single

    plan = plan_devices(config)
    if not plan.distributed:
        return create_single(config.backend, single_device_config(config, plan), data, seed, model)
    if config.backend == "tensorflow":
        from ..backends import backend_module

        backend_module("tensorflow")
        from .tf_mirrored import MirroredTFBackend

        return MirroredTFBackend(config, data, seed, model, plan)
    raise ConfigError.single("devices", config.devices,
                             "torch trains on several devices in worker processes, which trainer.Trainer(config, df) "
                             "starts; a LocalRun cannot. Use trainer.Trainer, or devices=1")
