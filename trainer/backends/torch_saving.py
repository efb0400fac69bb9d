"""Saving a torch model with its run's artifacts, and loading it back to predict."""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..confined import ConfinementError, confined_path, open_confined
from .torch_models import build_model
from .user_model import build_user_model, factory_name, missing_model_message, recorded_class

# Rows per forward pass when predicting or validating, so memory stays flat on long tables.
EVAL_CHUNK = 8192


def save_model(model: nn.Module, device: torch.device, directory: Path, custom_model: bool,
               spec: Any) -> dict[str, Any]:
    """Write ``model.pt`` (and a custom module whole) atomically; return the metadata ``load_predict_fn`` reads."""
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(directory / "model.pt", buf.getvalue())
    meta: dict[str, Any] = {"framework": "torch", "torch_version": torch.__version__,
                            "weights": "model.pt", "custom_model": custom_model}
    if custom_model:
        # load_model rebuilds a user's module from its class (passed in, or recorded here by name)
        # and loads the weights. The module is also pickled whole, for load_model(trust_pickle=True)
        # only; a class that cannot be pickled (defined inside a function) just leaves that out.
        meta["module_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
        meta["factory"] = factory_name(type(model))
        meta["module"] = None
        buf = io.BytesIO()
        try:
            torch.save(model.cpu() if device.type != "cpu" else model, buf)
        except (AttributeError, TypeError, pickle.PicklingError) as exc:
            meta["module_error"] = f"{type(exc).__name__}: {exc}"
        else:
            atomic_write_bytes(directory / "model_module.pt", buf.getvalue())
            meta["module"] = "model_module.pt"
        finally:
            model.to(device)
    else:
        meta["spec"] = spec
    return meta


def to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def predict(model: nn.Module, samples: np.ndarray, device: torch.device) -> np.ndarray:
    model.eval()
    outs = []
    with torch.inference_mode():
        for lo in range(0, len(samples), EVAL_CHUNK):
            xb = torch.from_numpy(np.ascontiguousarray(samples[lo:lo + EVAL_CHUNK])).to(device)
            out = model(xb)
            outs.append(out.reshape(len(xb), -1).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def load_predict_fn(directory: Path, meta: dict[str, Any], model: Any = None,
                    trust_pickle: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A function from sample arrays to raw outputs, for a saved model (on the CPU).

    Only tensors are unpickled (``weights_only=True``). A custom module is built from ``model``
    (see :func:`~trainer.backends.user_model.build_user_model`) or from the class recorded at save
    time when its module is imported here; ``trust_pickle=True`` alone unpickles the saved module."""
    device = torch.device("cpu")
    weights = _load_file(directory, meta.get("weights"), "weights", weights_only=True)
    if model is not None:
        model = build_user_model(model, nn.Module, "torch.nn.Module")
    elif meta.get("custom_model"):
        model = _custom_model(directory, meta, trust_pickle)
    else:
        model = build_model(meta["spec"])
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise RuntimeError(f"the saved weights do not fit the {type(model).__name__} given ({str(exc)[:500]}); "
                           f"pass model= built with the same layers as the one trained") from None
    model.to(device)
    return lambda samples: predict(model, samples, device)


def _load_file(directory: Path, name: Any, what: str, weights_only: bool) -> Any:
    """torch.load of a file metadata.json names, kept inside ``directory`` (no '..', no absolute
    path, no link leading out, no link swapped in before the open)."""
    try:
        with open_confined(directory, confined_path(directory, name, f"metadata.json's {what} file")) as fh:
            return torch.load(fh, map_location="cpu", weights_only=weights_only)
    except ConfinementError as exc:
        raise ValueError(f"refusing to load from {str(directory)!r}: {exc}") from None


def _custom_model(directory: Path, meta: dict[str, Any], trust_pickle: bool) -> nn.Module:
    if trust_pickle and meta.get("module"):
        try:
            return _load_file(directory, meta["module"], "module", weights_only=False)
        except (AttributeError, ModuleNotFoundError) as exc:
            raise RuntimeError(
                f"the saved model is a custom {meta.get('module_class')} whose class cannot be imported here ({exc}); "
                f"import it first, or pass it: load_model(path, model=YourModule)") from None
    cls = recorded_class(meta, nn.Module)
    if cls is None:
        message = missing_model_message(meta, "torch.nn.Module", pickled=bool(meta.get("module")))
        if trust_pickle:
            message += f" (this folder holds no pickled module: {meta.get('module_error') or 'none was saved'})"
        raise RuntimeError(message)
    try:
        return cls()
    except TypeError as exc:
        raise RuntimeError(f"{missing_model_message(meta, 'torch.nn.Module', pickled=bool(meta.get('module')))} "
                           f"({cls.__qualname__}() needs arguments: {exc})") from None
