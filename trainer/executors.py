"""Where a run's batches are computed: ``"local"`` (this machine: ``trainer.Trainer``) or ``"ray"``
(a Ray actor: ``trainer.ray_executor.RayRun``, on the cluster this process joined with
``ray.init(address=...)``, else ``RAY_ADDRESS``, else a local Ray instance). Both build a run handle from
``(config, df)`` and continue one with ``from_checkpoint(output_path, df)``."""
from __future__ import annotations

from typing import Any

from .config import ConfigError

EXECUTORS = ("local", "ray")


def check_executor(executor: Any, field: str = "executor") -> str:
    """``executor`` if it is one of :data:`EXECUTORS`; a ConfigError naming the choices if not."""
    if executor not in EXECUTORS:
        raise ConfigError.single(field, executor, f"choose one of {', '.join(map(repr, EXECUTORS))}")
    return executor


def run_factory(executor: str) -> Any:
    """The class whose ``(config, df)`` and ``from_checkpoint(output_path, df)`` build a run on ``executor``."""
    if check_executor(executor) == "ray":
        from .ray_executor.run import RayRun

        return RayRun
    from .run import Trainer

    return Trainer
