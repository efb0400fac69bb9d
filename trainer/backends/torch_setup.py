"""What a torch run is built from: its device, optimiser, loss, mixed precision and CUDA-graph step."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError


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


def make_optimizer(name: str, params: Any, lr: float, device: torch.device) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    # The fused kernel is the largest single speed-up on CPU and GPU (one kernel for every
    # parameter instead of several per parameter); older builds without it for this device fall
    # back to the default implementation.
    try:
        return cls(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, lr=lr)


def loss_fn(out: torch.Tensor, target: torch.Tensor, classification: bool, reduction: str = "mean") -> torch.Tensor:
    if classification:
        return F.cross_entropy(out, target, reduction=reduction)
    return F.mse_loss(out.reshape(-1), target, reduction=reduction)


class ForwardLoss(nn.Module):
    """The model and its loss as one module, so that ``torch.compile`` captures both together."""

    def __init__(self, model: nn.Module, classification: bool):
        super().__init__()
        self.model = model
        self.classification = classification

    def forward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(xb)
        return out, loss_fn(out, yb, self.classification)


def cuda_graph_step(model: nn.Module, classification: bool) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """``cuda_graphs=True``: forward, loss and backward replayed as CUDA graphs, one launch each
    instead of one per op. torch.compile's "reduce-overhead" mode records them (after a first
    eager call) and keeps one graph per batch shape: the full batches and the shorter last one.
    Dropout masks then come from the compiled kernels' random stream: a seeded run repeats
    itself, but differs from the same run with cuda_graphs=False."""
    return torch.compile(ForwardLoss(model, classification), mode="reduce-overhead", dynamic=False)


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

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      step: Optional[Callable[[], None]] = None) -> None:
        """Backward pass and optimiser step; ``step`` (if given) does ``optimizer.step()``."""
        if self.scaler is None:
            loss.backward()
            (step or optimizer.step)()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
