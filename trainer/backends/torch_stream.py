"""The torch backend on streamed data: the model, optimiser, RNG and checkpoints of
:class:`~trainer.backends.torch_backend.TorchBackend`, with batches read from the data's epoch
stream (:mod:`trainer.data.streamed`) instead of gathered from arrays held in memory.

The seam is :meth:`begin_epoch` (which receives the epoch's index rather than a permutation) and
:meth:`train_batches`: a call starting at the batch where the previous one ended continues the
stream; any other start (a run resumed mid-epoch) opens the stream at that batch.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from ..config import ConfigError, TrainingConfig
from ..data.streamed import StreamedData
from .torch_backend import TorchBackend
from .torch_saving import EVAL_CHUNK


class StreamingTorchBackend(TorchBackend):
    data: StreamedData    # type: ignore[assignment]

    def _place_data(self, data: Any) -> None:
        self._stream: Any = None
        self._batches: Optional[Iterator[tuple[np.ndarray, np.ndarray]]] = None
        self._next = 0

    def _probe_input(self) -> torch.Tensor:
        return torch.from_numpy(self.data.probe(2)).to(self.device)

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)

    def begin_epoch(self, order: Any) -> int:
        """Start epoch ``order`` (its index: the stream's order is drawn from the seed and it)."""
        self._close()
        self._stream = self.data.epoch(int(order), self.batch_size)
        self._loss_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        self._score_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        self._seen = 0
        self.model.train()
        return self._stream.num_batches

    def _close(self) -> None:
        if self._batches is not None:
            self._batches.close()        # ends the read-ahead thread
        self._batches = None

    def train_batches(self, start: int, end: int, deadline: float, interrupted: Callable[[], bool]) -> int:
        if self._batches is None or self._next != start:
            self._close()
            self._batches = self._stream.batches(start)
        forward_loss, opt, step, amp, params = self._forward_loss, self.optimizer, self._optimizer_step, self.amp, self._params
        b = start
        with self._rng():
            if not self.threads.decided:
                self.threads.keep(self.threads.base, "streamed data: batches are read as they train")
            with self.threads.applied():
                while b < end:
                    xb, yb = self._tensors(*next(self._batches))
                    with amp.autocast():
                        out, loss = forward_loss(xb, yb)
                    for p in params:
                        p.grad = None
                    amp.backward_step(loss, opt, step)
                    # float64 sums batch by batch, and an integer count: the same whatever the slices.
                    self._loss_sum.add_(loss.detach(), alpha=len(yb))
                    if self.classification:
                        self._score_sum += (out.detach().argmax(1) == yb).sum()
                    else:
                        self._score_sum += (out.detach().reshape(-1) - yb).abs().sum()
                    self._seen += len(yb)
                    b += 1
                    if interrupted() or time.perf_counter() >= deadline:
                        break
        self._next = b
        if b >= self._stream.num_batches:
            self._close()
        return b

    def train_one_batch(self, positions: np.ndarray, lr: float) -> float:
        raise ConfigError.single("streaming", self.config.streaming,
                                 "the learning-rate finder needs the data in memory; run it with streaming=False "
                                 "on a sample of the table, then train streamed")

    @torch.inference_mode()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        loss_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        score_sum = torch.zeros((), dtype=self._acc_dtype, device=self.device)
        count = 0
        for x, y, _ in self.data.validation_batches(EVAL_CHUNK):
            xb, yb = self._tensors(x, y)
            with self.amp.autocast():
                out = self.model(xb)
                loss_sum += self._loss(out, yb, reduction="sum")
            if self.classification:
                score_sum += (out.argmax(1) == yb).sum()
            else:
                score_sum += (out.reshape(-1) - yb).abs().sum()
            count += len(y)
        return self.split_metrics("val", float(loss_sum), float(score_sum), count)


def create(config: TrainingConfig, data: StreamedData, seed: int, model: Any = None) -> StreamingTorchBackend:
    return StreamingTorchBackend(config, data, seed, model)
