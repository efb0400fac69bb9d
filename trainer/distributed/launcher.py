"""A run on several torch devices as seen from the process that started it: the ranks train in
spawned worker processes (``rank.py``), and :class:`LaunchedRun` follows rank 0.

``Trainer(config, df)`` returns a LaunchedRun when ``devices`` asks for several torch processes.
It implements the same run-handle interface as a run in this process: rank 0 forwards every event
(``trainer.protocol``) and a :class:`~trainer.follower.RunFollower` applies them to this run's
state before its observers hear them, on its event loop's thread. ``pause``/``resume``/``stop``
write one shared integer that every rank reads; the ranks agree on the batch where it takes effect
(``control.py``). A rank that fails or dies ends the run as failed with its message, and the
others are terminated, since they would wait in a collective forever. Rank 0 sends its trained
weights before the run ends, so predictions work here afterwards. Nothing here initialises CUDA.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import multiprocessing
import os
import sys
import threading
from typing import Any, Iterable, Optional, Union

import pandas as pd
import torch

from .. import protocol
from ..backends.torch_backend import TorchBackend
from ..config import ConfigError, TrainingConfig
from ..checkpoints import refuse_foreign_checkpoints
from ..events import EventBus, Observer
from ..follower import RunFollower
from ..handle import RunHandle
from ..loggers import loggers_for
from ..memory_fit import check_fits
from ..resume import ResumePlan
from ..state import FINAL_STATES, FINAL_VALUES, RunState, StateError, TrainingState
from ..steering import as_built, new_values
from ..steering_remote import RemoteSteering
from .control import PAUSE, RUN, STOP
from .plan import check_spawnable, plan_devices
from .processes import EXITED, RankProcesses
from .rank import SpawnJob, spawn_main

log = logging.getLogger("trainer")

_END_GRACE_SECONDS = 30.0     # ranks that finished need a moment to leave the process group
_FAIL_GRACE_SECONDS = 1.0
_CAUSE_GRACE_SECONDS = 10.0   # how long to wait for the rank that broke a collective to report
_START_HINT = ("a multi-process run starts fresh Python processes that import your program's main module: "
               "run the training from a .py file with the training code under `if __name__ == \"__main__\":`, "
               "or from a notebook")


def oom_advice(config: TrainingConfig, world_size: int) -> str:
    """What a GPU out-of-memory error means with several devices, and a batch size that keeps working."""
    per = config.batch_size // world_size
    smaller = max(world_size, (config.batch_size // 2) // world_size * world_size)
    return (f" With {world_size} devices each trains on batch_size / {world_size} = {per} samples per step; "
            f"a smaller batch_size must stay a multiple of {world_size} (e.g. batch_size={smaller}).")


def check_main_module(devices: Any) -> None:
    """Refuse up front when the spawned ranks could not import this program's ``__main__`` (a
    script read from standard input), and inside a rank that is importing it (a script without a
    main guard starts training again there): either way the ranks die before reporting."""
    # multiprocessing marks a spawned process that is still re-importing __main__ this way.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ConfigError.single("devices", devices, f"a rank process is importing the program that started it; "
                                                     f"{_START_HINT}")
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(getattr(main, "__spec__", None), "name", None) is None and path and not os.path.isfile(path):
        raise ConfigError.single("devices", devices, f"this program's main module is {path!r}, not a file; {_START_HINT}")


class LaunchedRun(RunHandle):
    """A run whose ranks train in spawned processes (see the module docstring)."""

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = (), resume: Optional[ResumePlan] = None,
                 overwrite: bool = False, replay: Any = None):
        if replay is not None:
            raise ConfigError.single("replay", type(replay).__name__, "replaying a recorded run's changes needs a run "
                                     "in one process: set devices=1 to replay it")
        config = self._accept_config(config, resume, overwrite)
        self.plan = plan_devices(config)
        check_main_module(config.devices)
        self._frame = data
        self._prepare_data(data, resume)
        check_fits(config, self.data, model)     # every rank's share, before any process starts
        self._model_bytes = check_spawnable(model, self.plan.world_size)
        # The trained weights come back into this CPU copy of the model, which also checks the
        # model against the data before any process starts.
        self.backend = TorchBackend(as_built(config, resume).replace(device="cpu", devices=1), self.data, self.seed,
                                    model)
        self._resume = resume
        self.run_state = resume.run_state(self.data.task) if resume else RunState.fresh(config, self.data.task,
                                                                                        self.seed)
        self.events = EventBus(self)
        # config.loggers log here, from what rank 0 reports (the ranks themselves log nothing).
        for cb in [*loggers_for(self), *callbacks]:
            self.events.add(cb)
        self._follower = RunFollower(self.run_state)
        self._follower.listen(self.events.emit)
        self._ranks = RankProcesses(self.plan.world_size)
        self._pause_requested = self._stop_requested = self._claimed = False
        self._started_ranks: set[int] = set()
        self._failure: Optional[str] = None     # the launcher's own account of a failed run
        self._final_change: Optional[dict[str, Any]] = None     # rank 0's final state, until its train_end
        self._inbox: Optional[asyncio.Queue] = None
        self._store: Any = None       # the rendezvous store; lives as long as the run
        self._deferred: list[dict[str, Any]] = []    # messages set aside while collecting a failure's cause
        self._task: Optional[asyncio.Task] = None
        self._done = threading.Event()
        self._steering = RemoteSteering()
        self._steer_answers = 0      # config_change / config_refused events heard: answers in posting order

    @property
    def device_name(self) -> str:
        return self.plan.describe()

    # ------------------------------------------------------------------ control
    def _request(self, action: str) -> None:
        self._sync_request()

    def _sync_request(self) -> None:
        self._ranks.request.value = STOP if self._stop_requested else PAUSE if self._pause_requested else RUN

    def _update(self, changes: dict[str, Any]) -> dict[str, Any]:
        world = self.plan.world_size
        if changes.get("batch_size", world) % world:
            raise ConfigError.single("batch_size", changes["batch_size"],
                                     f"with {world} processes batch_size is the global batch, split evenly; "
                                     f"{changes['batch_size']} does not divide by {world}")
        # Posted to the rendezvous store; the ranks agree on the step where they all apply it (control.py).
        def send() -> int:
            store = self._store
            if store is None:
                raise StateError("cannot update: the worker processes are still starting; try again in a moment")
            seq = self._ranks.steer.value + 1
            store.set(f"steer/{seq}", json.dumps(changes))
            self._ranks.steer.value = seq
            return seq
        return self._steering.post(self.config, changes, send, self._on_own_loop())

    # ------------------------------------------------------------------ running
    async def _run(self) -> None:
        try:
            await super()._run()
        finally:
            self._ranks.forget_job()

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        self._inbox = inbox

        def post(message: dict[str, Any]) -> bool:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, message)
                return True
            except RuntimeError:    # the loop is gone
                return False

        self._follow_state_change(self._follower, TrainingState.RUNNING, f"starting {self.plan.describe()}")
        await asyncio.to_thread(self._launch, post)
        while not await self._handle(self._deferred.pop(0) if self._deferred else await inbox.get()):
            pass

    def _failure_reason(self, exc: BaseException) -> str:
        text = super()._failure_reason(exc)
        if not self._started_ranks:
            text = f"could not start the {self.plan.world_size} worker processes: {text}"
        return self._with_advice(text)

    def _launch(self, post: Any) -> None:
        import torch.distributed as dist

        # Checkpoints that appeared since the run was built are refused here too; the ranks then
        # take this run's output_path as theirs.
        refuse_foreign_checkpoints(self.config.output_path, self._overwrite)
        # This process hosts the rendezvous store on a free port: no port to choose, none to clash.
        self._store = dist.TCPStore("127.0.0.1", 0, None, True, wait_for_workers=False)
        job = SpawnJob(config=self.config.replace(seed=self.seed).to_dict(), data=self._frame,
                       model=self._model_bytes, plan=self.plan, store_port=self._store.port, resume=self._resume)
        self._ranks.launch(spawn_main, job, post)

    async def _handle(self, msg: dict[str, Any]) -> bool:
        """Apply one message from the ranks; True once the run has ended."""
        kind = msg.get("kind")
        if kind == protocol.EVENT:
            return await self._follow(msg["event"], msg.get("data") or {})
        if kind == protocol.READY:
            self._started_ranks.add(msg["rank"])
            if len(self._started_ranks) == self.plan.world_size:
                self._ranks.forget_job()
        elif kind == protocol.WEIGHTS:
            self.backend.model.load_state_dict(torch.load(io.BytesIO(msg["data"]), weights_only=True))
        elif kind == EXITED and msg["rank"] is None and self._final_change is not None:
            # Rank 0 reported its end but exited before its train_end event got through.
            change = self._final_change
            return await self._follow("train_end", {"state": change["new"], "reason": change.get("reason"),
                                                    "error": change.get("error"), "best_metrics": self.best_metrics,
                                                    "artifacts_path": None, "last_checkpoint": None})
        elif kind in (protocol.FAILED, EXITED) and self.state not in FINAL_STATES:
            reason = await self._root_cause(self._describe_rank_failure(msg))
            await self._end_run(TrainingState.FAILED, self._with_advice(reason))
            return True
        return False

    async def _follow(self, event: str, data: dict[str, Any]) -> bool:
        """Apply one of rank 0's events here; True when it was the last."""
        if event == "state_change" and data["new"] in FINAL_VALUES:
            if data["new"] == TrainingState.FAILED.value:
                own = f"rank 0 of {self.plan.world_size} failed: {data.get('error') or data.get('reason')}"
                self._failure = self._with_advice(await self._root_cause(own))
                data = {**data, "reason": self._failure, "error": self._failure}
            # Shown together with train_end, which says where the files are: observers that
            # finish writing first (loggers) need that.
            self._final_change = data
            return False
        if event in ("config_change", "config_refused"):
            self._steer_answers += 1
            if event == "config_change":
                self.config = self.config.replace(**new_values(data))
                self._follower.apply(event, data)
            self._steering.answer(self._steer_answers, data if event == "config_change" else None,
                                  message=data.get("message", ""), errors=data.get("errors"))
            return False
        if event == "train_end":
            self._steering.close("the run has ended")
            await asyncio.to_thread(self._ranks.reap, _END_GRACE_SECONDS)
            if self._failure is not None:
                data = {**data, "reason": self._failure, "error": self._failure}
            self._pause_requested = False
            await asyncio.to_thread(self.events.finish, data)
            if self._final_change is not None:
                self._follower.apply("state_change", {**self._final_change, "elapsed": self.run_state.elapsed()})
            self._follower.apply(event, data)
            self._done.set()
            return True
        self._follower.apply(event, data)
        return False

    def _describe_rank_failure(self, msg: dict[str, Any]) -> str:
        rank, world = msg.get("rank"), self.plan.world_size
        if msg["kind"] == protocol.FAILED:
            return f"rank {rank} of {world} failed: {msg['message']}"
        if rank is None:
            return "the worker processes ended without reporting the end of training"
        if rank not in self._started_ranks:
            return (f"rank {rank} of {world} exited before it started training "
                    f"({protocol.describe_exit(msg['code'])}); {_START_HINT}")
        return f"rank {rank} of {world} exited unexpectedly ({protocol.describe_exit(msg['code'])})"

    async def _root_cause(self, first: str) -> str:
        """``first``, or when it reads like a collective broken by a rank that went away, the
        failure of the rank that did: a rank that dies breaks its peers' next all-reduce, and
        their reports may arrive first. Waits briefly for the ranks to end while looking."""
        if not _broken_group(first):
            return first
        assert self._inbox is not None
        deadline = asyncio.get_running_loop().time() + _CAUSE_GRACE_SECONDS
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await asyncio.wait_for(self._inbox.get(), left)
            except asyncio.TimeoutError:
                break
            if msg.get("kind") == EXITED and msg.get("rank") is None:
                break
            text = None
            if msg.get("kind") in (protocol.FAILED, EXITED):
                text = self._describe_rank_failure(msg)
            else:
                self._deferred.append(msg)
                if msg.get("kind") == protocol.EVENT and msg.get("event") == "state_change":
                    text = msg["data"].get("error")
            if text and not _broken_group(text):
                return text
        return first

    def _with_advice(self, text: str) -> str:
        if "out of memory" in text.lower() and "per step" not in text:
            text = text.rstrip(".") + "." + oom_advice(self.config, self.plan.world_size)
        return text

    async def _stop_far_end(self, wait: bool) -> None:
        # Ranks left running would wait in a collective for ever.
        self._stop_requested = True
        self._sync_request()
        if wait:
            await asyncio.to_thread(self._ranks.reap, _FAIL_GRACE_SECONDS)
        else:
            self._ranks.reap(_FAIL_GRACE_SECONDS)

    async def _end_here(self, final: TrainingState, reason: str, wait: bool) -> None:
        self._steering.close(f"the run has ended ({final.value})")
        await self._end_followed(self._follower, final, reason, wait)


_BROKEN_GROUP = ("connection closed by peer", "connection reset by peer", "remote worker", "broken pipe",
                 "nccl communicator was aborted", "socket timeout")


def _broken_group(text: str) -> bool:
    """Whether a failure reads like a collective that broke because another rank went away."""
    return any(words in text.lower() for words in _BROKEN_GROUP)
