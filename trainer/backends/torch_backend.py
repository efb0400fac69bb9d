"""PyTorch backend: pre-shuffled tensor slices, device-side metric sums, one sync per slice.

Per batch the loop runs the model, the loss, backward, the fused optimiser step
(``torch_fused_step``), adds the loss to a device-side sum and keeps the predicted classes; nothing
reads a value back until the slice ends (``running_loss``). On the CPU the intra-op thread count is
chosen per run (``torch_threads``); on a GPU ``cuda_graphs=True`` replays the forward and backward
pass as CUDA graphs.
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, TrainingConfig
from ..data import PreparedData
from .base import Backend
from .torch_fused_step import FusedAdamStep
from .torch_models import build_model
from .torch_saving import EVAL_CHUNK, load_predict_fn, predict, save_model, to_bytes
from .torch_setup import MixedPrecision, cuda_graph_step, loss_fn, make_optimizer, resolve_device
from .torch_threads import TrainThreads

# load_predict_fn is what trainer.artifacts looks up on a backend module to load a saved model.
__all__ = ["TorchBackend", "create", "load_predict_fn", "resolve_device"]

# torch's RNG is process-global. Each run keeps its own RNG state and swaps it in while it
# computes, so concurrent runs in one kernel stay reproducible; the lock serialises the swaps.
_RNG_LOCK = threading.RLock()
# Above this many bytes an epoch's windows are gathered per batch instead of all at once.
_EPOCH_GATHER_LIMIT = 512 * 2**20
# Full batches a thread-count trial trains (fewer when steps are slow); see TrainThreads.choose.
_PROBE_BATCHES = 16
# Above this many bytes of weights and optimiser state a model is not copied for thread trials.
_PROBE_COPY_LIMIT = 64 * 2**20


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
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters(), config.learning_rate, self.device)
        self._acc_dtype = torch.float64 if self.device.type != "mps" else torch.float32
        self.amp = MixedPrecision(self.device, config.mixed_precision)
        self.threads = TrainThreads(self.device)
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self._optimizer_step = FusedAdamStep(self.optimizer)
        self._epoch_pred: Optional[torch.Tensor] = None     # classification: each sample's predicted class
        self._forward_loss: Callable[[torch.Tensor, torch.Tensor], Any] = self._eager_forward_loss
        if config.cuda_graphs:
            if self.device.type != "cuda":
                raise ConfigError.single("cuda_graphs", True,
                                         f"CUDA graphs need a CUDA device, and this run trains on {self.device}; "
                                         f"set device='cuda' on a machine with an NVIDIA GPU, or cuda_graphs=False")
            self._forward_loss = cuda_graph_step(self.model, self.classification)

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
        return loss_fn(out, target, self.classification, reduction)

    def _eager_forward_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(xb)
        return out, self._loss(out, yb)

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _dropouts(self) -> list[nn.Module]:
        return [m for m in self.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]

    def dropout_layers(self) -> int:
        return len(self._dropouts())

    def set_dropout(self, rate: float) -> None:
        # Read at every forward pass (a CUDA-graph step recompiles on the changed attribute).
        for module in self._dropouts():
            module.p = rate

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
        # Gathering the shuffled epoch once and slicing it beats indexing per batch: one gather
        # instead of one per batch, and each batch a contiguous view.
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
        if self.classification and (self._epoch_pred is None or len(self._epoch_pred) != len(ids)):
            self._epoch_pred = torch.empty(len(ids), dtype=torch.int64, device=self.device)
        self.model.train()

    def _batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self._n)
        xb = self._epoch_x[lo:hi] if self._epoch_x is not None else self.samples[self._epoch_ids[lo:hi]]
        return xb, self._epoch_y[lo:hi]

    def train_batches(self, start: int, end: int, deadline: float, interrupted: Callable[[], bool]) -> int:
        bs, n = self.batch_size, self._n
        forward_loss, opt, step, amp = self._forward_loss, self.optimizer, self._optimizer_step, self.amp
        ex, ey, loss_sum, params = self._epoch_x, self._epoch_y, self._loss_sum, self._params
        classification, pred = self.classification, self._epoch_pred
        b = start
        with self._rng():
            if not self.threads.decided:
                self._choose_threads(interrupted)
            with self.threads.applied():
                while b < end:
                    lo, hi = b * bs, min((b + 1) * bs, n)
                    xb = ex[lo:hi] if ex is not None else self.samples[self._epoch_ids[lo:hi]]
                    yb = ey[lo:hi]
                    with amp.autocast():
                        out, loss = forward_loss(xb, yb)
                    # What opt.zero_grad(set_to_none=True) does, without its per-call bookkeeping
                    # (a sixth of a batch-32 step's Python time).
                    for p in params:
                        p.grad = None
                    amp.backward_step(loss, opt, step)
                    # Nothing here waits for the device. The loss sum is added in float64, batch by
                    # batch, so it does not depend on where slices end; predicted classes are kept
                    # and compared once per slice (an integer count: any grouping is exact).
                    loss_sum.add_(loss.detach(), alpha=hi - lo)
                    if classification:
                        torch.argmax(out.detach(), 1, out=pred[lo:hi])
                    else:
                        self._score_sum += (out.detach().reshape(-1) - yb).abs().sum()
                    self._seen += hi - lo
                    b += 1
                    if interrupted() or time.perf_counter() >= deadline:
                        break
        if classification and b > start:
            lo, hi = start * bs, min(b * bs, n)
            self._score_sum += (pred[lo:hi] == ey[lo:hi]).sum()
        return b

    # ------------------------------------------------------------------ intra-op threads
    def _choose_threads(self, interrupted: Callable[[], bool]) -> None:
        """Decide the run's thread count by training copies of the model (see TrainThreads.choose).

        Runs inside ``_rng()`` and leaves the random stream, the model and the optimiser as they
        were, so the run's results do not depend on whether or how the trials ran."""
        nb = math.ceil(self._n / self.batch_size)
        full = [b for b in range(min(nb, _PROBE_BATCHES + 1)) if (b + 1) * self.batch_size <= self._n]
        size = sum(t.numel() * t.element_size() for t in self.model.state_dict().values()) * 4
        if len(full) < 3 or size > _PROBE_COPY_LIMIT:
            self.threads.keep(self.threads.base, "too few batches or too large a model to time")
            return
        tail = [nb - 1] if self._n % self.batch_size else []
        rng = torch.get_rng_state()
        plan: dict[str, list[int]] = {}

        def trial(count: int) -> tuple[float, list[torch.Tensor]]:
            model, opt = copy.deepcopy((self.model, self.optimizer))
            optimizer_step = FusedAdamStep(opt)
            torch.set_rng_state(rng)
            produced: list[torch.Tensor] = []

            def step(b: int) -> None:
                xb, yb = self._batch(b)
                with self.amp.autocast():
                    out = model(xb)
                    loss = self._loss(out, yb)
                opt.zero_grad(set_to_none=True)
                self.amp.backward_step(loss, opt, optimizer_step)
                produced.extend((out.detach(), loss.detach()))

            began = time.perf_counter()
            step(full[0])                       # first calls allocate and dispatch more than later ones
            if not plan:
                first = time.perf_counter() - began
                plan["timed"] = full[1:1 + max(2, min(_PROBE_BATCHES, int(0.015 / max(first, 1e-6))))]
            began = time.perf_counter()
            for b in plan["timed"]:
                step(b)
            seconds = (time.perf_counter() - began) / len(plan["timed"])
            for b in tail:
                step(b)
            produced.extend(p.detach() for p in model.parameters())
            produced.extend(v for state in opt.state.values() for v in state.values() if torch.is_tensor(v))
            return seconds, produced

        try:
            self.threads.choose(trial, interrupted)
        except Exception as exc:   # a model deepcopy cannot copy, say: train as the user set up
            self.threads.keep(self.threads.base, f"no trial possible ({type(exc).__name__}: {exc})")
        finally:
            torch.set_rng_state(rng)

    @property
    def train_threads(self) -> int:
        """Intra-op threads the training slices run with (the user's count until decided)."""
        return self.threads.count

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
        for lo in range(0, len(self.val_ids), EVAL_CHUNK):
            ids = self.val_ids[lo:lo + EVAL_CHUNK]
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
        return save_model(self.model, self.device, directory, self.custom_model, self.spec)

    @torch.inference_mode()
    def predict_outputs(self, samples: np.ndarray) -> np.ndarray:
        return predict(self.model, samples, self.device)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict[str, bytes]:
        state: dict[str, Any] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "rng_cpu": self._rng_cpu}
        if self._rng_cuda is not None:
            state["rng_cuda"] = self._rng_cuda
        if self.amp.scaler is not None:
            state["grad_scaler"] = self.amp.scaler.state_dict()
        return {"torch_state.pt": to_bytes(state)}

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
        return to_bytes({k: v.cpu() for k, v in snapshot.items()})

    def decode_weights(self, data: bytes) -> dict[str, torch.Tensor]:
        return torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)


def check_checkpoint_state(members: dict[str, bytes]) -> None:
    """Raise if a checkpoint's PyTorch state does not load (before a model exists to load it into)."""
    state = torch.load(io.BytesIO(members["torch_state.pt"]), map_location="cpu", weights_only=True)
    missing = [k for k in ("model", "optimizer", "rng_cpu") if k not in state]
    if missing:
        raise ValueError(f"torch_state.pt lacks {missing}")


def create(config: TrainingConfig, data: PreparedData, seed: int, model: Any = None) -> TorchBackend:
    return TorchBackend(config, data, seed, model)
