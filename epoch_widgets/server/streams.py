"""Server-Sent Events out of a subscription: the one way every stream of the API is written."""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from tornado.iostream import StreamClosedError

from .base_handler import TrainingHandler


class EventStreamHandler(TrainingHandler):
    """A handler that answers with a ``text/event-stream``: ``data: <json>`` per event, a
    ``: keepalive`` comment when idle."""

    _subscription: Optional[Any] = None

    async def stream(self, sub: Any, last: tuple[str, ...]) -> None:
        """Write ``sub``'s events until one of type ``last``, the end of the subscription, or the
        client's leaving."""
        self._subscription = sub
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")   # no proxy buffering in front of Jupyter
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
                if event["type"] in last:
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
