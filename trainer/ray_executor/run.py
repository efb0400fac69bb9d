"""A run trained by a Ray actor, seen from the process that started it: one more implementation of
the run-handle interface (:class:`~trainer.handle.RunHandle`), beside ``LocalRun`` and ``LaunchedRun``.

``RayRun(config, df)`` checks the config against the data here (the same errors as
``Trainer(config, df)``), then builds the run on an actor that Ray places where the config's
resources are (``cluster.task_resources``): the DataFrame travels through Ray's object store,
the run trains there, and its events come back as ``trainer.protocol`` messages that a
:class:`~trainer.follower.RunFollower` applies to this run's state before its observers hear
them, on its event loop's thread. ``pause``/``resume``/``stop`` are actor calls that take effect
within one batch. Files the run writes under ``output_path`` come back as it writes them
(``files.py``), so this machine holds its checkpoints and artifacts even if the node vanishes;
the trained weights come back into a CPU copy of the model at the end, so predictions and
evaluation work here afterwards. An actor that dies ends the run as failed, its history kept;
``RayRun.from_checkpoint(output_path, df)`` continues it on a new actor.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

import pandas as pd

from .. import protocol
from ..backends import create_backend
from ..checkpoints import CheckpointError
from ..config import ConfigError, TrainingConfig
from ..events import EventBus, Observer
from ..follower import RunFollower
from ..handle import RunHandle
from ..resume import ResumePlan, plan_resume
from ..state import FINAL_STATES, RunState, StateError, TrainingState
from ..steering import as_built, new_values
from ..steering_remote import RemoteSteering
from .cluster import connect, task_resources
from .files import resume_files
from .link import ActorLink

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..data import PreparedData

log = logging.getLogger("trainer")

_EXITED = "actor_exited"        # this module's own inbox message: the actor said everything, or died


def refusal_error(message: protocol.Message) -> Exception:
    """The exception ``Trainer(config, df)`` would have raised for an actor's refusal."""
    kind, text = message.get("kind"), message.get("message", "")
    if kind in (protocol.CONFIG_ERROR, protocol.OUTPUT_IN_USE) and message.get("errors"):
        return ConfigError(message["errors"])
    if kind == protocol.RESUME_ERROR:
        return CheckpointError(text)
    return RuntimeError(f"the run could not start on its Ray actor: {text}")


def driver_copy(config: TrainingConfig, data: "PreparedData", seed: int) -> "Backend":
    """The CPU copy of the model that the trained weights come back into. Options only a GPU
    allows (``cuda_graphs``) are the actor's to check, where the GPU is."""
    return create_backend(config.backend, config.replace(device="cpu", devices=1, cuda_graphs=False), data, seed,
                          None)


