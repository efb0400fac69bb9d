"""Getting work onto the event-loop thread, and rate-limiting UI refreshes there.

Widget traits must change on one thread only (the kernel's loop thread): a button callback that
ipykernel 7 runs on a subshell thread hands its work over with ``call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Optional


class LoopBinding:
    """The event loop (and its thread) that owns a panel's widgets and its training task."""

    def __init__(self) -> None:
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread_id: Optional[int] = None
        self.bind_running()

    def bind_running(self) -> bool:
        """Bind to the loop running on this thread, unless bound to a live loop already."""
        if self.loop is not None and not self.loop.is_closed():
            return self.on_loop_thread()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.loop, self.thread_id = loop, threading.get_ident()
        return True

    def on_loop_thread(self) -> bool:
        return self.thread_id == threading.get_ident()

    def call(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` now if this is the loop thread (or no loop is bound), else hand it to the loop.

        Returns True when ``fn`` ran before returning.
        """
        loop = self.loop
        if loop is None or loop.is_closed() or self.on_loop_thread():
            fn()
            return True
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop closed under us: nothing owns the widgets any more
            fn()
            return True
        return False


class Throttle:
    """Calls ``flush`` at most once per ``interval`` seconds (urgent requests excepted), later
    rather than never.

    ``request()`` marks the view dirty; the flush runs as a loop callback, so it overlaps with the
    next slice of batches that the trainer runs in its worker thread instead of delaying it.
    """

    def __init__(self, flush: Callable[[], None], interval: float, binding: LoopBinding):
        self._flush = flush
        self.interval = interval
        self._binding = binding
        self._last = -float("inf")
        self._handle: Optional[asyncio.Handle] = None
        self._urgent = False
        self.flushes = 0

    def request(self, urgent: bool = False) -> None:
        """Ask for a flush: within ``interval`` of the last one, or at the next loop turn if urgent."""
        loop = self._binding.loop
        if loop is None or loop.is_closed():
            self.flush_now()
            return
        if self._handle is not None:
            if not urgent or self._urgent:
                return
            self._handle.cancel()
        delay = 0.0 if urgent else max(0.0, self._last + self.interval - time.monotonic())
        self._urgent = urgent or not delay
        self._handle = loop.call_later(delay, self._run) if delay else loop.call_soon(self._run)

    def flush_now(self) -> None:
        """Flush at once, on this thread, cancelling a pending flush."""
        self.cancel()
        self._run()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        self._last = time.monotonic()
        self.flushes += 1
        self._flush()
