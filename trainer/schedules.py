"""Learning-rate schedules, one implementation for every backend.

``step`` and ``cosine`` are pure functions of the epoch, so the panel can draw them before a run
starts. ``plateau`` is a small state machine fed one validation loss per epoch. Each matches
``torch.optim.lr_scheduler`` (StepLR, CosineAnnealingLR, ReduceLROnPlateau) epoch for epoch.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from .config import TrainingConfig

# ReduceLROnPlateau's defaults, which we keep: mode="min", threshold_mode="rel",
# threshold=1e-4, cooldown=0, min_lr=0, eps=1e-8. An epoch improves when
# val_loss < best * (1 - PLATEAU_THRESHOLD); after more than `patience` epochs in a row without
# improvement the rate is multiplied by `factor` and the count starts again.
PLATEAU_THRESHOLD = 1e-4
PLATEAU_EPS = 1e-8


def step_lr(base_lr: float, epoch: int, step_size: int, gamma: float) -> float:
    """StepLR: the rate used during 0-based ``epoch``."""
    return base_lr * gamma ** (epoch // step_size)


def cosine_lr(base_lr: float, epoch: int, T_max: int, eta_min: float) -> float:
    """CosineAnnealingLR's closed form (torch's recursive form equals it; past T_max it rises again)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / T_max)) / 2


class LRSchedule:
    """The learning rate for each epoch of one run; ``observe`` feeds it each epoch's val_loss."""

    def __init__(self, config: TrainingConfig):
        self.kind = config.learning_rate_scheduler
        self.base_lr = config.learning_rate
        self.step_size, self.gamma = config.step_size, config.gamma
        self.T_max, self.eta_min = config.T_max, config.eta_min
        self.patience, self.factor = config.patience, config.factor
        # The 0-based epoch the schedule counts from: 0, or where a steered run rebased it.
        self.origin = 0
        # plateau state
        self.plateau_lr = self.base_lr
        self.best = math.inf
        self.num_bad_epochs = 0

    def lr(self, epoch: int) -> float:
        """Rate for 0-based ``epoch`` (for plateau: given the losses observed so far)."""
        if self.kind == "step":
            return step_lr(self.base_lr, epoch - self.origin, self.step_size, self.gamma)
        if self.kind == "cosine":
            return cosine_lr(self.base_lr, epoch - self.origin, self.T_max, self.eta_min)
        if self.kind == "plateau":
            return self.plateau_lr
        return self.base_lr

    def observe(self, val_loss: float) -> None:
        if self.kind != "plateau":
            return
        if val_loss < self.best * (1 - PLATEAU_THRESHOLD):
            self.best = val_loss
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            new_lr = self.plateau_lr * self.factor
            if self.plateau_lr - new_lr > PLATEAU_EPS:
                self.plateau_lr = new_lr
            self.num_bad_epochs = 0

    def rebase(self, config: TrainingConfig, base_lr: float, origin: int) -> None:
        """Start again as ``config``'s schedule with ``base_lr`` as the rate of 0-based epoch
        ``origin`` (a steered run: see ``trainer.steering``); plateau keeps its count of epochs
        without improvement unless the kind changed."""
        if config.learning_rate_scheduler != self.kind:
            self.best, self.num_bad_epochs = math.inf, 0
        self.kind = config.learning_rate_scheduler
        self.step_size, self.gamma = config.step_size, config.gamma
        self.T_max, self.eta_min = config.T_max, config.eta_min
        self.patience, self.factor = config.patience, config.factor
        self.base_lr, self.origin, self.plateau_lr = base_lr, origin, base_lr

    def preview(self, epochs: int) -> list[float]:
        """Rates for epochs 0..epochs-1 as far as known before training (plateau: flat)."""
        fresh = LRSchedule.__new__(LRSchedule)
        fresh.__dict__.update(self.__dict__)
        fresh.plateau_lr = self.base_lr
        return [fresh.lr(e) for e in range(epochs)]

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_lr": self.plateau_lr, "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "base_lr": self.base_lr, "origin": self.origin}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Checkpoints of runs never steered (or written before steering existed) lack base_lr/origin.
        self.base_lr = state.get("base_lr", self.base_lr)
        self.origin = int(state.get("origin", 0))
        self.plateau_lr = state["plateau_lr"]
        self.best = state["best"]
        self.num_bad_epochs = state["num_bad_epochs"]


def preview_schedule(config: TrainingConfig, epochs: Optional[int] = None) -> list[float]:
    return LRSchedule(config).preview(epochs or config.epochs)
