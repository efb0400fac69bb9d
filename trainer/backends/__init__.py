"""Framework backends, imported lazily so ``import trainer`` needs neither torch nor TensorFlow."""
from __future__ import annotations

import importlib
from typing import Any

from .base import Backend, BackendUnavailable

_MODULES = {"torch": ("trainer.backends.torch_backend", "torch", "epoch-widgets[torch]  (or: pip install torch)"),
            "tensorflow": ("trainer.backends.tf_backend", "tensorflow", "epoch-widgets[tensorflow]  (or: pip install tensorflow-cpu)")}


def backend_module(name: str) -> Any:
    """The module implementing backend ``name``; BackendUnavailable names what to install."""
    if name not in _MODULES:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {sorted(_MODULES)}")
    module, framework, install = _MODULES[name]
    try:
        importlib.import_module(framework)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name!r} needs {framework}, which is not installed ({exc}). "
            f"Install it with: pip install {install}; or choose another backend.") from None
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise BackendUnavailable(f"backend {name!r} is not available in this version of epoch-widgets") from None
        raise


def create_backend(name: str, *args: Any, **kwargs: Any) -> Backend:
    return backend_module(name).create(*args, **kwargs)


def available_backends() -> dict[str, bool]:
    """Which backends can be used here (their framework imports)."""
    out = {}
    for name in _MODULES:
        try:
            backend_module(name)
            out[name] = True
        except BackendUnavailable:
            out[name] = False
    return out


__all__ = ["Backend", "BackendUnavailable", "backend_module", "create_backend", "available_backends"]
