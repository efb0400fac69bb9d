"""The process side of a DistributedDataParallel run: :class:`RankTrainer` and the entry points
that start one (from :mod:`trainer.distributed.launcher`'s spawned processes, or ``torchrun``).

Every rank runs the ordinary epoch loop of :class:`trainer.Trainer` on its own device. The loop's
decisions stay identical on every rank because they only read values that are identical there:
the agreed control request (``control.py``), the globally summed training metrics and the
all-reduced validation metrics (``torch_ddp.py``), and the shared seed. Only rank 0 has observers
and an ``output_path``, so only it reports events and writes artifacts and checkpoints.
"""
from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Union

import pandas as pd

from ..config import ConfigError, TrainingConfig
from ..events import Callback, Observer
from ..run import FINAL_STATES, StateError, Trainer, TrainingState
from .control import PAUSE, POLL_SECONDS, RUN, STOP
from .plan import DevicePlan

log = logging.getLogger("trainer")


@dataclass
class RankContext:
    """What this process is within the run; set once per process before its RankTrainer is built."""

    rank: int
    world_size: int
    device: str                                 # "cpu" or "cuda:N"
    request: Callable[[], int]                  # this process's external request (RUN, PAUSE, STOP)
    cpu_group: Any = None                       # a gloo group for control polls when NCCL is the default


_CONTEXT: Optional[RankContext] = None


def set_context(context: RankContext) -> None:
    global _CONTEXT
    _CONTEXT = context


def current_context() -> RankContext:
    if _CONTEXT is None:
        raise RuntimeError("RankTrainer runs only inside a rank process (trainer.distributed sets it up); "
                           "use trainer.Trainer with devices=N instead")
    return _CONTEXT


class RankTrainer(Trainer):
    """The epoch loop of one rank; pause, resume and stop are agreed with the other ranks."""

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = ()):
        self.context = current_context()
        self._own_request = RUN
        super().__init__(config, data, model=model, callbacks=callbacks)
        if self.context.rank != 0:
            self.config = self.config.replace(output_path=None)

    def _create_backend(self, model: Any) -> Any:
        if self.config.backend != "torch":
            raise ConfigError.single("backend", self.config.backend,
                                     "tensorflow trains on several GPUs inside one process (MirroredStrategy): "
                                     "start it with Trainer(...) or epoch-train, not with torchrun")
        from .torch_ddp import DDPBackend

        ctx = self.context
        config = self.config.replace(device=ctx.device, devices=1)
        return DDPBackend(config, self.data, self.seed, model, rank=ctx.rank, world_size=ctx.world_size,
                          request=self._request, cpu_group=ctx.cpu_group)

    # ------------------------------------------------------------------ control
    def _request(self) -> int:
        return max(self.context.request(), self._own_request)

    def _apply(self, decision: int) -> None:
        if decision == STOP:
            self._stop_requested = True
        self._pause_requested = decision == PAUSE

    def _interrupted(self) -> bool:
        self._apply(self.backend.agreed)
        return self._pause_requested or self._stop_requested

    def agree_now(self) -> None:
        """Agree on the requests made before the first batch (all ranks call it together)."""
        self._apply(self.backend.control.poll())

    def _check_running(self, action: str) -> None:
        if self._state in FINAL_STATES:
            raise StateError(f"cannot {action}: the run has already ended ({self._state.value})")

    # A rank's own pause/resume/stop (e.g. from a callback) become its request, agreed like any other.
    def pause(self) -> None:
        self._check_running("pause")
        self._own_request = PAUSE

    def resume(self) -> None:  # type: ignore[override]
        self._check_running("resume")
        self._own_request = RUN

    def stop(self) -> None:
        self._check_running("stop")
        self._own_request = STOP

    async def _hold_paused(self, epoch: int) -> None:
        self._set_state(TrainingState.PAUSED, f"paused in epoch {epoch} after batch {self.batch}")
        since = time.perf_counter()
        while True:
            decision = await asyncio.to_thread(self.backend.control.poll)
            self._apply(decision)
            if decision != PAUSE:
                break
            await asyncio.sleep(POLL_SECONDS)
        self._paused_seconds += time.perf_counter() - since
        if not self._stop_requested:
            self._set_state(TrainingState.RUNNING, "resumed")


# ---------------------------------------------------------------------- spawned by the launcher

@dataclass
class SpawnJob:
    """What the launcher sends each spawned rank (pickled once per process)."""

    config: dict[str, Any]
    data: pd.DataFrame
    model: Optional[bytes]            # torch.save of the user's module, or None
    plan: DevicePlan
    store_port: int
    resume_from: Optional[str] = None  # an output_path to continue from its checkpoint


