"""Early stopping on ``val_loss`` as a pure state machine over the metric sequence.

Improvement is strict, as in Keras, Lightning and fastai: an epoch improves when
``val_loss < best - min_delta``. ``wait`` counts epochs since the last improvement; the run stops
at the end of the epoch where ``wait`` reaches ``patience``. So with patience 3, a best at epoch 5
followed by three epochs without improvement stops after epoch 8. The best epoch (whose weights are
restored) is the last improving one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional


@dataclass
class EarlyStopping:
    patience: int
    min_delta: float
    enabled: bool = True
    best: float = math.inf
    best_epoch: Optional[int] = None
    wait: int = 0
    stopped_epoch: Optional[int] = None

    def update(self, epoch: int, value: float) -> tuple[bool, bool]:
        """Record ``epoch``'s val_loss; return (improved, should_stop)."""
        improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        stop = self.enabled and self.wait >= self.patience
        if stop:
            self.stopped_epoch = epoch
        return improved, stop

    def reason(self) -> str:
        return (f"val_loss did not improve by more than min_delta={self.min_delta:g} for "
                f"{self.patience} epochs (best {self.best:.6g} at epoch {self.best_epoch})")

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
