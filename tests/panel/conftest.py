"""Fixtures for driving real panels headlessly: a comm that counts what widgets send, and a loop helper."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Callable

import comm
import pytest
from comm import DummyComm


class CountingComm(DummyComm):
    """The comm package's stand-in comm (what widgets get outside a kernel), counting messages."""

    sent: Counter = Counter()
    bytes_sent: Counter = Counter()

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                    **keys: Any) -> None:
        CountingComm.sent[msg_type] += 1
        CountingComm.bytes_sent[msg_type] += sum(memoryview(b).nbytes for b in buffers or ())


@pytest.fixture
def comm_counter(monkeypatch: pytest.MonkeyPatch) -> type[CountingComm]:
    """Widgets created after this fixture count their messages in ``CountingComm.sent``."""
    CountingComm.sent = Counter()
    CountingComm.bytes_sent = Counter()
    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: CountingComm(*a, **kw))
    return CountingComm


async def until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Let the loop run until ``predicate()`` holds; fail after ``timeout`` seconds (a generous bound)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
