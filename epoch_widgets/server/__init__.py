"""The epoch-training HTTP API as a Jupyter server extension (endpoints in docs/api.md, Server-Sent Events).

Importing this package is cheap: the extension application (tornado, jupyter_server) is imported
only when Jupyter asks for it.
"""
from __future__ import annotations

from typing import Any

from .urls import API_PREFIX


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Tell Jupyter Server where the extension application lives."""
    from .app import EpochTrainingApp

    return [{"module": "epoch_widgets.server", "app": EpochTrainingApp}]


def _load_jupyter_server_extension(serverapp: Any) -> Any:
    """Load the extension into ``serverapp`` (for tools that call the module-level hook)."""
    from .app import EpochTrainingApp

    return EpochTrainingApp._load_jupyter_server_extension(serverapp)


__all__ = ["API_PREFIX", "_jupyter_server_extension_points", "_load_jupyter_server_extension"]
