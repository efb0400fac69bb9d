"""``Trainer``: the public face of a training run.

``Trainer(config, df)`` validates the config against the DataFrame, prepares the data, builds the
model and returns the run: a :class:`~trainer.loop.LocalRun` that trains in this process, or (with
several torch devices) a :class:`~trainer.distributed.launcher.LaunchedRun` whose ranks train in
worker processes. Both implement the run-handle interface (:class:`~trainer.handle.RunHandle`) and
count as ``Trainer`` instances. ``Trainer.from_checkpoint(output_path, df)`` continues a
checkpointed run.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable, Union

import pandas as pd

from .config import TrainingConfig
from .distributed.plan import launches_processes
from .events import Observer
from .handle import RunHandle
from .loop import LocalRun
from .resume import plan_resume

# Re-exported: these names have always been importable from trainer.run.
from .state import FINAL_STATES, StateError, TrainingFailure, TrainingState

__all__ = ["Trainer", "TrainingState", "FINAL_STATES", "StateError", "TrainingFailure"]


class Trainer(RunHandle):
    """One training run of ``config`` on ``data`` (see the module docstring).

    ``fit()`` trains to the end (blocking), ``start()`` schedules training on the running event
    loop; ``pause()``, ``resume()`` and ``stop()`` take effect within one batch. ``model`` is your
    own ``torch.nn.Module`` (or ``keras.Model`` with ``backend="tensorflow"``); ``callbacks`` are
    observers of the run's events. When ``output_path`` holds another run's checkpoints it raises
    ``OutputPathInUse`` (a ConfigError) unless ``overwrite=True``, which replaces them.
    """

    def __new__(cls, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                model: Any = None, callbacks: Iterable[Observer] = (), **kwargs: Any) -> Any:
        if cls is not Trainer:
            return super().__new__(cls)
        implementation = _implementation(config)
        # Not an instance of this class, so Python does not call __init__ again on it.
        return implementation(config, data, model=model, callbacks=callbacks, **kwargs)

    @classmethod
    def __subclasshook__(cls, subclass: type) -> Any:
        # Every run handle is a Trainer: isinstance(Trainer(cfg, df), Trainer) holds for both kinds.
        if cls is Trainer:
            return issubclass(subclass, RunHandle)
        return NotImplemented

    @classmethod
    def from_checkpoint(cls, output_path: Union[str, Path], data: pd.DataFrame, *,
                        config: Union[TrainingConfig, dict[str, Any], None] = None, model: Any = None,
                        callbacks: Iterable[Observer] = (), **changes: Any) -> RunHandle:
        """A run continuing from the newest usable checkpoint in ``output_path``; start it with
        ``fit()`` or ``start()``.

        ``data`` must be the DataFrame the run trained on. ``config`` (optional) is checked against
        the checkpoint's; ``changes`` may set only fields that cannot change the results (``epochs``,
        ``name``, ``device``, ``data_path`` and the checkpoint settings; see
        ``trainer.resume.CHANGEABLE``). A custom model needs a fresh instance as ``model``. Raises
        ``CheckpointError`` when there is nothing usable to resume (a corrupt newest checkpoint is
        skipped with a RuntimeWarning) and ``ResumeMismatch`` listing what differs.
        """
        plan = plan_resume(output_path, data, config=config, custom_model=model is not None, **changes)
        return _implementation(plan.config)(plan.config, data, model=model, callbacks=callbacks, resume=plan)

    @classmethod
    def resume(cls, output_path: Union[str, Path], data: pd.DataFrame, **kwargs: Any) -> RunHandle:  # type: ignore[override]
        """Deprecated name of :meth:`from_checkpoint` (``run.resume()`` on a run continues a paused run)."""
        warnings.warn("Trainer.resume(output_path, df) is deprecated; use Trainer.from_checkpoint(output_path, df) "
                      "(run.resume() on a run continues a paused one)", DeprecationWarning, stacklevel=2)
        return cls.from_checkpoint(output_path, data, **kwargs)


def _implementation(config: Any) -> type:
    """The run class for ``config``: worker processes for several torch devices, else this process."""
    if launches_processes(config):
        from .distributed.launcher import LaunchedRun

        return LaunchedRun
    return LocalRun
