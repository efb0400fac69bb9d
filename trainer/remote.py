"""Hosting a run for a driver in another process: the far end of the protocol pipe.

The HTTP API's worker process (``epoch_widgets.server.worker``) hosts one run this way, and so can
anything else that carries ``trainer.protocol`` messages (a Ray actor, say). :class:`RunHost` builds
the run from a ``start`` message and a DataFrame and answers ``ready`` (with the run's state to
follow from) or why it could not; then it forwards every event of the run, and applies ``command``
messages, replying once each has taken effect.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any, Callable, Optional

import pandas as pd

from . import protocol
from .checkpoints import CheckpointError, OutputPathInUse
from .config import ConfigError
from .data.values import values_hidden
from .events import Callback
from .handle import RunHandle
from .run import Trainer
from .state import FINAL_STATES, FINAL_VALUES, StateError, TrainingState
from .summary import parameter_count

START_WAIT = 10.0   # seconds an update received before the run started waits for it to start

# How long a command waits for the run to reach the state it asked for (a batch takes milliseconds;
# stopping includes writing the artifacts).
COMMAND_WAIT = {"pause": 10.0, "resume": 10.0, "stop": 30.0}
BATCH_INTERVAL = 0.25       # batch_end only feeds progress bars: a few a second are plenty
TARGETS = {"pause": {"paused"} | FINAL_VALUES, "resume": {"running"} | FINAL_VALUES, "stop": FINAL_VALUES}


class _StateWatch(Callback):
    """The state the driver has been told of, for command replies to wait on."""

    def __init__(self) -> None:
        self.state = TrainingState.PENDING.value
        self._changed = threading.Condition()

    def on_state_change(self, run: Any, data: dict[str, Any]) -> None:
        with self._changed:
            self.state = data["new"]
            self._changed.notify_all()

    def wait_for(self, states: set[str], timeout: float) -> str:
        with self._changed:
            self._changed.wait_for(lambda: self.state in states, timeout)
            return self.state


class RunHost:
    """One run driven through protocol messages sent with ``send`` (thread-safe)."""

    def __init__(self, send: Callable[[protocol.Message], None]):
        self._send = send
        self._watch = _StateWatch()
        self.run: Optional[RunHandle] = None

    def build(self, spec: dict[str, Any], data: pd.DataFrame) -> protocol.Message:
        """Build the run that ``spec`` (a ``start`` message) asks for on ``data``; send and return
        ``ready``, or the refusal saying why not (then :attr:`run` stays None)."""
        config = spec["config"]
        # Events first to the driver, then to the watch: a reply never overtakes the change it reports.
        callbacks = [protocol.EventForwarder(self._send, BATCH_INTERVAL), self._watch]
        caught: list[warnings.WarningMessage] = []
        try:
            with values_hidden(spec.get("data_root") is not None):
                run = self._make_run(spec, config, data, callbacks, caught)
        except OutputPathInUse as exc:
            return self._refuse(protocol.refusal(protocol.OUTPUT_IN_USE, f"output_path: {exc.errors[0]['message']}",
                                                 exc.errors))
        except ConfigError as exc:
            return self._refuse(protocol.refusal(protocol.CONFIG_ERROR, str(exc), exc.errors))
        except CheckpointError as exc:
            return self._refuse(protocol.refusal(protocol.RESUME_ERROR, str(exc)))
        except Exception as exc:  # e.g. the framework is not installed: the driver reports it
            return self._refuse(protocol.refusal(protocol.START_ERROR, f"{type(exc).__name__}: {exc}"))
        self.run = run
        ready: protocol.Message = {
            "kind": protocol.READY, "task_id": spec.get("task_id"), "pid": os.getpid(), "seed": run.seed,
            "task": run.data.task, "snapshot": run.run_state.snapshot(),
            "samples": {"train": run.data.n_train, "validation": run.data.n_val},
            "parameters": parameter_count(run.backend.model)}
        if spec.get("resume"):
            ready.update(resumed_from={"epoch": run.current_epoch, "batch": run.batch},
                         warnings=[str(w.message) for w in caught])
        self._send(ready)
        return ready

    @staticmethod
    def _make_run(spec: dict[str, Any], config: dict[str, Any], data: pd.DataFrame, callbacks: list[Any],
                  caught: list[warnings.WarningMessage]) -> RunHandle:
        if spec.get("resume"):
            # A damaged newest checkpoint is skipped with a warning: the driver tells its user.
            with warnings.catch_warnings(record=True) as recorded:
                warnings.simplefilter("always")
                run = Trainer.from_checkpoint(config["output_path"], data, config=config, callbacks=callbacks)
            caught.extend(recorded)
            return run
        return Trainer(config, data, callbacks=callbacks, overwrite=bool(spec.get("overwrite")))

    def _refuse(self, message: protocol.Message) -> protocol.Message:
        self._send(message)
        return message

    def train(self) -> TrainingState:
        """Train to the end (blocking); the final state."""
        assert self.run is not None, "build() the run first"
        self.run.fit()
        return self.run.state

    def command(self, message: protocol.Message) -> Optional[protocol.Message]:
        """Apply one ``command`` message and send its reply once the effect is visible (or the
        wait ran out); None for a message that is no command."""
        try:
            cmd, seq = message["cmd"], message.get("seq")
        except (KeyError, TypeError):
            return None
        run = self.run
        action = {"pause": run.pause, "resume": run.resume, "stop": run.stop}.get(cmd) if run else None
        if cmd == "update" and run is not None:
            reply = self._update(run, seq, message.get("changes"))
        elif action is None:
            reply = protocol.reply(seq, False, message=f"unknown command {cmd!r}" if run else "no run to control")
        else:
            try:
                action()
            except StateError as exc:
                reply = protocol.reply(seq, False, self._watch.state, conflict=True, message=str(exc))
            else:
                state = self._watch.wait_for(TARGETS[cmd], COMMAND_WAIT[cmd])
                reply = {**protocol.reply(seq, True, state), "reached": state in TARGETS[cmd]}
        self._send(reply)
        return reply

    def _update(self, run: RunHandle, seq: Any, changes: Any) -> protocol.Message:
        """Steer the run; the reply carries the applied ``config_change`` event or the refusal."""
        try:
            if not isinstance(changes, dict):
                raise ConfigError.single("<changes>", type(changes).__name__, "expected an object of fields to change")
            event = self._update_once_training(run, changes)
        except ConfigError as exc:
            return {**protocol.reply(seq, False, self._watch.state, message=str(exc)),
                    "refusal": protocol.CONFIG_REFUSAL, "errors": exc.errors}
        except StateError as exc:
            return protocol.reply(seq, False, self._watch.state, conflict=True, message=str(exc))
        return {**protocol.reply(seq, True, self._watch.state), "event": event}

    @staticmethod
    def _update_once_training(run: RunHandle, changes: dict[str, Any]) -> dict[str, Any]:
        # The driver may send an update between "ready" and train()'s fit(): such a change waits
        # for the run to start rather than being refused as "not started".
        deadline = time.monotonic() + START_WAIT
        while True:
            try:
                return run.update(**changes)
            except StateError:
                if run.state != TrainingState.PENDING or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def abandon(self) -> None:
        """The driver went away: stop the run (its artifacts are still written)."""
        if self.run is not None and self.run.state not in FINAL_STATES:
            try:
                self.run.stop()
            except StateError:
                pass

