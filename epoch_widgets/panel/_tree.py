"""Closing a tree of widgets."""
from __future__ import annotations

from typing import Any

import ipywidgets as W


def close_tree(root: W.Widget) -> None:
    """Close ``root`` and every widget reachable through its synced traits (children, marks, ...)."""
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, W.Widget):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend(getattr(item, name, None) for name in item.keys)
            W.Widget.close(item)   # not item.close(): a panel's own close() is what called us
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