class Forwarder(Callback):
    """Rank 0's observer: every event, with the loop position, goes to the launching process."""

    def __init__(self, conn: Any):
        self.conn = conn

    def on_event(self, run: Any, event: str, data: dict[str, Any]) -> None:
        if event == "state_change" and data["new"] in {s.value for s in FINAL_STATES}:
            # What the launcher needs before it shows the end: the reason, the files, the weights.
            self.conn.send(("summary", {"reason": run.reason, "error": run.error, "finished_at": run.finished_at,
                                        "artifacts_path": str(run.artifacts_path) if run.artifacts_path else None,
                                        "last_checkpoint": str(run.last_checkpoint) if run.last_checkpoint else None}))
            self.conn.send(("weights", _state_dict_bytes(run.backend.model)))
        position = {"batch": run.batch, "num_batches": run.num_batches, "current_epoch": run.current_epoch}
        self.conn.send(("event", event, data, position))


def _state_dict_bytes(model: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _exit_with_parent() -> None:
    """End this process when the launching kernel dies, instead of waiting in a collective forever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _share_cores(world_size_here: int) -> None:
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // world_size_here))


def _init_process_group(plan_backend: str, rank: int, world_size: int, device: str, store: Any = None) -> Any:
    """Join the group; returns a gloo group for control polls when the default one is NCCL."""
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if store is not None:
        dist.init_process_group(plan_backend, store=store, rank=rank, world_size=world_size)
    else:
        dist.init_process_group(plan_backend)
    return dist.new_group(backend="gloo") if plan_backend != "gloo" else None


def spawn_main(rank: int, job: SpawnJob, request: Any, conn: Any) -> None:
    """Entry point of a rank process started by :class:`~trainer.distributed.launcher.LaunchedTrainer`;
    ``request`` is the shared control value, ``conn`` this rank's pipe to the launcher."""
    import signal

    import torch
    import torch.distributed as dist

    # Ctrl-C in a terminal reaches the whole process group; the launcher turns it into an agreed stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    logging.basicConfig(level=logging.WARNING, format=f"[epoch-widgets rank {rank}] %(levelname)s %(message)s")
    plan, code = job.plan, 1
    try:
        device = plan.rank_device(rank)
        if plan.device_type == "cpu":
            _share_cores(plan.world_size)
        store = dist.TCPStore("127.0.0.1", job.store_port, is_master=False)
        cpu_group = _init_process_group(plan.comm_backend, rank, plan.world_size, device, store)
        set_context(RankContext(rank, plan.world_size, device, lambda: request.value, cpu_group))
        model = torch.load(io.BytesIO(job.model), weights_only=False) if job.model is not None else None
        callbacks = [Forwarder(conn)] if rank == 0 else []
        if job.resume_from:
            run = RankTrainer.from_checkpoint(job.resume_from, job.data, config=job.config, model=model,
                                              callbacks=callbacks)
        else:
            run = RankTrainer(job.config, job.data, model=model, callbacks=callbacks)
        run.agree_now()
        run.fit()
        if run.state == TrainingState.FAILED and rank != 0:
            conn.send(("failed", rank, run.error or run.reason))
        code = 0 if run.state != TrainingState.FAILED else 1
    except BaseException as exc:  # reported to the launcher, which ends the other ranks
        log.debug("rank %d failed", rank, exc_info=True)
        try:
            conn.send(("failed", rank, f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        # The message is in the pipe before this rank leaves the group, so the launcher hears the
        # cause before the other ranks' collectives fail for want of this one.
        conn.close()
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:
                pass
    os._exit(code)


# ---------------------------------------------------------------------- under torchrun

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
    import sys

    import torch.distributed as dist

    from ..cli import ConsoleProgress, UsageError, _parse_value, _read_config
    from ..tables import read_table

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
        settings = _read_config(args.config)
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
            settings[key] = _parse_value(value)
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
        _share_cores(local_world)
    _install_signal_requests()
    cpu_group = _init_process_group(backend, rank, world, device)
    try:
        if config.seed is None:
            # Every rank must shuffle and initialise alike: rank 0 draws the seed for all.
            import numpy as np

            seed = [int(np.random.SeedSequence().entropy % 2**32) if rank == 0 else None]
            dist.broadcast_object_list(seed, src=0)
            config = config.replace(seed=seed[0])
        set_context(RankContext(rank, world, device, lambda: _SIGNAL_REQUEST, cpu_group))
        callbacks = [ConsoleProgress()] if rank == 0 else []
        if args.resume:
            if not config.output_path:
                raise UsageError("--resume needs output_path in the config")
            run = RankTrainer.from_checkpoint(config.output_path, df, config=config, callbacks=callbacks)
        else:
            run = RankTrainer(config, df, callbacks=callbacks)
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
