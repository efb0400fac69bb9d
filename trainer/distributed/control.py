"""How the ranks of a DistributedDataParallel run agree to pause, resume or stop at the same batch.

Collective operations pair up in call order, so every rank must leave the batch loop after the
same batch, or the others wait forever in their next gradient all-reduce. Each rank has a local
*request* (RUN, PAUSE or STOP: from the launching kernel's shared memory, or a signal under
torchrun); the agreed decision is the strongest request of any rank.

While training, the requests ride inside the gradient all-reduce that DDP runs anyway: a comm
hook appends them (and the batch's loss and score sums) to the first gradient bucket, so agreeing
costs no extra collective and no extra latency (``benchmarks/ddp_control.py`` measures this
against a separate per-batch all-reduce). Every rank reads the summed request after the same
batch: on the CPU right after it, on a GPU one batch later (a non-blocking copy, so the GPU queue
never drains for it). While paused there is no backward pass, so the ranks poll with a tiny
all-reduce on a gloo group every ``POLL_SECONDS`` until the decision changes.

Steering (``trainer.steering``) rides along the same way: rank 0 adds the number of changes the
launcher has posted (the others add 0), so every rank reads the same count after the same batch
(:attr:`ControlAgreement.steered`) and applies the changes up to it at the same step.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

RUN, PAUSE, STOP = 0, 1, 2
NAMES = {RUN: "run", PAUSE: "pause", STOP: "stop"}
POLL_SECONDS = 0.05


def encode(request: int, world_size: int) -> float:
    """A request as a summand: any STOP outweighs PAUSE from every rank."""
    return {RUN: 0.0, PAUSE: 1.0, STOP: float(world_size + 1)}[request]


def decode(total: float, world_size: int) -> int:
    if total >= world_size + 0.5:
        return STOP
    return PAUSE if total >= 0.5 else RUN


class ControlAgreement:
    """Per-rank half of the agreement; ``hook`` is registered on the DDP model."""

    def __init__(self, world_size: int, request: Callable[[], int], device: torch.device,
                 cpu_group: Any = None, steer: Callable[[], int] = lambda: 0):
        self.world_size = world_size
        self.request = request
        self.steer = steer                  # changes posted so far (rank 0), 0 elsewhere
        self.steered = 0                    # the agreed count of changes posted
        self.cpu_group = cpu_group          # a gloo group for polls (None: the default group)
        self._cuda = device.type == "cuda"
        self.extras: Optional[torch.Tensor] = None   # set by the backend before each backward
        self.result: Optional[torch.Tensor] = None   # the summed extras and request after it
        self._pending: Optional[tuple[Any, torch.Tensor]] = None

    # ------------------------------------------------------------------ while training
    # No annotations here: DDP checks them against dist.GradBucket and Future, and postponed
    # (string) annotations fail that check.
    def hook(self, _state, bucket):  # type: ignore[no-untyped-def]
        """DDP comm hook: average the gradients; bucket 0 also sums the extras and the request."""
        buf = bucket.buffer()
        world = self.world_size
        if bucket.index() != 0 or self.extras is None:
            return dist.all_reduce(buf, async_op=True).get_future().then(lambda f: f.value()[0].div_(world))
        flag = torch.tensor([float(self.steer()), encode(self.request(), world)], dtype=torch.float64,
                            device=buf.device)
        extras = torch.cat([self.extras.to(torch.float64), flag])
        k = extras.numel()
        if buf.dtype in (torch.float32, torch.float64):
            packed = torch.cat([buf, extras.to(buf.dtype)])

            def unpack(fut: torch.futures.Future) -> torch.Tensor:
                out = fut.value()[0]
                self.result = out[-k:].to(torch.float64)
                return out[:-k].div_(world)

            return dist.all_reduce(packed, async_op=True).get_future().then(unpack)
        # Half-precision gradients would round the sums: reduce them separately, in float64.
        grads = dist.all_reduce(buf, async_op=True).get_future()
        sums = dist.all_reduce(extras, async_op=True).get_future()

        def both(_fut: torch.futures.Future) -> torch.Tensor:
            self.result = sums.value()[0]
            return grads.value()[0].div_(world)

        return torch.futures.collect_all([grads, sums]).then(both)

    def settle(self) -> int:
        """The agreed request after a batch, identical on every rank."""
        assert self.result is not None, "the comm hook did not run in this batch"
        if not self._cuda:
            self.steered = int(self.result[-2])
            return decode(float(self.result[-1]), self.world_size)
        host = torch.empty(2, dtype=torch.float64, pin_memory=True)
        host.copy_(self.result[-2:], non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self._pending = self._pending, (event, host)
        if previous is None:
            return RUN
        previous[0].synchronize()
        self.steered = int(previous[1][0])
        return decode(float(previous[1][1]), self.world_size)

    # ------------------------------------------------------------------ between batches
    def poll(self) -> int:
        """Agree now (a blocking all-reduce): at the start and while paused."""
        # A decision still in flight belongs to the batches before; after a poll it is stale.
        self._pending = None
        t = torch.tensor([self.request(), self.steer()], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.cpu_group)
        self.steered = int(t[1])
        return int(t[0])
