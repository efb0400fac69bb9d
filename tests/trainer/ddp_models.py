"""Modules for the distributed tests. They live in an importable module (not a test file's own
namespace) because the spawned rank processes import the class of a model they receive."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class FailsOnRank(nn.Module):
    """A small MLP whose training forward pass raises a GPU out-of-memory error on one rank after
    ``after`` batches, as a real one would; the other ranks are then left waiting in a collective."""

    def __init__(self, n_features: int, n_outputs: int, rank: int = 1, after: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, n_outputs))
        self.rank, self.after, self.calls = rank, after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and dist.is_initialized() and dist.get_rank() == self.rank:
            self.calls += 1
            if self.calls > self.after:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated by the test model)")
        return self.net(x)


class DiesOnRank(FailsOnRank):
    """Like FailsOnRank, but the process is killed outright (as the kernel's OOM killer would)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and dist.is_initialized() and dist.get_rank() == self.rank:
            self.calls += 1
            if self.calls > self.after:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
        return self.net(x)
