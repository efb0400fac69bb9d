"""PyTorch backend: pre-shuffled tensor slices, device-side metric sums, one sync per slice."""
from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_write_bytes, atomic_write_text
from ..config import ConfigError, TrainingConfig
from ..data import PreparedData
from .base import Backend
from .torch_models import build_model

# torch's RNG is process-global. Each run keeps its own RNG state and swaps it in while it
# computes, so concurrent runs in one kernel stay reproducible; the lock serialises the swaps.
_RNG_LOCK = threading.RLock()
# Above this many bytes an epoch's windows are gathered per batch instead of all at once.
_EPOCH_GATHER_LIMIT = 512 * 2**20
_EVAL_CHUNK = 8192


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError.single("device", requested, "CUDA is not available here (torch sees no GPU); use device='cpu' or 'auto'")
        index = torch.device(requested).index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError.single("device", requested, f"only {torch.cuda.device_count()} GPU(s) are visible")
    return torch.device(requested)


def _make_optimizer(name: str, params: Any, lr: float, device: torch.device) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    # The fused kernel is the largest single speed-up on CPU and GPU (DESIGN.md); older builds
    # without it for this device fall back to the default implementation.
    try:
        return cls(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, lr=lr)


# ---------------------------------------------------------------------- mixed precision
class MixedPrecision:
    """``config.mixed_precision`` for torch: autocast the forward pass and the loss to bfloat16
    (CPU, and GPUs that support it: no loss scaling needed) or float16 (older GPUs, with a
    GradScaler so small gradients do not underflow). Disabled, it adds nothing to a batch."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device_type = device.type
        self.dtype: Optional[torch.dtype] = None
        self.scaler: Optional[torch.amp.GradScaler] = None
        if enabled:
            bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if bf16 else torch.float16
            if self.dtype == torch.float16:
                self.scaler = torch.amp.GradScaler(device.type)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, config: TrainingConfig, data: PreparedData, seed: int, model: Optional[nn.Module] = None):
        super().__init__(config, data, seed, model)
        self.device = resolve_device(config.device)
        pre = data.preprocessor
        self.classification = pre.task == "classification"
        self.batch_size = config.batch_size
        self.window = data.window
        self.spec = {"model_type": config.model_type, "n_features": pre.n_features, "n_outputs": pre.n_outputs,
                     "hidden_units": list(config.hidden_units), "dropout_rate": config.dropout_rate,
                     "sequence_length": data.window}
        self.custom_model = model is not None
        if model is not None and not isinstance(model, nn.Module):
            raise ConfigError.single("model", type(model).__name__, "expected a torch.nn.Module for the torch backend")

        with _RNG_LOCK:
            saved = torch.get_rng_state()
            torch.manual_seed(seed)
            self.model = (model if model is not None else build_model(self.spec)).to(self.device)
            self._rng_cpu = torch.get_rng_state()
            torch.set_rng_state(saved)
        self._rng_cuda = None
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                g = torch.Generator(device=self.device)
                g.manual_seed(seed)
                self._rng_cuda = g.get_state()

        x = torch.from_numpy(data.x).to(self.device)
        self.y = torch.from_numpy(data.y).to(self.device)
        # A sample is a row (mlp) or a window ending at a row; windows are a strided view, not a copy.
        self.samples = x if self.window is None else x.unfold(0, self.window, 1).transpose(1, 2)
        offset = 0 if self.window is None else self.window - 1
        self.sample_targets = self.y[offset:]
        # from_numpy shares memory with the prepared arrays: on the CPU the data exists once.
        self.train_ids = torch.from_numpy(data.train_index - offset if offset else data.train_index).to(self.device)
        self.val_ids = torch.from_numpy(data.val_index - offset if offset else data.val_index).to(self.device)
        self._epoch_buffers: tuple[Optional[torch.Tensor], Optional[torch.Tensor]] = (None, None)
        self._check_model_output()
        self.optimizer = _make_optimizer(config.optimizer, self.model.parameters(), config.learning_rate, self.device)
        self._acc_dtype = torch.float64 if self.device.type != "mps" else torch.float32
        self.amp = MixedPrecision(self.device, config.mixed_precision)

    # ------------------------------------------------------------------ helpers
    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    def _check_model_output(self) -> None:
        probe = self.samples[self.train_ids[:2]]
        want = self.spec["n_outputs"]
        try:
            self.model.eval()
            with torch.no_grad():
                out = self.model(probe)
        except Exception as exc:
            shape = tuple(probe.shape)
            raise ConfigError.single("model", type(self.model).__name__,
                                     f"the model failed on an input batch of shape {shape} ({type(exc).__name__}: {exc})") from None
        ok = out.dim() == 2 and out.shape[1] == want or (want == 1 and out.dim() == 1)
        if not ok:
            raise ConfigError.single("model", type(self.model).__name__,
                                     f"the model returned shape {tuple(out.shape)}; expected (batch, {want})")

    @contextlib.contextmanager
    def _rng(self) -> Iterator[None]:
        with _RNG_LOCK:
            saved = torch.get_rng_state()
            torch.set_rng_state(self._rng_cpu)
            if self._rng_cuda is not None:
                saved_cuda = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(self._rng_cuda, self.device)
            try:
                yield
            finally:
                self._rng_cpu = torch.get_rng_state()
                torch.set_rng_state(saved)
                if self._rng_cuda is not None:
                    self._rng_cuda = torch.cuda.get_rng_state(self.device)
                    torch.cuda.set_rng_state(saved_cuda, self.device)

    def _loss(self, out: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.classification:
            return F.cross_entropy(out, target, reduction=reduction)
        return F.mse_loss(out.reshape(-1), target, reduction=reduction)

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # ------------------------------------------------------------------ training
    def begin_epoch(self, order: np.ndarray) -> int:
        ids = self.train_ids[torch.from_numpy(order).to(self.device)]
        self._gather_epoch(ids)
        self._n = len(ids)
        return math.ceil(self._n / self.batch_size)

    def _gather_epoch(self, ids: torch.Tensor) -> None:
        """Gather the epoch's samples in visiting order and zero its metric sums."""
        self._epoch_ids = ids
        per_sample = self.samples[0].numel() * self.samples.element_size()
        # Gathering the shuffled epoch once and slicing it beats indexing per batch (DESIGN.md).
        # Each epoch gathers into the previous epoch's buffers (freed before a new size is
        # allocated), so one epoch's copy exists at a time.
        n = len(ids)
        gather_x = per_sample * n <= _EPOCH_GATHER_LIMIT
        bx, by = self._epoch_buffers
        self._epoch_x = self._epoch_y = None
        self._epoch_buffers = (None, None)
        bx = bx if gather_x and bx is not None and len(bx) == n else None
        by = by if by is not None and len(by) == n else None
        if gather_x and bx is None:
            bx = self.samples.new_empty((n, *self.samples.shape[1:]))
        if by is None:
            by = self.sample_targets.new_empty((n,))
        self._epoch_buffers = (bx, by)
        self._epoch_x = torch.index_select(self.samples, 0, ids, out=bx) if gather_x else None
        self._epoch_y = torch.index_select(self.sample_targets, 0, ids, out=by)
        self._loss_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        self._score_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        self._seen = 0
        self.model.train()

    def train_batches(self, start: int, end: int, deadline: float, interrupted: Callable[[], bool]) -> int:
        bs = self.batch_size
        model, opt, ex, ey = self.model, self.optimizer, self._epoch_x, self._epoch_y
        loss_sum, score_sum = self._loss_sum, self._score_sum
        b = start
        with self._rng():
            while b < end:
                lo, hi = b * bs, min((b + 1) * bs, self._n)
                xb = ex[lo:hi] if ex is not None else self.samples[self._epoch_ids[lo:hi]]
                yb = ey[lo:hi]
                with self.amp.autocast():
                    out = model(xb)
                    loss = self._loss(out, yb)
                opt.zero_grad(set_to_none=True)
                self.amp.backward_step(loss, opt)
                n = hi - lo
                loss_sum += loss.detach() * n
                if self.classification:
                    score_sum += (out.argmax(1) == yb).sum()
                else:
                    score_sum += (out.detach().reshape(-1) - yb).abs().sum()
                self._seen += n
                b += 1
                if interrupted() or time.perf_counter() >= deadline:
                    break
        return b

    def train_one_batch(self, positions: np.ndarray, lr: float) -> float:
        # Apart from train_batches on purpose: that loop is tuned for throughput, this one
        # serves the learning-rate finder and reads the loss after every batch.
        self.set_learning_rate(lr)
        ids = self.train_ids[torch.from_numpy(np.asarray(positions, dtype=np.int64)).to(self.device)]
        self.model.train()
        with self._rng():
            xb, yb = self.samples[ids], self.sample_targets[ids]
            with self.amp.autocast():
                loss = self._loss(self.model(xb), yb)
            self.optimizer.zero_grad(set_to_none=True)
            self.amp.backward_step(loss, self.optimizer)
        return float(loss.detach())

    def running_loss(self) -> float:
        return float(self._loss_sum) / max(self._seen, 1)

    def end_epoch(self) -> dict[str, float]:
        return self.split_metrics("train", float(self._loss_sum), float(self._score_sum), self._seen)

    @torch.inference_mode()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        loss_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        score_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        for lo in range(0, len(self.val_ids), _EVAL_CHUNK):
            ids = self.val_ids[lo:lo + _EVAL_CHUNK]
            yb = self.sample_targets[ids]
            with self.amp.autocast():
                out = self.model(self.samples[ids])
                loss_sum += self._loss(out, yb, reduction="sum")
            if self.classification:
                score_sum += (out.argmax(1) == yb).sum()
            else:
                score_sum += (out.reshape(-1) - yb).abs().sum()
        return self.split_metrics("val", float(loss_sum), float(score_sum), len(self.val_ids))

    # ------------------------------------------------------------------ weights
    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(snapshot)

    def save_model(self, directory: Path) -> dict[str, Any]:
        import io
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in self.model.state_dict().items()}, buf)
        atomic_write_bytes(directory / "model.pt", buf.getvalue())
        meta: dict[str, Any] = {"framework": "torch", "torch_version": torch.__version__,
                                "weights": "model.pt", "custom_model": self.custom_model}
        if self.custom_model:
            # A user's own module is pickled whole; loading it needs its class importable. A class
            # that cannot be pickled (defined inside a function) still leaves weights, history and
            # config behind: load_model then needs an instance passed in.
            meta["module_class"] = f"{type(self.model).__module__}.{type(self.model).__qualname__}"
            meta["module"] = None
            buf = io.BytesIO()
            try:
                torch.save(self.model.cpu() if self.device.type != "cpu" else self.model, buf)
            except (AttributeError, TypeError, pickle.PicklingError) as exc:
                meta["module_error"] = f"{type(exc).__name__}: {exc}"
            else:
                atomic_write_bytes(directory / "model_module.pt", buf.getvalue())
                meta["module"] = "model_module.pt"
            finally:
                self.model.to(self.device)
        else:
            meta["spec"] = self.spec
        return meta

    @torch.inference_mode()
    def predict_outputs(self, samples: np.ndarray) -> np.ndarray:
        return _predict(self.model, samples, self.device)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict[str, bytes]:
        state: dict[str, Any] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "rng_cpu": self._rng_cpu}
        if self._rng_cuda is not None:
            state["rng_cuda"] = self._rng_cuda
        if self.amp.scaler is not None:
            state["grad_scaler"] = self.amp.scaler.state_dict()
        return {"torch_state.pt": _to_bytes(state)}

    def load_checkpoint_state(self, members: dict[str, bytes]) -> None:
        if "torch_state.pt" not in members:
            raise ValueError(f"the checkpoint holds no PyTorch state (members: {sorted(members)}); "
                             f"was it written by another backend?")
        # Everything loads to the CPU first: RNG states must be CPU tensors, and load_state_dict
        # copies weights and optimiser state onto the parameters' device (also a different one).
        state = torch.load(io.BytesIO(members["torch_state.pt"]), map_location="cpu", weights_only=True)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"the checkpoint's model or optimiser state does not fit this model: {exc}") from None
        self._rng_cpu = state["rng_cpu"]
        if self._rng_cuda is not None and "rng_cuda" in state:
            self._rng_cuda = state["rng_cuda"]
        if self.amp.scaler is not None and "grad_scaler" in state:
            self.amp.scaler.load_state_dict(state["grad_scaler"])

    def epoch_totals(self) -> dict[str, Any]:
        # float() of a float64 sum is exact, so a resumed epoch adds to the very same values.
        return {"loss_sum": float(self._loss_sum), "score_sum": float(self._score_sum), "seen": self._seen}

    def restore_epoch_totals(self, totals: dict[str, Any]) -> None:
        self._loss_sum.fill_(totals["loss_sum"])
        self._score_sum.fill_(totals["score_sum"])
        self._seen = int(totals["seen"])

    def encode_weights(self, snapshot: dict[str, torch.Tensor]) -> bytes:
        return _to_bytes({k: v.cpu() for k, v in snapshot.items()})

    def decode_weights(self, data: bytes) -> dict[str, torch.Tensor]:
        return torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)


def _to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _predict(model: nn.Module, samples: np.ndarray, device: torch.device) -> np.ndarray:
    model.eval()
    outs = []
    with torch.inference_mode():
        for lo in range(0, len(samples), _EVAL_CHUNK):
            xb = torch.from_numpy(np.ascontiguousarray(samples[lo:lo + _EVAL_CHUNK])).to(device)
            out = model(xb)
            outs.append(out.reshape(len(xb), -1).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def create(config: TrainingConfig, data: PreparedData, seed: int, model: Any = None) -> TorchBackend:
    return TorchBackend(config, data, seed, model)


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
    return lambda samples: _predict(model, samples, device)
