"""Notebook widgets and the Jupyter server extension for epoch-by-epoch training.

``panel/`` is the ``TrainingPanel`` and its parts, ``charts/`` the figures shared by the panel, its
Runs tab and ``compare_runs``, ``server/`` the HTTP API extension.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["DataPicker", "LRFinderView", "RunsView", "TrainingPanel", "__version__", "compare_runs", "evaluation_view"]

# Public name -> the module that defines it.
_PUBLIC = {
    "TrainingPanel": ".panel.training_panel",
    "DataPicker": ".panel.data_picker",
    "compare_runs": ".charts.compare",
    "RunsView": ".charts.compare",
    "evaluation_view": ".charts.evaluation_view",
    "LRFinderView": ".charts.lr_finder_view",
}


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    # jupyter-config/ enables "epoch_widgets"; the HTTP API extension itself lives in .server.
    from .server import _jupyter_server_extension_points as points
    return points()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # `jupyter labextension develop` links labextension/'s build output (see docs/lab.md).
    return [{"src": "labextension", "dest": "epoch-widgets"}]


def __getattr__(name: str) -> Any:
    # The panel and charts pull in ipywidgets, bqplot and pandas; the server extension loads this
    # package too and needs none of them, so they are imported on first use.
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module 'epoch_widgets' has no attribute {name!r}")
