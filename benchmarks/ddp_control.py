"""What agreeing on pause/resume/stop costs per batch in a DistributedDataParallel run.

Two gloo processes on the CPU train the same MLP three ways, taking turns round by round inside
the same processes (so a busy machine slows all three alike):

- ``plain``: DDP's own gradient averaging and nothing else, the floor;
- ``hook``: ``trainer.distributed.control``'s comm hook, which carries each rank's request and the
  batch's loss and score sums inside the first gradient bucket's all-reduce (what the trainer uses);
- ``flag``: plain DDP plus a separate blocking all-reduce of a control flag after every batch
  (the obvious alternative).

    python benchmarks/ddp_control.py                  # batch 32 and 256 (global), 300 steps x 5 rounds
    python benchmarks/ddp_control.py --steps 100 --rounds 3

Prints the median microseconds per step of each and the ratios to ``plain``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainer.distributed.control import RUN, ControlAgreement

MODES = ("plain", "hook", "flag")


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                         nn.Linear(32, 2))


def rank_main(rank: int, world: int, port: int, args: Any, results: Any) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    store = dist.TCPStore("127.0.0.1", port, is_master=False)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    flag = torch.zeros(1, dtype=torch.int32)
    gen = torch.Generator().manual_seed(rank)
    for batch in args.batch_sizes:
        per_rank = batch // world
        x = torch.randn(per_rank * 64, 20, generator=gen)
        y = torch.randint(0, 2, (per_rank * 64,), generator=gen)
        setups = {}
        for mode in MODES:
            net = model()
            ddp = DistributedDataParallel(net)
            control = None
            if mode == "hook":
                control = ControlAgreement(world, lambda: RUN, torch.device("cpu"))
                ddp.register_comm_hook(None, control.hook)
            setups[mode] = (ddp, torch.optim.Adam(net.parameters(), 1e-3), control)

        def steps(mode: str, n: int) -> float:
            ddp, opt, control = setups[mode]
            started = time.perf_counter()
            for i in range(n):
                lo = (i % 64) * per_rank
                out = ddp(x[lo:lo + per_rank])
                loss = F.cross_entropy(out, y[lo:lo + per_rank], reduction="sum")
                if control is not None:
                    control.extras = torch.stack([loss.detach(), loss.detach()])
                opt.zero_grad(set_to_none=True)
                (loss * (world / batch)).backward()
                opt.step()
                if mode == "hook":
                    control.settle()
                elif mode == "flag":
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    int(flag[0])
            return time.perf_counter() - started

        for mode in MODES:
            steps(mode, 30)         # warm-up
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            for mode in order:
                dist.barrier()
                times[mode].append(steps(mode, args.steps) / args.steps)
        if rank == 0:
            results.put((batch, {m: statistics.median(t) for m, t in times.items()}))
    dist.destroy_process_group()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256], help="global batch sizes")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--world", type=int, default=2, help="processes")
    args = ap.parse_args()
    store = dist.TCPStore("127.0.0.1", 0, None, True, wait_for_workers=False)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, args.world, store.port, args, results)) for r in range(args.world)]
    for p in procs:
        p.start()
    print(f"{args.world} gloo processes on the CPU, MLP 20-128-64-32-2, Adam; median of {args.rounds} rounds "
          f"x {args.steps} steps")
    print(f"{'global batch':>12}  {'plain us/step':>13}  {'hook us/step':>12}  {'flag us/step':>12}  "
          f"{'hook/plain':>10}  {'flag/plain':>10}")
    for _ in args.batch_sizes:
        batch, t = results.get(timeout=1800)
        print(f"{batch:>12}  {t['plain'] * 1e6:>13.0f}  {t['hook'] * 1e6:>12.0f}  {t['flag'] * 1e6:>12.0f}  "
              f"{t['hook'] / t['plain']:>10.3f}  {t['flag'] / t['plain']:>10.3f}")
    for p in procs:
        p.join()
    return 0 if all(p.exitcode == 0 for p in procs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
