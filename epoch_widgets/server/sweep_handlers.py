"""HTTP handlers of the API's sweeps (docs/api.md, "Sweeps"): start, read, list, control, stream.

Authenticated and authorized like every handler of the API (``read`` for GET, ``write`` for the
rest); a sweep's trials are tasks, so the task endpoints serve each trial too.
"""
from __future__ import annotations

from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from .base_handler import TrainingHandler
from .registry import TaskRegistry
from .sse import EventStreamHandler
from .sweeps import SweepRegistry
from .urls import API_PREFIX

SWEEP_ID = r"(?P<sweep_id>[^/]+)"
DONE = {"pause": "Sweep paused: its running trials pause within a batch and no new trial starts",
        "resume": "Sweep resumed (a stopped or interrupted sweep continues its unfinished trials from their "
                  "checkpoints)", "stop": "Stop requested: no new trial starts and the running ones stop "
                                           "(each keeps its checkpoint)"}


class SweepHandlerBase(TrainingHandler):
    def initialize(self, registry: TaskRegistry, sweeps: SweepRegistry, action: str = "") -> None:  # type: ignore[override]
        super().initialize(registry)
        self.sweeps, self.action = sweeps, action


class SweepStartHandler(SweepHandlerBase):
    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        entry = await self.sweeps.start(await self.json_body())
        self.reply({"sweep_id": entry.sweep_id, "message": "Sweep started", "sweep": self.sweeps.describe(entry)})


class SweepHandler(SweepHandlerBase):
    @tornado.web.authenticated
    @authorized
    def get(self, sweep_id: str) -> None:
        self.reply({"sweep_id": sweep_id, "sweep": self.sweeps.describe(self.sweeps.get(sweep_id))})


class SweepsHandler(SweepHandlerBase):
    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        self.reply({"sweeps": self.sweeps.summaries()})


class SweepControlHandler(SweepHandlerBase):
    """POST pause-sweep/{id}, resume-sweep/{id}, stop-sweep/{id}."""

    @tornado.web.authenticated
    @authorized
    async def post(self, sweep_id: str) -> None:
        entry = await self.sweeps.control(sweep_id, self.action)
        self.reply({"sweep_id": sweep_id, "message": DONE[self.action], "sweep": self.sweeps.describe(entry)})


class SweepStreamHandler(EventStreamHandler):
    """Server-Sent Events of a sweep: the sweep as it is, then ``trial_start``, ``trial_epoch``,
    ``trial_state``, ``trial_end`` and ``sweep_state`` as they happen, and finally ``sweep_end``."""

    def initialize(self, registry: TaskRegistry, sweeps: SweepRegistry) -> None:  # type: ignore[override]
        super().initialize(registry)
        self.sweeps = sweeps

    @tornado.web.authenticated
    @authorized
    async def get(self, sweep_id: str) -> None:
        entry = self.sweeps.get(sweep_id)
        await self.send_events(self.sweeps.subscribe(entry), lambda event: event["type"] == "sweep_end")


def sweep_handlers(registry: TaskRegistry, sweeps: SweepRegistry) -> list[tuple[str, type, dict[str, Any]]]:
    kw = {"registry": registry, "sweeps": sweeps}
    return [
        (f"/{API_PREFIX}/sweep", SweepStartHandler, kw),
        (f"/{API_PREFIX}/sweeps", SweepsHandler, kw),
        (f"/{API_PREFIX}/sweep/{SWEEP_ID}", SweepHandler, kw),
        (f"/{API_PREFIX}/stream-sweep/{SWEEP_ID}", SweepStreamHandler, kw),
        *[(f"/{API_PREFIX}/{action}-sweep/{SWEEP_ID}", SweepControlHandler, {**kw, "action": action})
          for action in ("pause", "resume", "stop")],
    ]
