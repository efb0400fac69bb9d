"""Tabs whose pages are in the browser's page only while they show.

A bqplot figure measures itself when it is drawn. Drawn inside a tab that is not selected
(``display: none``) it measures a width and height of 0, gives its plot area a negative size (0
minus its margins), and the browser logs "<rect> attribute width: A negative value is not valid"
for each of its rectangles, at every draw: hundreds of errors for the figures of the Evaluation, LR
finder and Runs tabs, at render and at every run's end. So a page that is not selected has no view
at all: each tab holds an empty box, and selecting a tab puts its page in, where it is drawn at its
real size.
"""
from __future__ import annotations

from typing import Optional, Sequence

import ipywidgets as W


class TabPages:
    """A ``W.Tab`` (``tab``) over ``pages``; only the selected page is in the tab's box."""

    def __init__(self, pages: Sequence[W.Widget], titles: Sequence[str], layout: Optional[W.Layout] = None) -> None:
        if len(pages) != len(titles):
            raise ValueError(f"{len(pages)} pages but {len(titles)} titles: give one title per page")
        self.pages: list[W.Widget] = list(pages)
        self.tab = W.Tab([_slot() for _ in self.pages], layout=layout or W.Layout(width="100%"))
        self.tab.titles = tuple(titles)
        self.tab.observe(lambda _change: self._show_selected(), "selected_index")
        self._show_selected()

    def add(self, title: str, page: W.Widget, select: bool = False) -> None:
        """Add a tab called ``title`` showing ``page``; ``select`` shows it now."""
        self.pages.append(page)
        self.tab.children = (*self.tab.children, _slot())
        self.tab.set_title(len(self.pages) - 1, title)
        if select:
            self.tab.selected_index = len(self.pages) - 1
        self._show_selected()

    def select(self, title: str) -> None:
        """Show the tab called ``title``."""
        titles = list(self.tab.titles)
        if title not in titles:
            raise KeyError(f"no tab called {title!r}; the tabs are {titles}")
        self.tab.selected_index = titles.index(title)

    def _show_selected(self) -> None:
        selected = self.tab.selected_index
        for index, (slot, page) in enumerate(zip(self.tab.children, self.pages)):
            wanted = (page,) if index == selected else ()
            if slot.children != wanted:
                slot.children = wanted


def _slot() -> W.Box:
    return W.Box([], layout=W.Layout(width="100%"))
