"""Notebook widgets and the Jupyter server extension for epoch-by-epoch training."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["TrainingPanel", "__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    # jupyter-config/ enables "epoch_widgets"; the HTTP API extension itself lives in .server.
    from .server import _jupyter_server_extension_points as points
    return points()


def __getattr__(name: str) -> Any:
    # The panel pulls in ipywidgets, bqplot and pandas; the server extension loads this package
    # too and needs none of them, so the panel is imported on first use.
    if name == "TrainingPanel":
        from .panel import TrainingPanel
        return TrainingPanel
    raise AttributeError(f"module 'epoch_widgets' has no attribute {name!r}")
