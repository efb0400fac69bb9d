"""How a sweep starts the run of one trial: a small interface with three implementations.

A launcher builds a run handle (``trainer.RunHandle``: ``fit()``, ``pause()``, ``resume()``,
``stop()``, ``state``, ``history``, ``add_callback``) for a trial's config; the sweep trains it
with ``fit()`` on a thread of its own and follows it through its events. ``resume=True`` continues
the run checkpointed in ``config.output_path``. Anything with this ``launch`` method serves, so a
server can train trials through its own task machinery.
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol

import pandas as pd

from ..config import TrainingConfig
from ..events import Observer
from ..handle import RunHandle


class Launcher(Protocol):
    """Builds the (not yet started) run of one trial."""

    def launch(self, config: TrainingConfig, data: pd.DataFrame, callbacks: Iterable[Observer],
               resume: bool) -> RunHandle: ...


class InProcessLauncher:
    """Trials train in this process (``trainer.Trainer``), one thread each."""

    def launch(self, config: TrainingConfig, data: pd.DataFrame, callbacks: Iterable[Observer],
               resume: bool) -> RunHandle:
        from ..run import Trainer

        if resume:
            return Trainer.from_checkpoint(config.output_path, data, config=config, callbacks=callbacks)
        return Trainer(config, data, callbacks=callbacks, overwrite=True)


class ProcessLauncher:
    """Each trial trains in a worker process of its own (``trainer.sweep.process_run.ProcessRun``),
    so parallel trials use several cores."""

    def launch(self, config: TrainingConfig, data: pd.DataFrame, callbacks: Iterable[Observer],
               resume: bool) -> RunHandle:
        from .process_run import ProcessRun

        return ProcessRun(config, data, callbacks=callbacks, resume=resume)


class RayLauncher:
    """Each trial trains on a Ray actor (``trainer.ray_executor.RayRun``); ``options`` go to RayRun
    (``address``, ``cpus``)."""

    def __init__(self, **options: Any):
        self.options = options

    def launch(self, config: TrainingConfig, data: pd.DataFrame, callbacks: Iterable[Observer],
               resume: bool) -> RunHandle:
        from ..ray_executor.run import RayRun

        if resume:
            return RayRun.from_checkpoint(config.output_path, data, config=config, callbacks=callbacks,
                                          **self.options)
        return RayRun(config, data, callbacks=callbacks, overwrite=True, **self.options)


def default_launcher(executor: str, parallel: int) -> Launcher:
    """Ray actors for ``executor="ray"``; otherwise this process for one trial at a time and worker
    processes for several."""
    if executor == "ray":
        return RayLauncher()
    return InProcessLauncher() if parallel == 1 else ProcessLauncher()
