"""The driver's end of one :class:`~.actor.RunActor`: create it, hand it the data, collect its
messages in order, send it commands, and notice when it dies.

The server's Ray worker (``epoch_widgets.server.ray_worker``) and :class:`~.run.RayRun` (the panel's
run) both drive their actor through an :class:`ActorLink`. ``open`` blocks (the actor is placed,
the DataFrame goes through Ray's object store, the run is built), so call it off any event loop;
``follow`` blocks too, on a thread of its own, until the actor has said everything or died.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from .. import protocol
from ..checkpoints import (CheckpointWriter, OutputPathInUse, checkpoint_dir, clear_earlier_run,
                           refuse_foreign_checkpoints)
from .actor import REFUSED, RunActor
from .cluster import NAMESPACE, actor_config, missing_resources, require_ray
from .files import apply_file_message

log = logging.getLogger("trainer")

POLL_WAIT = 0.5             # seconds one poll waits on the actor for a message
UNREACHABLE_GRACE = 60.0    # seconds an actor may be unreachable before it counts as dead
MAX_CONCURRENCY = 8         # the actor's threads: poll, commands, abandon (training has its own)


@functools.lru_cache(maxsize=None)
def _actor_class() -> Any:
    # One remote class for every run: Ray ships its definition to the cluster once.
    return require_ray().remote(RunActor)


def describe_death(exc: BaseException) -> str:
    """Why an actor is gone, in a sentence (Ray's own message is a paragraph)."""
    text = str(exc)
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("The actor is dead because"):
            return "died: " + line[len("The actor is dead because"):].strip().rstrip(".")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"died ({type(exc).__name__}: {first})"


class ActorLink:
    """One run on a Ray actor, seen from the driver (see the module docstring)."""

    def __init__(self, label: str, resources: dict[str, float]):
        self.name = f"{label}:{uuid.uuid4().hex[:8]}"     # the actor's name in the epoch-widgets namespace
        self.resources = resources
        self.actor: Any = None
        self.local_output: Optional[Path] = None
        self.death: Optional[str] = None         # why the actor died, when it did
        self._lock = threading.Lock()
        self._killed = False
        self._closed = False
        self._fresh = False

    # ------------------------------------------------------------------ starting
    def open(self, spec: protocol.Message, data: Optional[pd.DataFrame], files: Optional[dict[str, bytes]] = None
             ) -> protocol.Message:
        """Create the actor and build the run of ``spec`` (a ``start`` message, with the driver's
        own output_path) on ``data`` (None: the actor reads ``data_path`` itself); ``files`` are a
        resume's checkpoint files. Returns the
        actor's ``ready`` or refusal message. Raises the actor's death as RuntimeError."""
        ray = require_ray()
        config = spec["config"]
        output = config.get("output_path")
        self.local_output = Path(output) if output else None
        refusal = self._check_output(spec)
        if refusal is None:
            problem = missing_resources(self.resources)
            if problem is not None:
                field = "device" if self.resources.get("num_gpus") else "devices"
                refusal = protocol.refusal(protocol.CONFIG_ERROR, f"{field}: {problem}",
                                           [{"field": field, "value": config.get(field), "message": problem}])
        if refusal is not None:
            self._closed = True
            return refusal
        options = {**self.resources, "max_concurrency": MAX_CONCURRENCY, "max_restarts": 0,
                   "name": self.name, "namespace": NAMESPACE}
        with self._lock:
            if self._killed:
                raise RuntimeError("the run was cancelled before its Ray actor started")
            self.actor = _actor_class().options(**options).remote()
        try:
            data_ref = ray.put(data)
            return ray.get(self.actor.build.remote({**spec, "config": actor_config(config)}, data_ref, files or {}))
        except ray.exceptions.RayActorError as exc:
            self._died(exc)
            raise RuntimeError(f"the Ray actor {self.death}") from None
        except BaseException:
            self.kill()         # an actor that could not build holds its resources until it goes
            raise

    def _check_output(self, spec: protocol.Message) -> Optional[protocol.Message]:
        """A fresh run replaces the checkpoints in the driver's output folder only with ``overwrite``
        (the actor's own folder starts empty, so the check is the driver's)."""
        self._fresh = self.local_output is not None and not spec.get("resume")
        if not self._fresh:
            return None
        try:
            refuse_foreign_checkpoints(self.local_output, bool(spec.get("overwrite")))
        except OutputPathInUse as exc:
            return protocol.refusal(protocol.OUTPUT_IN_USE, f"output_path: {exc.errors[0]['message']}", exc.errors)
        return None

    def train(self) -> None:
        """Start the built run (its messages come through :meth:`follow`). A fresh run first
        removes an earlier run's checkpoints from the driver's folder (allowed by ``overwrite``), as
        a local run does when it starts: a folder never mixes two runs' checkpoints."""
        if self._fresh and self.local_output is not None:
            clear_earlier_run(CheckpointWriter(checkpoint_dir(self.local_output), 1), self.local_output)
        self.actor.train.remote()

    # ------------------------------------------------------------------ messages
    def follow(self, deliver: Callable[[protocol.Message], Any]) -> int:
        """Collect the actor's messages until it has said everything or died; file messages are
        applied to the driver's output folder here, every other one goes to ``deliver`` in order.
        Returns the exit code (0 ended, 1 failed, 2 refused; -1 the actor died: see :attr:`death`)."""
        ray = require_ray()
        if self.actor is None:
            return REFUSED
        received = 0            # the number of the last message handled: the actor drops those up to it
        unreachable_since: Optional[float] = None
        while True:
            try:
                batch = ray.get(self.actor.poll.remote(received, POLL_WAIT))
            except ray.exceptions.ActorUnavailableError as exc:
                # Unreachable for now (a network blip): ask again; only a lasting silence is a death.
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since < UNREACHABLE_GRACE:
                    time.sleep(1.0)
                    continue
                return self._died(exc)
            except Exception as exc:        # RayActorError: it died (killed, its node gone, ...)
                return self._died(exc)
            unreachable_since = None
            for number, message in batch["messages"]:
                if number <= received:
                    continue
                received = number
                if message.get("kind") in (protocol.FILE, protocol.FILE_REMOVED):
                    self._apply_file(message)
                else:
                    deliver(message)
            if batch["ended"]:
                self.close()
                return int(batch["exit_code"])

    def _died(self, exc: BaseException) -> int:
        self.death = self.death or describe_death(exc)
        self.close()        # (one that merely stopped answering must not go on holding its resources)
        return -1

    def _apply_file(self, message: protocol.Message) -> None:
        if self.local_output is None:
            return
        try:
            apply_file_message(self.local_output, message)
        except (OSError, ValueError) as exc:
            # The run goes on (its actor has the file); the driver's folder misses it, as a local
            # run would whose disk is full.
            log.error("could not keep %s from the Ray actor in %s: %s", message.get("path"), self.local_output, exc)

    # ------------------------------------------------------------------ control
    def command(self, message: protocol.Message) -> bool:
        """Send a ``command`` message (its reply comes through :meth:`follow`); False when the actor is gone."""
        if self.actor is None or self._closed:
            return False
        self.actor.command.remote(message)
        return True

    def abandon(self) -> None:
        """Ask the actor to stop its run (the artifacts are still written and sent back)."""
        if self.actor is not None and not self._closed:
            self.actor.abandon.remote()
        elif self.actor is None:
            self.kill()

    def kill(self) -> None:
        """End the actor at once (or keep it from starting)."""
        with self._lock:
            self._killed = True
            actor = self.actor
        if actor is not None:
            try:
                require_ray().kill(actor, no_restart=True)
            except Exception as exc:     # already gone
                log.debug("ray.kill: %s", exc)

    def close(self) -> None:
        """The actor has said everything: release it (and its resources) now."""
        self._closed = True
        if self.actor is not None:
            try:
                require_ray().kill(self.actor, no_restart=True)
            except Exception as exc:
                log.debug("ray.kill: %s", exc)
