"""Training on several devices with the frameworks' own engines.

- torch: DistributedDataParallel, one process per device (``nccl`` between GPUs, ``gloo`` between
  CPU processes). ``Trainer(config, df)`` with ``devices`` > 1 returns a
  :class:`~trainer.distributed.launcher.LaunchedTrainer`, which spawns the ranks and presents the
  usual Trainer interface; ``python -m trainer.distributed`` is the per-rank entry point for
  ``torchrun`` (several machines).
- tensorflow: ``tf.distribute.MirroredStrategy`` over several GPUs (or logical CPU devices) in
  the training process itself (:mod:`trainer.distributed.tf_mirrored`).

``batch_size`` is the global batch with any number of devices: each of N devices trains on
``batch_size / N`` samples of every batch, and the gradient is the mean over the whole batch, so
``learning_rate`` keeps its meaning and results match one device up to floating-point rounding.

Importing this package imports no framework.
"""
from __future__ import annotations

from typing import Any, Optional

from ..config import ConfigError, TrainingConfig
from .plan import DevicePlan, plan_devices, single_device_config

__all__ = ["DevicePlan", "plan_devices", "launcher_class", "create_backend"]


def launcher_class(config: Any) -> Optional[type]:
    """The Trainer subclass that runs ``config`` in worker processes, or None when one process does."""
    devices = config.get("devices", 1) if isinstance(config, dict) else getattr(config, "devices", 1)
    if devices == 1:
        return None
    try:
        config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
        if config.backend != "torch" or not plan_devices(config).distributed:
            return None
    except (ConfigError, ImportError):
        return None     # Trainer.__init__ raises the same error, from the usual place
    from .launcher import LaunchedTrainer

    return LaunchedTrainer


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
                             "torch trains on several devices in worker processes, which trainer.Trainer itself "
                             "starts; a subclass of Trainer cannot. Use trainer.Trainer, or devices=1")
