"""How a sweep starts the run of one trial: a small interface with three implementations.

A launcher builds a run handle (``trainer.RunHandle``: ``fit()``, ``pause()``, ``resume()``,
``stop()``, ``state``, ``history``, ``add_callback``) for a trial's config; the sweep trains it
with ``fit()`` on a thread of its own and follows it through its events. ``resume=True`` continues
the run checkpointed in ``config.output_path``. Anything with this ``launch`` method serves, so a
server can train trials through its own task machinery. A launcher may also have ``release(run)``
(the sweep calls it once it is done with a run it launched, trained or not) and ``close()`` (once
the sweep has ended).
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Optional, Protocol

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
    """``parallel`` trials at once, each in a worker process (``trainer.sweep.process_run.ProcessRun``),
    so they use several cores and a trial that crashes its process cannot take this one with it.

    Each worker process trains one trial after another: the interpreter's start and the framework's
    warm-up (seconds, against a fraction of a second for a small trial) are paid once per worker,
    not per trial. Each worker trains with an equal share of the cores (``OMP_NUM_THREADS``), unless
    the user set a count. ``in_process=True`` trains one of the ``parallel`` trials in this process
    instead (a ``Trainer``, as with ``parallel=1``): it starts at once, where a worker takes seconds
    to, which pays for sweeps of short trials."""

    def __init__(self, parallel: int = 2, *, in_process: bool = False):
        from .worker_pool import WorkerPool, worker_threads

        self.in_process = in_process
        self.threads = worker_threads(parallel)
        self.pool = WorkerPool(max(1, parallel - 1 if in_process else parallel), self.threads)
        self._here: Optional[Any] = None        # the run training in this process (or a reservation)
        self._threads_before: Optional[int] = None
        self._lock = threading.Lock()

    def launch(self, config: TrainingConfig, data: pd.DataFrame, callbacks: Iterable[Observer],
               resume: bool) -> RunHandle:
        from .process_run import ProcessRun

        with self._lock:
            here = self.in_process and self._here is None
            if here:
                self._here = self
        if here:
            self._share_cores(config)
            try:
                run = InProcessLauncher().launch(config, data, callbacks, resume)
            except BaseException:
                self._unshare_cores()
                with self._lock:
                    self._here = None
                raise
            with self._lock:
                self._here = run
            return run
        return ProcessRun(config, data, callbacks=callbacks, resume=resume, worker=self.pool.acquire(),
                          release=self.pool.release)

    def release(self, run: RunHandle) -> None:
        """This process's slot is free again, or the run's worker goes back to the pool."""
        with self._lock:
            if run is self._here:
                self._unshare_cores()
                self._here = None
                return
        drop = getattr(run, "release", None)
        if drop is not None:
            drop()

    def close(self) -> None:
        """Close the worker processes (each exits once its job is done)."""
        self.pool.close()

    # The trial in this process gets the workers' share of the cores too: with torch's own count
    # it would wake two threads per op against a worker's one, and on a small model the threads'
    # spinning costs more than the work (a 40-epoch trial took 6x as long beside a worker).
    # set_num_threads sets the count of this (the sweep's) thread and of the threads the run
    # starts from it; the count before is put back when the run is released.
    def _share_cores(self, config: TrainingConfig) -> None:
        if self.threads is None or config.backend != "torch":
            return
        import torch

        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def _unshare_cores(self) -> None:
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None


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
    """Ray actors for ``executor="ray"``; otherwise this process for one trial at a time, and
    ``parallel`` worker processes for several."""
    if executor == "ray":
        return RayLauncher()
    return InProcessLauncher() if parallel == 1 else ProcessLauncher(parallel)
