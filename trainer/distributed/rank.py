"""One rank of a DistributedDataParallel run: :class:`RankRun` and the entry point of a rank that
:class:`~trainer.distributed.launcher.LaunchedRun` spawned (``torchrun``'s is in ``torchrun.py``).

Every rank runs the ordinary epoch loop (:class:`trainer.loop.LocalRun`) on its own device. The
loop's decisions stay identical on every rank because they only read values that are identical
there: the agreed control request (``control.py``), the globally summed training metrics and the
all-reduced validation metrics (``torch_ddp.py``), and the shared seed. Only rank 0 has observers
and an ``output_path``, so only it reports events and writes artifacts and checkpoints.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NoReturn, Optional, Union

import pandas as pd

from .. import protocol
from ..config import ConfigError, TrainingConfig
from ..devices import usable_cores
from ..events import Observer
from ..loop import LocalRun
from ..resume import ResumePlan
from ..state import FINAL_STATES, FINAL_VALUES, StateError, TrainingState
from ..steering_loop import LoopSteering
from .control import PAUSE, POLL_SECONDS, RUN, STOP
from .plan import DevicePlan

log = logging.getLogger("trainer")


@dataclass
class RankContext:
    """What this process is within the run; given to its RankRun."""

    rank: int
    world_size: int
    device: str                                 # "cpu" or "cuda:N"
    request: Callable[[], int]                  # this process's external request (RUN, PAUSE, STOP)
    cpu_group: Any = None                       # a gloo group for control polls when NCCL is the default
    steer: Callable[[], int] = lambda: 0        # changes the launcher has posted (read on rank 0)
    store: Any = None                           # where the launcher posts them (``steer/<n>``)


class RankRun(LocalRun):
    """The epoch loop of one rank; pause, resume and stop are agreed with the other ranks."""

    def __init__(self, context: RankContext, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = (), resume: Optional[ResumePlan] = None,
                 overwrite: bool = True):
        self.context = context
        self._own_request = RUN
        # Only rank 0 writes to output_path, so only it checks for another run's checkpoints there;
        # a spawned rank's launcher has checked already (overwrite defaults to True).
        super().__init__(config, data, model=model, callbacks=callbacks, resume=resume,
                         overwrite=overwrite or context.rank != 0)
        if context.rank != 0:
            self.config = self.config.replace(output_path=None)
        self._steering = RankSteering(self, context.store)

    def _create_backend(self, model: Any, config: TrainingConfig) -> Any:
        if config.backend != "torch":
            raise ConfigError.single("backend", self.config.backend,
                                     "tensorflow trains on several GPUs inside one process (MirroredStrategy): "
                                     "start it with Trainer(...) or epoch-train, not with torchrun")
        from .torch_ddp import DDPBackend

        ctx = self.context
        config = config.replace(device=ctx.device, devices=1)
        return DDPBackend(config, self.data, self.seed, model, rank=ctx.rank, world_size=ctx.world_size,
                          request=self._request, cpu_group=ctx.cpu_group,
                          steer=ctx.steer if ctx.rank == 0 else lambda: 0)

    # ------------------------------------------------------------------ control
    def _request(self) -> int:
        return max(self.context.request(), self._own_request)

    def _apply(self, decision: int) -> None:
        if decision == STOP:
            self._stop_requested = True
        self._pause_requested = decision == PAUSE

    def _interrupted(self) -> bool:
        self._apply(self.backend.agreed)
        return self._pause_requested or self._stop_requested or self._steering.pending

    def _update(self, changes: dict[str, Any]) -> dict[str, Any]:
        raise StateError("cannot update one rank: every rank must change at the same step; call update() on "
                         "the run you started (Trainer(...) in the launching process)")

    def agree_now(self) -> None:
        """Agree on the requests made before the first batch (all ranks call it together)."""
        self._apply(self.backend.control.poll())

    def _check_running(self, action: str) -> None:
        if self.state in FINAL_STATES:
            raise StateError(f"cannot {action}: the run has already ended ({self.state.value})")

    # A rank's own pause/resume/stop (e.g. from a callback) become its request, agreed like any other.
    def pause(self) -> None:
        self._check_running("pause")
        self._own_request = PAUSE

    def resume(self) -> None:
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
            self._steering.apply_due(epoch, self.batch)      # changes agreed while paused
            if decision != PAUSE:
                break
            await asyncio.sleep(POLL_SECONDS)
        self._paused_seconds += time.perf_counter() - since
        if not self._stop_requested:
            self._set_state(TrainingState.RUNNING, "resumed")


class RankSteering(LoopSteering):
    """A rank's steering: the changes the launcher posted to the rendezvous store, applied by every
    rank up to the count the ranks agreed on (``control.py``), so all apply each at the same step."""

    def __init__(self, run: RankRun, store: Any):
        super().__init__(run)
        self._store = store
        self.applied = 0

    @property
    def pending(self) -> bool:
        return self._run.backend.control.steered > self.applied

    def apply_due(self, epoch: int, batch: int) -> None:
        agreed = self._run.backend.control.steered
        while self.applied < agreed:
            self.applied += 1
            changes = json.loads(self._store.get(f"steer/{self.applied}"))
            try:
                self.apply(changes, epoch, batch)
            except (ConfigError, StateError) as exc:     # every rank refuses alike; rank 0 tells the launcher
                self._run.events.emit("config_refused", {"message": str(exc), "errors": getattr(exc, "errors", None)})
        super().apply_due(epoch, batch)


# ---------------------------------------------------------------------- spawned by the launcher

@dataclass
class SpawnJob:
    """What the launcher hands each spawned rank (through a job file; see ``processes.py``)."""

    config: dict[str, Any]
    data: pd.DataFrame
    model: Optional[bytes]            # torch.save of the user's module, or None
    plan: DevicePlan
    store_port: int
    resume: Optional[ResumePlan] = None


class RankReporter(protocol.EventForwarder):
    """Rank 0's observer: every event goes to the launcher, and the trained weights just before
    the run's final state (so the launcher holds them when it shows the end)."""

    def __init__(self, conn: Any):
        super().__init__(conn.send)
        self.conn = conn

    def on_event(self, run: Any, name: str, data: dict[str, Any]) -> None:
        if name == "state_change" and data["new"] in FINAL_VALUES:
            self.conn.send({"kind": protocol.WEIGHTS, "data": _state_dict_bytes(run.backend.model)})
        super().on_event(run, name, data)


