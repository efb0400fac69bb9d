"""A static copy of the panel kept in the notebook, for when the live widget cannot show.

A saved notebook opened without its kernel (a new session, nbviewer, an HTML export) has no
widget models, and JupyterLab then shows "Error displaying widget: model not found" in place of
the panel. So the panel is displayed as two outputs: the widget, and an HTML snapshot of its
curves and final metrics (refreshed when a run ends). While the live widget shows, a style rule
inside it hides the snapshot; without it the snapshot shows (and hides that error message).
"""
from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from html import escape
from typing import Any, Optional

from .. import theme
from . import static_figure

log = logging.getLogger(__name__)


class Snapshot:
    """The snapshot's display handles and its HTML."""

    def __init__(self) -> None:
        self.uid = uuid.uuid4().hex[:12]
        self.handles: list[Any] = []
        self.pending: Optional[asyncio.Task] = None
        self.html = self._wrap(f"<div style='color:{theme.FG_MUTED}'>TrainingPanel: no run had finished when "
                               "this notebook was saved.</div>")

    @property
    def css_class(self) -> str:
        return f"ew-snapshot-{self.uid}"

    def live_style(self) -> str:
        """Goes inside the live panel: while it renders, its snapshot output stays hidden."""
        return (f"<style>.{self.css_class}{{display:none !important}}"
                f".jp-OutputArea-child:has(.{self.css_class}){{display:none !important}}</style>")

    def bundle(self) -> dict[str, str]:
        return {"text/html": self.html, "text/plain": "TrainingPanel snapshot (the live panel needs its kernel)"}

    def display(self) -> None:
        """Show the snapshot as an output of its own, kept to be refreshed later."""
        from IPython.display import display
        handle = display(self.bundle(), raw=True, display_id=True)
        if handle is not None:
            self.handles.append(handle)

    def refresh(self, png: Optional[bytes], final_html: str, table_html: str) -> None:
        """A run ended: replace the snapshot in every output showing it."""
        image = ""
        if png:
            data = base64.b64encode(png).decode("ascii")
            image = (f"<img src='data:image/png;base64,{data}' alt='loss, metric and learning rate by epoch' "
                     f"style='max-width:100%;height:auto;background:white'>")
        self.html = self._wrap(image + final_html + table_html)
        for handle in self.handles:
            handle.update(self.bundle(), raw=True)

    def refresh_later(self, loop: asyncio.AbstractEventLoop, figure: static_figure.FigureData, final_html: str,
                      table_html: str) -> None:
        """Draw the curves on a worker thread, then refresh; nothing to do while nothing shows it."""
        if self.handles:
            self.pending = loop.create_task(self._refresh(figure, final_html, table_html))

    async def _refresh(self, figure: static_figure.FigureData, final_html: str, table_html: str) -> None:
        try:
            png = await asyncio.to_thread(static_figure.render_png, figure) if static_figure.available() else None
            self.refresh(png, final_html, table_html)
        except Exception as exc:    # the live panel matters more than its static copy
            log.warning("could not refresh the panel's snapshot: %s", exc)

    def _wrap(self, body: str) -> str:
        # Without the live panel, hide the widget output's "model not found" text above it. The
        # widget renderer marks itself .jupyter-widgets only when it failed (a live panel's
        # renderer holds the panel's view instead), and :has() cannot nest, so test that class.
        widget_output = ".jp-OutputArea-output.jupyter-widgets"
        hide_error = (f".jp-OutputArea-child:has(> {widget_output}):has(+ .jp-OutputArea-child .{self.css_class})"
                      "{display:none}")
        note = ("Static snapshot of a TrainingPanel, saved when its last run ended. The live panel needs the "
                "notebook's kernel: run the notebook to use it.")
        return (f"<div class='ew-snapshot {self.css_class}' style='color:{theme.FG};font-family:sans-serif'>"
                f"<style>{hide_error}</style>"
                f"<div style='font-size:12px;color:{theme.FG_MUTED};margin:2px 0 6px'>{escape(note)}</div>"
                f"{body}</div>")
