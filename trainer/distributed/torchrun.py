"""``python -m trainer.distributed``: one rank of a multi-process (multi-GPU, multi-node) run
started by ``torchrun``. Rank 0 prints progress and writes ``output_path``; SIGTERM or SIGINT
stop after an agreed batch, SIGUSR1 pauses and SIGUSR2 resumes."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Optional

from ..config import ConfigError, TrainingConfig
from ..resume import plan_resume
from ..state import TrainingState
from .control import PAUSE, RUN, STOP
from .rank import RankContext, RankRun, init_process_group, share_cores

log = logging.getLogger("trainer")

_SIGNAL_REQUEST = RUN


def _install_signal_requests() -> None:
    """SIGTERM or SIGINT stop after an agreed batch; SIGUSR1 pauses and SIGUSR2 resumes."""
    import signal

    def handler(code: int) -> Callable[[int, Any], None]:
        def set_request(_signum: int, _frame: Any) -> None:
            global _SIGNAL_REQUEST
            if _SIGNAL_REQUEST != STOP:     # a stop is final
                _SIGNAL_REQUEST = code
        return set_request

    signal.signal(signal.SIGTERM, handler(STOP))
    signal.signal(signal.SIGINT, handler(STOP))
    signal.signal(signal.SIGUSR1, handler(PAUSE))
    signal.signal(signal.SIGUSR2, handler(RUN))


def torchrun_plan(config: TrainingConfig, world_size: int, local_rank: int) -> tuple[str, str]:
    """(torch.distributed backend, this rank's device) for a rank started by torchrun."""
    import torch

    if config.device != "cpu" and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ConfigError.single("devices", world_size,
                                     f"this node starts more processes than it has GPUs (local rank {local_rank}, "
                                     f"{torch.cuda.device_count()} GPU(s)); lower --nproc-per-node")
        return "nccl", f"cuda:{local_rank}"
    if config.device.startswith("cuda"):
        raise ConfigError.single("device", config.device, "torch sees no GPU on this node; use device='cpu' "
                                                          "(gloo between CPU processes) or 'auto'")
    return "gloo", "cpu"


def torchrun_main(argv: Optional[list[str]] = None) -> int:
    """``python -m trainer.distributed``: one rank of a run started by torchrun (see its --help)."""
    import argparse

    import torch.distributed as dist

    from ..cli import ConsoleProgress, UsageError, parse_value, read_config_file
    from ..data.tables import read_table

    ap = argparse.ArgumentParser(
        prog="python -m trainer.distributed",
        description="One rank of a multi-process (multi-GPU, multi-node) training run. Start it with torchrun, e.g. "
                    "torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 "
                    "-m trainer.distributed --config cfg.json --data data.parquet. Rank 0 prints progress and "
                    "writes output_path. SIGTERM or Ctrl-C stops after an agreed batch, SIGUSR1 pauses, SIGUSR2 resumes.")
    ap.add_argument("--config", required=True, help="JSON file with the training config")
    ap.add_argument("--data", help="CSV or Parquet file (default: the config's data_path)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config field (JSON value)")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_path")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the checkpoints of another run in output_path (refused otherwise)")
    args = ap.parse_args(argv)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        print("python -m trainer.distributed runs one rank of a torchrun job; start it with e.g. "
              "torchrun --standalone --nproc-per-node 2 -m trainer.distributed --config cfg.json --data data.csv "
              "(in a notebook or script use Trainer with devices=N instead)", file=sys.stderr)
        return 2
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    logging.basicConfig(level=logging.WARNING, format=f"[rank {rank}] %(levelname)s %(message)s")
    try:
        settings = read_config_file(args.config)
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
            settings[key] = parse_value(value)
        config = TrainingConfig.from_dict(settings)
        data_path = args.data or config.data_path
        if not data_path:
            raise UsageError("give --data FILE (or data_path in the config)")
        df = read_table(data_path)
        if config.batch_size % world:
            raise ConfigError.single("batch_size", config.batch_size,
                                     f"with {world} processes batch_size is the global batch, split evenly; "
                                     f"{config.batch_size} does not divide by {world}")
        backend, device = torchrun_plan(config, world, local_rank)
    except (UsageError, ConfigError) as exc:
        if rank == 0:
            print(f"trainer.distributed: {exc}", file=sys.stderr)
        return 2
    if config.devices not in (1, "auto", world) and rank == 0:
        log.warning("torchrun started %d processes; the config's devices=%r is ignored (torchrun's --nnodes and "
                    "--nproc-per-node decide)", world, config.devices)
    if device == "cpu":
        share_cores(local_world)
    _install_signal_requests()
    cpu_group = init_process_group(backend, rank, world, device)
    try:
        if config.seed is None:
            # Every rank must shuffle and initialise alike: rank 0 draws the seed for all.
            import numpy as np

            seed = [int(np.random.SeedSequence().entropy % 2**32) if rank == 0 else None]
            dist.broadcast_object_list(seed, src=0)
            config = config.replace(seed=seed[0])
        context = RankContext(rank, world, device, lambda: _SIGNAL_REQUEST, cpu_group)
        callbacks = [ConsoleProgress()] if rank == 0 else []
        plan = None
        if args.resume:
            if not config.output_path:
                raise UsageError("--resume needs output_path in the config")
            plan = plan_resume(config.output_path, df, config=config)
            config = plan.config
        run = RankRun(context, config, df, callbacks=callbacks, resume=plan, overwrite=args.overwrite)
        run.agree_now()
        started = time.perf_counter()
        run.fit()
        if rank == 0:
            print(f"{time.perf_counter() - started:.1f}s on {world} processes"
                  + (f"; artifacts in {run.artifacts_path}" if run.artifacts_path else ""))
        return 0 if run.state != TrainingState.FAILED else 1
    except (UsageError, ConfigError) as exc:
        if rank == 0:
            print(f"trainer.distributed: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
