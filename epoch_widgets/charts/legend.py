"""The charts' legends: HTML rows under each figure (so they never cover a curve), naming every
line with its current and best value, as livelossplot prints them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Optional

from .. import theme


def fmt(value: Optional[float]) -> str:
    """A metric for reading: 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


@dataclass
class Item:
    """One legend entry: a swatch drawn like its line, a label, and optional numbers."""

    label: str
    color: str
    style: str = "line"          # line | dashed | thin | diamond
    opacity: float = 1.0
    value: str = ""              # the current value
    best: str = ""               # e.g. "best 0.298 @ 7"
    title: str = ""              # hover text


def _swatch(item: Item) -> str:
    if item.style == "diamond":
        shape = f"<path d='M9 0 L14 5 L9 10 L4 5 Z' fill='{item.color}'/>"
    else:
        width = {"thin": 1.5}.get(item.style, 2.5)
        dash = " stroke-dasharray='4 3'" if item.style == "dashed" else ""
        shape = f"<line x1='0' y1='5' x2='18' y2='5' stroke='{item.color}' stroke-width='{width}'{dash}/>"
    return (f"<svg width='18' height='10' style='vertical-align:middle;opacity:{item.opacity}'>"
            f"{shape}</svg>")


def legend_html(items: list[Item]) -> str:
    parts = []
    for item in items:
        text = escape(item.label)
        if item.value:
            text += f" <b style='color:{theme.FG}'>{escape(item.value)}</b>"
        if item.best:
            text += f" <span style='color:{theme.FG_MUTED}'>({escape(item.best)})</span>"
        # One line per entry, cut with an ellipsis when the card is narrower; the hover text is whole.
        title = escape(item.title or item.label, quote=True)
        parts.append(f"<span style='white-space:nowrap;max-width:100%;overflow:hidden;text-overflow:ellipsis' "
                     f"title='{title}'>{_swatch(item)} {text}</span>")
    return (f"<div class='ew-legend' style='display:flex;flex-wrap:wrap;gap:2px 14px;padding:0 8px 0 56px;min-height:4.2em;align-content:flex-start;"
            f"font-size:12px;color:{theme.FG_MUTED}'>" + "".join(parts) + "</div>")
