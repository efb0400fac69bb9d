"""The panel's message area: notices that disappear once they stop being true, and the list of
problems that keep Start disabled."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Callable, Optional

import ipywidgets as W

from .. import theme
from . import fields
from .messages import short_message

MAX_LISTED_PROBLEMS = 6
_COLORS = {"error": theme.ERROR, "warning": theme.WARN, "info": theme.FG_MUTED}


@dataclass
class Notice:
    text: str
    kind: str = "error"                              # error | warning | info
    holds: Optional[Callable[[], bool]] = None       # the notice goes once this turns False


class Notices:
    """Keyed notices, each shown while its condition holds (or until it is cleared)."""

    def __init__(self) -> None:
        self.view = W.HTML()
        self._items: dict[str, Notice] = {}
        self._problems: dict[str, str] = {}
        self._hidden: set[str] = set()

    def set(self, key: str, text: str, kind: str = "error", holds: Optional[Callable[[], bool]] = None) -> None:
        self._items[key] = Notice(text, kind, holds)
        self.render()

    def clear(self, *keys: str) -> None:
        for key in keys or list(self._items):
            self._items.pop(key, None)
        self.render()

    def text(self, key: str) -> str:
        return self._items[key].text if key in self._items else ""

    def set_problems(self, problems: dict[str, str], hidden: set[str]) -> None:
        """The config problems that keep Start disabled (empty while a run trains)."""
        self._problems, self._hidden = dict(problems), set(hidden)
        self.render()

    def render(self) -> None:
        """Drop notices that are no longer true, and show the rest."""
        for key in [k for k, n in self._items.items() if n.holds is not None and not n.holds()]:
            del self._items[key]
        parts = [f"<div style='color:{_COLORS.get(n.kind, theme.ERROR)}'>{escape(n.text)}</div>"
                 for n in self._items.values()]
        if self._problems:
            items = []
            for name, message in list(self._problems.items())[:MAX_LISTED_PROBLEMS]:
                where = " (hidden for this choice)" if name in self._hidden else ""
                title = fields.label(name) if name in fields.FIELD_SPECS else name
                items.append(f"<li title='{escape(message, quote=True)}'><b>{escape(title)}</b>{where}: "
                             f"{escape(short_message(name, message))}</li>")
            more = len(self._problems) - MAX_LISTED_PROBLEMS
            if more > 0:
                items.append(f"<li>and {more} more</li>")
            parts.append(f"<div style='color:{theme.ERROR}'>Start is disabled until these are fixed:"
                         f"<ul style='margin:2px 0'>{''.join(items)}</ul></div>")
        html = "".join(parts)
        if self.view.value != html:
            self.view.value = html
