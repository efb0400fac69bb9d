"""Fan-out of a task's events to its stream clients, one queue per client."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

_CLOSED = object()


class Subscription:
    """One client's queue of events. Lives on the event loop's thread.

    A client that falls ``max_queue`` events behind is cut off rather than buffered without end.
    """

    def __init__(self, on_close: Callable[["Subscription"], None], max_queue: int = 10_000):
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._on_close = on_close
        self._max_queue = max_queue
        self.closed = False
        self.overflowed = False

    def put(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._max_queue:
            self.overflowed = True
            self.close()
            return
        self._queue.put_nowait(event)

    async def get(self, timeout: Optional[float]) -> Optional[dict[str, Any]]:
        """The next event; None once closed. Raises TimeoutError when ``timeout`` passes first."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        return None if item is _CLOSED else item

    def close(self) -> None:
        """Unsubscribe; a pending ``get`` returns None. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self._on_close(self)
        self._queue.put_nowait(_CLOSED)