def _state_dict_bytes(model: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def exit_with_parent() -> None:
    """End this process when the launching kernel dies, instead of waiting in a collective forever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def exit_rank(code: int) -> NoReturn:
    """End this rank with ``code`` once its output is flushed, skipping interpreter teardown.

    The process group is destroyed by then, yet the run's DDP model and the gloo group it references
    stay alive until the interpreter tears down (``gc.collect()`` does not free them), and freeing
    them there can abort a rank that had finished ("terminate called without an active exception",
    exit -6). Every rank ends here, spawned by the launcher or started by torchrun.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def share_cores(world_size_here: int) -> None:
    import torch

    torch.set_num_threads(max(1, usable_cores() // world_size_here))


def init_process_group(plan_backend: str, rank: int, world_size: int, device: str, store: Any = None) -> Any:
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


def spawn_main(rank: int, job_file: str, request: Any, steer: Any, conn: Any) -> None:
    """Entry point of a rank process started by the launcher; ``request`` is the shared control
    value, ``steer`` the shared count of changes posted, ``conn`` this rank's pipe to the launcher."""
    import signal

    import torch
    import torch.distributed as dist

    # Ctrl-C in a terminal reaches the whole process group; the launcher turns it into an agreed stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    logging.basicConfig(level=logging.WARNING, format=f"[epoch-widgets rank {rank}] %(levelname)s %(message)s")
    code = 1
    try:
        with open(job_file, "rb") as fh:
            job: SpawnJob = pickle.load(fh)
        plan = job.plan
        conn.send({"kind": protocol.READY, "rank": rank})
        device = plan.rank_device(rank)
        if plan.device_type == "cpu":
            share_cores(plan.world_size)
        store = dist.TCPStore("127.0.0.1", job.store_port, is_master=False)
        cpu_group = init_process_group(plan.comm_backend, rank, plan.world_size, device, store)
        context = RankContext(rank, plan.world_size, device, lambda: request.value, cpu_group,
                              steer=lambda: steer.value, store=store)
        model = torch.load(io.BytesIO(job.model), weights_only=False) if job.model is not None else None
        callbacks = [RankReporter(conn)] if rank == 0 else []
        run = RankRun(context, job.config, job.data, model=model, callbacks=callbacks, resume=job.resume)
        run.agree_now()
        run.fit()
        if run.state == TrainingState.FAILED and rank != 0:
            conn.send({"kind": protocol.FAILED, "rank": rank, "message": run.error or run.reason})
        code = 0 if run.state != TrainingState.FAILED else 1
    except BaseException as exc:  # reported to the launcher, which ends the other ranks
        log.debug("rank %d failed", rank, exc_info=True)
        try:
            conn.send({"kind": protocol.FAILED, "rank": rank, "message": f"{type(exc).__name__}: {exc}"})
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
    exit_rank(code)
