"""Whether error messages may quote values from the data being checked.

A Python user checking their own DataFrame is best served by an example of the bad value. A
worker of the HTTP API checks a file it opened for a request and answers that request: there a
message names columns, rows and counts but no value (a label, a mean, a cell), so an answer can
never carry a file's contents. :func:`values_hidden` switches the messages built in its block (in
this thread or task) to that form.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_HIDDEN: ContextVar[bool] = ContextVar("trainer_data_values_hidden", default=False)


@contextmanager
def values_hidden(hidden: bool = True) -> Iterator[None]:
    """Messages built inside the block quote no data values when ``hidden``."""
    token = _HIDDEN.set(hidden)
    try:
        yield
    finally:
        _HIDDEN.reset(token)


def hidden() -> bool:
    """Whether messages built now must leave data values out."""
    return _HIDDEN.get()
