"""Saving a torch model with its run's artifacts, and loading it back to predict."""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes
from .torch_models import build_model

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
        # A user's own module is pickled whole; loading it needs its class importable. A class
        # that cannot be pickled (defined inside a function) still leaves weights, history and
        # config behind: load_model then needs an instance passed in.
        meta["module_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
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


def load_predict_fn(directory: Path, meta: dict[str, Any], model: Optional[nn.Module] = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from sample arrays to raw outputs, for a saved model (CPU unless a GPU is free)."""
    device = torch.device("cpu")
    weights = torch.load(directory / meta["weights"], map_location=device, weights_only=True)
    if model is None and meta.get("custom_model"):
        if not meta.get("module"):
            raise RuntimeError(
                f"the saved model is a custom {meta.get('module_class')} that could not be saved whole "
                f"({meta.get('module_error')}); pass an instance: load_model(path, model=YourModule(...))")
        try:
            model = torch.load(directory / meta["module"], map_location=device, weights_only=False)
        except (AttributeError, ModuleNotFoundError) as exc:
            raise RuntimeError(
                f"the saved model is a custom {meta.get('module_class')} whose class cannot be imported here ({exc}); "
                f"import it first, or pass an instance: load_model(path, model=YourModule(...))") from None
    if model is None:
        model = build_model(meta["spec"])
    model.load_state_dict(weights)
    model.to(device)
    return lambda samples: predict(model, samples, device)
