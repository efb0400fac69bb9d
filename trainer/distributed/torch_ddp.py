"""One rank of a DistributedDataParallel run: the PyTorch backend on a shard of every batch.

Batches are global: batch ``b`` of an epoch is positions ``b*batch_size ..`` of
``trainer.loop.epoch_order``, exactly as on one device, and rank ``r`` of ``N`` trains on the
``r``-th of ``N`` equal slices of it. Each rank's loss is its samples' summed loss times
``N / global_batch``, so DDP's gradient average is the mean gradient of the whole global batch,
the same step a single process takes (a short last batch splits as evenly as it can; a rank left
without a sample runs one with weight 0, because every rank must join every all-reduce).

The training sums (loss, score) travel with the gradients (see ``control.py``), so every rank
holds the global sums: ``running_loss`` and ``end_epoch`` need no collective and agree on every
rank. Validation is split between the ranks and its sums all-reduced, then broadcast from rank 0,
so early stopping and the plateau schedule decide on bit-identical numbers everywhere.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..backends.torch_backend import TorchBackend
from ..backends.torch_saving import EVAL_CHUNK
from ..config import TrainingConfig
from ..data import PreparedData
from .control import RUN, ControlAgreement


def shard_positions(n: int, batch_size: int, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank ``rank``'s slice of every global batch of an ``n``-sample epoch.

    Returns (positions into the epoch order, per-batch offsets into those positions (len
    batches + 1), global batch sizes)."""
    batches = math.ceil(n / batch_size)
    starts = np.arange(batches, dtype=np.int64) * batch_size
    sizes = np.minimum(batch_size, n - starts)
    lo = starts + sizes * rank // world_size
    hi = starts + sizes * (rank + 1) // world_size
    counts = hi - lo
    offsets = np.concatenate([[0], np.cumsum(counts)])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)
    return np.repeat(lo, counts) + within, offsets, sizes


class DDPBackend(TorchBackend):
    """``TorchBackend`` for one rank; ``config.device`` is this rank's own device."""

    def __init__(self, config: TrainingConfig, data: PreparedData, seed: int, model: Optional[nn.Module] = None, *,
                 rank: int, world_size: int, request: Callable[[], int], cpu_group: Any = None,
                 steer: Callable[[], int] = lambda: 0):
        super().__init__(config, data, seed, model)
        self.rank, self.world_size = rank, world_size
        if rank:
            # Rank 0 keeps the single-process random stream; the others draw their own dropout masks.
            self._reseed(seed, 0)
        self.control = ControlAgreement(world_size, request, self.device, cpu_group, steer)
        self.agreed = RUN
        ids = [self.device.index] if self.device.type == "cuda" else None
        # Construction broadcasts rank 0's weights, so every replica starts identical.
        self.ddp = DistributedDataParallel(self.model, device_ids=ids, output_device=ids[0] if ids else None)
        self.ddp.register_comm_hook(None, self.control.hook)

    def _reseed(self, seed: int, salt: int) -> None:
        derived = int(np.random.SeedSequence([seed, self.rank, salt]).generate_state(1)[0])
        self._rng_cpu = torch.Generator().manual_seed(derived).get_state()
        if self._rng_cuda is not None:
            self._rng_cuda = torch.Generator(device=self.device).manual_seed(derived).get_state()

    @property
    def device_name(self) -> str:
        return f"{super().device_name}, rank {self.rank} of {self.world_size}"

    # ------------------------------------------------------------------ training
    def begin_epoch(self, order: np.ndarray) -> int:
        positions, self._offsets, self._sizes = shard_positions(len(order), self.batch_size, self.rank,
                                                                self.world_size)

        def to_ids(pos: np.ndarray) -> torch.Tensor:
            return self.train_ids[torch.from_numpy(np.ascontiguousarray(order[pos])).to(self.device)]

        # A rank with no sample in a short last batch still runs the batch's first one, weighted 0.
        self._fallback_ids = to_ids(np.arange(len(self._sizes), dtype=np.int64) * self.batch_size)
        self._gather_epoch(to_ids(positions))
        self._n = len(order)
        return len(self._sizes)

    def train_batches(self, start: int, end: int, deadline: float, interrupted: Callable[[], bool]) -> int:
        ddp, opt, ex, ey = self.ddp, self.optimizer, self._epoch_x, self._epoch_y
        world, control = self.world_size, self.control
        b = start
        with self._rng():
            while b < end:
                lo, hi = int(self._offsets[b]), int(self._offsets[b + 1])
                if hi > lo:
                    xb = ex[lo:hi] if ex is not None else self.samples[self._epoch_ids[lo:hi]]
                    yb = ey[lo:hi]
                else:
                    fallback = self._fallback_ids[b:b + 1]
                    xb, yb = self.samples[fallback], self.sample_targets[fallback]
                weight = 1.0 if hi > lo else 0.0
                with self.amp.autocast():
                    out = ddp(xb)
                    loss_sum = self._loss(out, yb, reduction="sum") * weight
                if self.classification:
                    score = (out.detach().argmax(1) == yb).sum() * weight
                else:
                    score = (out.detach().reshape(-1).float() - yb).abs().sum() * weight
                control.extras = torch.stack([loss_sum.detach().float(), score.float()])
                opt.zero_grad(set_to_none=True)
                self.amp.backward_step(loss_sum * (world / float(self._sizes[b])), opt)
                summed = control.result
                self._loss_sum += summed[0]
                self._score_sum += summed[1]
                self._seen += int(self._sizes[b])
                self.agreed = control.settle()
                b += 1
                if interrupted() or time.perf_counter() >= deadline:
                    break
        return b

    # ------------------------------------------------------------------ validation
    @torch.inference_mode()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        n = len(self.val_ids)
        mine = self.val_ids[n * self.rank // self.world_size:n * (self.rank + 1) // self.world_size]
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        for lo in range(0, len(mine), EVAL_CHUNK):
            ids = mine[lo:lo + EVAL_CHUNK]
            yb = self.sample_targets[ids]
            with self.amp.autocast():
                out = self.model(self.samples[ids])
                sums[0] += self._loss(out, yb, reduction="sum")
            if self.classification:
                sums[1] += (out.argmax(1) == yb).sum()
            else:
                sums[1] += (out.reshape(-1).float() - yb).abs().sum()
        dist.all_reduce(sums)
        dist.broadcast(sums, src=0)
        return self.split_metrics("val", float(sums[0]), float(sums[1]), n)

    # ------------------------------------------------------------------ checkpoints
    def load_checkpoint_state(self, members: dict[str, bytes]) -> None:
        super().load_checkpoint_state(members)
        if self.rank:
            # The checkpoint holds rank 0's random stream; the others derive theirs again.
            self._reseed(self.seed, 1)