class RayRun(RunHandle):
    """A run whose batches a Ray actor computes (see the module docstring). ``address`` joins a
    cluster when this process is not connected to Ray yet (None: a local instance, or the
    ``RAY_ADDRESS`` environment variable); ``cpus`` is the CPUs reserved for it."""

    def __init__(self, config: Union[TrainingConfig, dict[str, Any]], data: pd.DataFrame, *,
                 model: Any = None, callbacks: Iterable[Observer] = (), resume: Optional[ResumePlan] = None,
                 overwrite: bool = False, address: Optional[str] = None, cpus: int = 1):
        if model is not None:
            raise ConfigError.single("model", type(model).__name__, "the Ray executor trains the built-in models; "
                                     "train a model of your own with the local executor")
        config = self._accept_config(config, resume, overwrite)
        self._prepare_data(data, resume)
        self.backend = driver_copy(as_built(config, resume), self.data, self.seed)
        connect(address)
        output = str(Path(config.output_path).expanduser().resolve()) if config.output_path else None
        spec = protocol.start(config.name or "run", {**config.to_dict(), "seed": self.seed, "output_path": output},
                              resume=resume is not None, overwrite=overwrite)
        spec["weights"] = True
        self._link = ActorLink("run", task_resources(config, cpus))
        ready = self._link.open(spec, data, resume_files(Path(output)) if resume is not None and output else None)
        if ready.get("kind") != protocol.READY:
            self._link.close()
            raise refusal_error(ready)
        self.ready = ready
        self.run_state = RunState.from_snapshot(ready["snapshot"])
        self.events = EventBus(self)
        for cb in callbacks:        # config.loggers log on the actor; their files come back here
            self.events.add(cb)
        self._follower = RunFollower(self.run_state)
        self._follower.listen(self.events.emit)
        self._device = "a Ray actor"
        self._pause_requested = self._stop_requested = self._claimed = False
        self._seq, self._seq_lock = 0, threading.Lock()
        self._steering = RemoteSteering()
        self._update_seqs: set[int] = set()       # commands that are updates, until answered
        self._task: Optional[asyncio.Task] = None
        self._done = threading.Event()

    @classmethod
    def from_checkpoint(cls, output_path: Union[str, Path], data: pd.DataFrame, *,
                        config: Union[TrainingConfig, dict[str, Any], None] = None, callbacks: Iterable[Observer] = (),
                        address: Optional[str] = None, cpus: int = 1, **changes: Any) -> "RayRun":
        """Continue the run checkpointed in ``output_path`` on a new actor, wherever Ray places it:
        the newest checkpoint files go to it (see ``Trainer.from_checkpoint`` for ``config`` and
        ``changes``)."""
        plan = plan_resume(output_path, data, config=config, **changes)
        return cls(plan.config, data, callbacks=callbacks, resume=plan, address=address, cpus=cpus)

    @property
    def device_name(self) -> str:
        return self._device

    @property
    def actor_name(self) -> str:
        """The actor's name in Ray's ``epoch-widgets`` namespace (``ray.get_actor(name, namespace=...)``)."""
        return self._link.name

    def lr_find(self, *args: Any, **kwargs: Any) -> Any:
        raise StateError("lr_find searches in this process: run it on Trainer(config, df); the rate it suggests "
                         "serves the Ray run as well")

    # ------------------------------------------------------------------ control
    def _update(self, changes: dict[str, Any]) -> dict[str, Any]:
        def send() -> int:
            with self._seq_lock:
                self._seq += 1
                self._update_seqs.add(self._seq)
                if not self._link.command(protocol.command("update", self._seq, changes)):
                    raise StateError("cannot update: the Ray actor training the run is gone")
                return self._seq
        return self._steering.post(self.config, changes, send, self._on_own_loop())

    def _request(self, action: str) -> None:
        # Numbered under a lock: requests may come from several threads, and the actor applies
        # them in number order.
        with self._seq_lock:
            self._seq += 1
            self._link.command(protocol.command(action, self._seq))

    # ------------------------------------------------------------------ running
    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()

        def post(message: protocol.Message) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, message)
            except RuntimeError:     # the loop is gone
                pass

        def follow() -> None:
            try:
                code = self._link.follow(post)
            except Exception as exc:      # e.g. this process lost its connection to the cluster
                self._link.death = f"could not be followed: {type(exc).__name__}: {exc}"
                code = -1
            post({"kind": _EXITED, "code": code})

        self._link.train()
        threading.Thread(target=follow, name="ray-run-follow", daemon=True).start()
        while not await self._handle(await inbox.get()):
            pass

    async def _stop_far_end(self, wait: bool) -> None:
        self._link.kill()

    async def _handle(self, msg: protocol.Message) -> bool:
        """Apply one message from the actor; True once the run has ended."""
        kind = msg.get("kind")
        if kind == protocol.EVENT:
            return await self._follow(msg["event"], msg.get("data") or {})
        if kind == protocol.WEIGHTS and msg.get("data"):
            await asyncio.to_thread(lambda: self.backend.restore(self.backend.decode_weights(msg["data"])))
        elif kind == protocol.REPLY and msg.get("seq") in self._update_seqs:
            self._update_seqs.discard(msg["seq"])
            self._steering.answer(msg["seq"], msg.get("event"), message=msg.get("message") or "",
                                  errors=msg.get("errors"))
        elif kind == protocol.REPLY and not msg.get("ok"):
            log.info("the Ray actor did not apply a command: %s", msg.get("message"))
        elif kind == _EXITED and self.state not in FINAL_STATES:
            death = self._link.death
            reason = (f"the Ray actor training the run {death}" if death
                      else "the Ray actor ended without reporting the end of training")
            if self.config.output_path and self.config.checkpoints and self.current_epoch:
                reason += "; RayRun.from_checkpoint(output_path, df) continues it from its last checkpoint"
            await self._end_run(TrainingState.FAILED, reason)
            return True
        return False

    async def _follow(self, event: str, data: dict[str, Any]) -> bool:
        if event == "train_begin" and data.get("device"):
            self._device = f"{data['device']} on a Ray actor"
        if event == "config_change":
            self.config = self.config.replace(**new_values(data))
        if event == "train_end":
            self._steering.close("the run has ended")
        return await self._apply_followed(self._follower, event, data)

    async def _end_here(self, final: TrainingState, reason: str, wait: bool) -> None:
        self._steering.close(f"the run has ended ({final.value})")
        await self._end_followed(self._follower, final, reason, wait)
