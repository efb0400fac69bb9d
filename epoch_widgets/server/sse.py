"""Server-Sent Events handlers: one task's progress (``stream-progress/{id}``) and the summaries of
all tasks (``stream-tasks``), sharing the loop that writes a subscription's events."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

import tornado.web
from jupyter_server.auth.decorator import authorized
from tornado.iostream import StreamClosedError

from .base_handler import TrainingHandler
from .subscriptions import Subscription


class EventStreamHandler(TrainingHandler):
    """Writes a subscription's events as ``data: <json>``, a ``: keepalive`` comment when idle."""

    _subscription: Optional[Subscription] = None

    async def send_events(self, sub: Subscription, last: Callable[[dict[str, Any]], bool]) -> None:
        """Stream ``sub``'s events until it closes, the client goes, or ``last(event)`` is true."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")   # no proxy buffering in front of Jupyter
        self._subscription = sub
        keepalive = self.registry.settings.keepalive_interval
        try:
            await self.flush()     # headers out now, so the client sees the stream open
            while True:
                try:
                    event = await sub.get(keepalive)
                except asyncio.TimeoutError:
                    self.write(": keepalive\n\n")
                    await self.flush()
                    continue
                if event is None:
                    break
                self.write(f"data: {self.dumps(event)}\n\n")
                await self.flush()
                if last(event):
                    break
        except StreamClosedError:
            pass
        finally:
            sub.close()

    def on_connection_close(self) -> None:
        # Unsubscribe as soon as the client goes, not at the next event or keepalive.
        if self._subscription is not None:
            self._subscription.close()
        super().on_connection_close()


class StreamHandler(EventStreamHandler):
    """One task: ``progress`` per epoch and ``state`` per state change, then ``complete`` or ``error``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        task = self.registry.get(task_id)
        await self.send_events(task.subscribe(), lambda event: event["type"] in ("complete", "error"))


class TasksStreamHandler(EventStreamHandler):
    """Every task (``feed.py``): a ``snapshot``, then a ``task`` event per change and ``deleted``."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.send_events(self.registry.feed.subscribe(self.registry.tasks.values()), lambda event: False)
