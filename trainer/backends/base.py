"""What the epoch loop needs from a framework. The loop in ``trainer.loop`` owns the schedule,
early stopping, pause/resume and events; a backend owns tensors, the model and the optimiser."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import TrainingConfig
from ..data import PreparedData
from ..metrics import split_metrics


class BackendUnavailable(ImportError):
    """The chosen framework is not installed; the message names the package to install."""


class Backend(ABC):
    name: str = ""

    def __init__(self, config: TrainingConfig, data: PreparedData, seed: int, model: Any = None):
        self.config = config
        self.data = data
        self.seed = seed

    @property
    @abstractmethod
    def device_name(self) -> str: ...

    @abstractmethod
    def set_learning_rate(self, lr: float) -> None: ...

    def dropout_layers(self) -> int:
        """How many dropout layers the model has (a steered run may change their rate)."""
        return 0

    def set_dropout(self, rate: float) -> None:
        """Set every dropout layer's rate, from the next batch (between slices only)."""
        raise NotImplementedError(f"the {self.name!r} backend cannot change dropout while training")

    def set_batch_size(self, batch_size: int) -> None:
        """Batches of ``batch_size`` from the next :meth:`begin_epoch` on (a steered run)."""
        self.batch_size = batch_size

    def interrupt(self) -> None:
        """Called from any thread right after a pause or stop request. A backend that runs several
        batches per call into the framework ends that call after the batch in progress."""

    @abstractmethod
    def begin_epoch(self, order: np.ndarray) -> int:
        """Start an epoch visiting training samples in ``order`` (positions); return the batch count."""

    @abstractmethod
    def train_batches(self, start: int, end: int, deadline: float,
                      interrupted: Callable[[], bool]) -> int:
        """Train batches ``start..end-1``, returning early (after a whole batch) once ``deadline``
        (a ``time.perf_counter`` value) passes or ``interrupted()`` is true. Returns the next batch."""

    @abstractmethod
    def running_loss(self) -> float:
        """Mean training loss of the current epoch so far (one host sync)."""

    def split_metrics(self, split: str, loss_sum: float, score_sum: float, count: int) -> dict[str, float]:
        """``<split>_loss`` and ``<split>_accuracy``/``<split>_mae`` from the sums over ``count`` samples."""
        pre = self.data.preprocessor
        return split_metrics(split, loss_sum, score_sum, count, pre.task, pre.target_std)

    @abstractmethod
    def end_epoch(self) -> dict[str, float]:
        """Training metrics of the finished epoch: train_loss and train_accuracy or train_mae."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation metrics: val_loss and val_accuracy or val_mae."""

    @abstractmethod
    def snapshot(self) -> Any:
        """A copy of the weights, for restoring the best epoch."""

    @abstractmethod
    def restore(self, snapshot: Any) -> None: ...

    @abstractmethod
    def save_model(self, directory: Path) -> dict[str, Any]:
        """Write the model into ``directory`` atomically; return metadata for ``load_predict_fn``."""

    @abstractmethod
    def predict_outputs(self, samples: np.ndarray) -> np.ndarray:
        """Raw model outputs (logits or scaled values), shape (n, n_outputs)."""

    def train_one_batch(self, positions: np.ndarray, lr: float) -> float:
        """Train one batch of the training samples at ``positions`` (as in :meth:`begin_epoch`'s
        order) at learning rate ``lr`` and return its loss. For the learning-rate finder: one host
        sync per batch, and the epoch's metric sums are left alone."""
        raise NotImplementedError(f"the {self.name!r} backend cannot run the learning-rate finder")

    # ------------------------------------------------------------------ checkpoints
    # Called between slices only (never while train_batches runs). See trainer/checkpoints.py.
    def checkpoint_state(self) -> dict[str, bytes]:
        """Model, optimiser and RNG state as named files, everything training depends on."""
        raise NotImplementedError(f"the {self.name!r} backend cannot write checkpoints; set checkpoints=False")

    def load_checkpoint_state(self, members: dict[str, bytes]) -> None:
        """Restore what :meth:`checkpoint_state` wrote; ValueError when it does not fit this model."""
        raise NotImplementedError(f"the {self.name!r} backend cannot resume from checkpoints")

    def epoch_totals(self) -> dict[str, Any]:
        """The running epoch's partial metric sums (JSON-safe, exact), for a mid-epoch checkpoint."""
        raise NotImplementedError(f"the {self.name!r} backend cannot write checkpoints; set checkpoints=False")

    def restore_epoch_totals(self, totals: dict[str, Any]) -> None:
        """Continue the epoch begun with :meth:`begin_epoch` from :meth:`epoch_totals`' sums."""
        raise NotImplementedError(f"the {self.name!r} backend cannot resume from checkpoints")

    def encode_weights(self, snapshot: Any) -> bytes:
        """A :meth:`snapshot` as bytes (the best epoch's weights file)."""
        raise NotImplementedError(f"the {self.name!r} backend cannot write checkpoints; set checkpoints=False")

    def decode_weights(self, data: bytes) -> Any:
        """The snapshot :meth:`encode_weights` encoded, ready for :meth:`restore`."""
        raise NotImplementedError(f"the {self.name!r} backend cannot resume from checkpoints")

