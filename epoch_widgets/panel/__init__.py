"""The ``TrainingPanel`` (``training_panel.py``) and its parts: the settings form, the actions behind
its buttons, the followed run's adapter, progress, notices and the tabs below the charts. The parts
talk to each other through the run's events and the panel, never by reaching into one another."""
from __future__ import annotations

from typing import Any

__all__ = ["TrainingPanel"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing one part (fields, messages) does not build the whole panel's imports.
    if name == "TrainingPanel":
        from .training_panel import TrainingPanel
        return TrainingPanel
    raise AttributeError(f"module 'epoch_widgets.panel' has no attribute {name!r}")
