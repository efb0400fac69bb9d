"""The run-handle interface: what every run offers, wherever its batches are computed.

:class:`~trainer.loop.LocalRun` trains in this process; :class:`~trainer.distributed.launcher.LaunchedRun`
runs ranks in worker processes and follows rank 0. Both hold a :class:`~trainer.state.RunState`
(changed only by applying the run's events) and an :class:`~trainer.events.EventBus`, so everything
below reads the same for either. ``trainer.Trainer(config, df)`` returns one of them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pandas as pd

from .config import TrainingConfig
from .events import EventBus, Observer
from .metrics import CLASSIFICATION
from .state import Progress, RunState, StateError, TrainingState

if TYPE_CHECKING:
    import asyncio

    from .backends.base import Backend
    from .data import PreparedData
    from .evaluation import Evaluation
    from .lr_finder import LRFindResult
    from .summary import ModelSummary


class RunHandle(ABC):
    """One training run: its config, prepared data and model, its state, observers and control."""

    config: TrainingConfig
    data: "PreparedData"
    seed: int
    backend: "Backend"          # the model in this process (a multi-process run's trained copy)
    run_state: RunState
    events: EventBus

    # ------------------------------------------------------------------ control
    @abstractmethod
    def pause(self) -> None:
        """Pause after the batch in progress. Safe from any thread."""

    @abstractmethod
    def resume(self) -> None:
        """Continue a paused run. Safe from any thread."""

    @abstractmethod
    def stop(self) -> None:
        """Stop after the batch in progress; completed epochs and artifacts are kept. Safe from any thread."""

    @abstractmethod
    def start(self) -> "asyncio.Task[None]":
        """Schedule the run on the running event loop and return its task at once."""

    @abstractmethod
    def fit(self) -> "RunHandle":
        """Train to the end, blocking; works in a script and inside a notebook cell. Ctrl-C stops."""

    @abstractmethod
    async def wait(self) -> "RunHandle":
        """Wait for the end of a run started with ``start()``."""

    @abstractmethod
    def wait_until_done(self, timeout: Optional[float] = None) -> bool:
        """Block the calling thread until the run ends; True if it did within ``timeout``."""

    # ------------------------------------------------------------------ state (read-only views)
    @property
    def state(self) -> TrainingState:
        return self.run_state.state

    @property
    def total_epochs(self) -> int:
        return self.run_state.total_epochs

    @property
    def current_epoch(self) -> int:
        """Epochs completed."""
        return self.run_state.current_epoch

    @property
    def batch(self) -> int:
        """Batches done in the epoch in progress."""
        return self.run_state.batch

    @property
    def num_batches(self) -> int:
        return self.run_state.num_batches

    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per finished epoch (``epoch``, ``train_loss``, ..., ``time_per_epoch``)."""
        return self.run_state.history  # type: ignore[return-value]

    @property
    def latest_metrics(self) -> dict[str, Any]:
        return self.run_state.latest_metrics

    @property
    def best_metrics(self) -> dict[str, Any]:
        """``{"loss", "accuracy" (or "mae"), "epoch"}`` of the best epoch by val_loss; {} before one."""
        return self.run_state.best_metrics

    @property
    def reason(self) -> Optional[str]:
        """Why the run ended (or is paused)."""
        return self.run_state.reason

    @property
    def error(self) -> Optional[str]:
        return self.run_state.error

    @property
    def started_at(self) -> Optional[float]:
        return self.run_state.started_at

    @property
    def finished_at(self) -> Optional[float]:
        return self.run_state.finished_at

    @property
    def artifacts_path(self) -> Optional[Path]:
        path = self.run_state.artifacts_path
        return Path(path) if path else None

    @property
    def last_checkpoint(self) -> Optional[Path]:
        """The checkpoint file this run wrote last (None before the first)."""
        path = self.run_state.last_checkpoint
        return Path(path) if path else None

    @property
    def is_classification(self) -> bool:
        return self.run_state.task == CLASSIFICATION

    @property
    def device_name(self) -> str:
        """Where the batches are computed, in words."""
        return self.backend.device_name

    @property
    def observer_errors(self) -> list[str]:
        return self.events.errors

    def progress(self) -> Progress:
        """The progress object (as the HTTP API's progress endpoint answers it)."""
        return self.run_state.progress()

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def summary(self) -> "ModelSummary":
        """Layers, output shapes, parameter counts and the training-memory estimate of this run's model."""
        from .summary import run_summary

        return run_summary(self)

    def evaluate(self, df: Optional[pd.DataFrame] = None) -> "Evaluation":
        """Figures of the model on the validation split (``df=None``) or on a raw DataFrame with the
        target column (see :mod:`trainer.evaluation`). Not while the run is running or paused."""
        if self.state in (TrainingState.RUNNING, TrainingState.PAUSED):
            raise StateError(f"cannot evaluate while the run is {self.state.value}: its weights are still "
                             f"changing; wait for the end (or stop it) and evaluate then")
        from .evaluation import evaluate_validation

        if df is None:
            return evaluate_validation(self)
        from .artifacts import TrainedModel

        return TrainedModel.from_run(self).evaluate(df)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
                **options: Any) -> "LRFindResult":
        """Search for a learning rate (see :mod:`trainer.lr_finder`); weights, optimiser and RNG are
        left exactly as they were. Before start()/fit() or after the end. ``options``: ``rule``
        ("valley" or "steepest"), ``should_stop``, ``on_step``."""
        from .lr_finder import LRFinder

        return LRFinder(self, start_lr, end_lr, num_iter, **options).run()

    def add_callback(self, observer: Observer) -> Callable[[], None]:
        """Subscribe an observer (a Callback or ``fn(event, data)``); returns an unsubscribe function."""
        return self.events.add(observer)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.config.model_type} {self.state.value} "
                f"epoch {self.current_epoch}/{self.total_epochs}>")
