"""Export from the panel: the history as CSV and the curves as PNG, written next to the notebook
and offered as a download link in the browser."""
from __future__ import annotations

import asyncio
import base64
import re
from html import escape
from pathlib import Path
from typing import Any, Callable, Optional, Union

import ipywidgets as W
import pandas as pd

from .. import theme
from . import static_figure


def default_path(run_name: str, suffix: str, folder: Union[str, Path, None] = None) -> Path:
    """``<folder>/<run name>.<suffix>``, then ``-2``, ``-3``, ... when taken; the folder defaults to
    the kernel's working directory, which in Jupyter is the notebook's own. (The panel names a run
    by its model and start time unless it was given a name.)"""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", run_name).strip("-").lower() or "run"
    folder = Path(folder or Path.cwd())
    path, n = folder / f"{slug}.{suffix}", 2
    while path.exists():
        path, n = folder / f"{slug}-{n}.{suffix}", n + 1
    return path


def history_csv(history: list[dict[str, Any]]) -> bytes:
    return pd.DataFrame(list(history)).to_csv(index=False).encode()


def write(path: Union[str, Path], data: bytes) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def download_link(path: Path, data: bytes, mime: str) -> str:
    """A link that downloads ``data`` in the browser under ``path``'s name; says where the file is."""
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return (f"<span style='color:{theme.FG_MUTED}' title='{escape(str(path), quote=True)}'>saved "
            f"<code>{escape(path.name)}</code> next to the notebook &middot; "
            f"<a href='{url}' download='{escape(path.name, quote=True)}' style='color:{theme.ACCENT}'>"
            f"download {escape(path.suffix[1:].upper())}</a></span>")


class ExportBar:
    """CSV and PNG buttons and the link to the last exported file.

    ``history`` and ``figure`` give what to export, ``path_for(suffix)`` where; clicks run through
    ``call`` (the panel's hand-over to its loop thread) and the PNG is drawn on a worker thread.
    """

    def __init__(self, history: Callable[[], list[dict[str, Any]]],
                 figure: Callable[[], static_figure.FigureData], path_for: Callable[[str], Path],
                 call: Callable[[Callable[[], Any]], None]) -> None:
        self._history, self._figure, self._path_for = history, figure, path_for
        self.csv_button = W.Button(description="CSV", icon="table", layout=W.Layout(width="auto"), disabled=True,
                                   tooltip="Save the history (one row per epoch) as CSV next to the notebook "
                                           "and offer it for download")
        self.png_button = W.Button(description="PNG", icon="image", layout=W.Layout(width="auto"), disabled=True,
                                   tooltip=("Save the curves as a PNG next to the notebook and offer it for download"
                                            if static_figure.available() else
                                            "PNG export needs matplotlib: pip install matplotlib"))
        self.link = W.HTML(layout=W.Layout(min_width="0"))
        self.widgets = [self.csv_button, self.png_button, self.link]
        self.csv_button.on_click(lambda _b: call(self._csv))
        self.png_button.on_click(lambda _b: call(self._png))
        self.pending: Optional[asyncio.Task] = None

    def sync(self, has_history: bool) -> None:
        """Buttons are usable once there is an epoch to export."""
        for button, ok in ((self.csv_button, has_history), (self.png_button, has_history and static_figure.available())):
            if button.disabled == ok:
                button.disabled = not ok

    def show(self, path: Optional[Path], data: bytes, mime: str) -> None:
        html = download_link(path, data, mime) if path is not None else ""
        if self.link.value != html:
            self.link.value = html

    def csv(self, path: Union[str, Path, None] = None) -> Path:
        return write(path or self._path_for("csv"), history_csv(self._history()))

    def png(self, path: Union[str, Path, None] = None) -> Path:
        return write(path or self._path_for("png"), static_figure.render_png(self._figure()))

    def _csv(self) -> None:
        path = self.csv()
        self.show(path, path.read_bytes(), "text/csv")

    def _png(self) -> None:
        async def render() -> None:
            png = await asyncio.to_thread(static_figure.render_png, data)
            self.show(write(path, png), png, "image/png")

        data, path = self._figure(), self._path_for("png")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:        # no loop (plain Python): draw here
            self.show(self.png(path), path.read_bytes(), "image/png")
            return
        self.pending = loop.create_task(render())
