"""Tabs whose pages are in the page only while selected: a figure in a tab that is not selected
would be drawn at a width of 0 (hundreds of negative-size errors in the browser's console)."""
from __future__ import annotations

from typing import Iterator

import bqplot as bq
import ipywidgets as W
import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from epoch_widgets.panel.tab_pages import TabPages


def descendants(widget: W.Widget) -> Iterator[W.Widget]:
    """Every widget a browser would draw for ``widget`` (boxes' children, recursively)."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from descendants(child)


def test_only_the_selected_page_is_in_the_tab() -> None:
    figure = bq.Figure(marks=[], axes=[])
    pages = TabPages([W.HTML("table"), W.VBox([figure])], ["Epochs", "Chart"])
    assert pages.tab.titles == ("Epochs", "Chart") and pages.tab.selected_index == 0
    assert [slot.children for slot in pages.tab.children] == [(pages.pages[0],), ()]
    assert figure not in set(descendants(pages.tab))
    pages.select("Chart")                   # as a click on the tab does: the kernel hears selected_index
    assert [slot.children for slot in pages.tab.children] == [(), (pages.pages[1],)]
    assert figure in set(descendants(pages.tab))
    extra = W.HTML("mine")
    pages.add("Mine", extra)
    assert pages.tab.titles[-1] == "Mine" and pages.tab.children[-1].children == ()
    pages.add("Also mine", W.HTML("also"), select=True)
    assert pages.tab.selected_index == 3 and pages.tab.children[1].children == ()
    with pytest.raises(KeyError, match="no tab called 'Nope'"):
        pages.select("Nope")
    with pytest.raises(ValueError, match="one title per page"):
        TabPages([W.HTML()], ["a", "b"])


def test_the_panels_hidden_tabs_hold_no_figure(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    drawn = set(descendants(panel))
    # The curves' figures only (always shown): none of the Evaluation, LR finder or Runs tab.
    assert {w for w in drawn if isinstance(w, bq.Figure)} == set(panel.curves.figures)
    panel.tabs.select("Runs")
    drawn = set(descendants(panel))
    assert set(panel.runs.comparison.figure_box.children) <= drawn and panel.table.view not in drawn
