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


def create_backend(name: str, config: Any, data: Any, *args: Any, **kwargs: Any) -> Backend:
    module = backend_module(name)
    if getattr(data, "streamed", False):
        # Streamed data (trainer.data.streamed) is read batch by batch from its epoch stream.
        from .torch_stream import create as create_streaming
        return create_streaming(config, data, *args, **kwargs)
    return module.create(config, data, *args, **kwargs)


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
