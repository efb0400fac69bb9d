"""The state line and the epoch and batch progress bars, with elapsed time and ETA."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Optional

import ipywidgets as W

_STATE_COLORS = {"pending": "#616161", "running": "#1565c0", "paused": "#ef6c00", "completed": "#2e7d32",
                 "early_stopped": "#2e7d32", "stopped": "#6d4c41", "failed": "#c62828"}
_BAR_STYLES = {"completed": "success", "early_stopped": "success", "failed": "danger", "paused": "warning"}


def format_seconds(seconds: Optional[float]) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour); ``--:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def estimate_remaining(epoch_times: list[float], current_epoch: int, total_epochs: int,
                       batch: int, num_batches: int) -> Optional[float]:
    """Seconds left at the pace of the recent epochs (the last 10), counting the epoch in progress."""
    if not epoch_times:
        return None
    recent = epoch_times[-10:]
    per_epoch = sum(recent) / len(recent)
    done_in_epoch = batch / num_batches if num_batches else 0.0
    return max(0.0, (total_epochs - current_epoch - done_in_epoch) * per_epoch)


@dataclass
class Snapshot:
    """What the progress view shows; the panel fills it from its run."""

    state: str = "pending"
    current_epoch: int = 0
    total_epochs: int = 0
    batch: int = 0
    num_batches: int = 0
    elapsed: Optional[float] = None
    remaining: Optional[float] = None
    reason: str = ""
    error: str = ""


class ProgressView:
    """A state line and two progress bars (epochs, batches of the epoch in progress)."""

    def __init__(self) -> None:
        self.status = W.HTML()
        self.epoch_bar = W.IntProgress(value=0, min=0, max=1, description="epochs",
                                       layout=W.Layout(width="320px"))
        self.batch_bar = W.IntProgress(value=0, min=0, max=1, description="batches",
                                       layout=W.Layout(width="320px"))
        self.epoch_text = W.HTML()
        self.batch_text = W.HTML()
        self.view = W.VBox([self.status, W.HBox([self.epoch_bar, self.epoch_text]),
                            W.HBox([self.batch_bar, self.batch_text])])
        self.update(Snapshot())

    def update(self, snap: Snapshot) -> None:
        """Show ``snap``; only widgets whose value changed send a message."""
        color = _STATE_COLORS.get(snap.state, "#616161")
        status = f"<b style='color:{color}'>{escape(snap.state.replace('_', ' '))}</b>"
        if snap.error:
            status += f" &mdash; <span style='color:#c62828'>{escape(snap.error)}</span>"
        elif snap.reason:
            status += f" &mdash; {escape(snap.reason)}"
        _set(self.status, "value", status)

        style = _BAR_STYLES.get(snap.state, "info")
        with self.epoch_bar.hold_sync():
            _set(self.epoch_bar, "max", max(snap.total_epochs, 1))
            _set(self.epoch_bar, "value", min(snap.current_epoch, max(snap.total_epochs, 1)))
            _set(self.epoch_bar, "bar_style", style)
        with self.batch_bar.hold_sync():
            _set(self.batch_bar, "max", max(snap.num_batches, 1))
            _set(self.batch_bar, "value", min(snap.batch, max(snap.num_batches, 1)))
            _set(self.batch_bar, "bar_style", style)

        eta = "" if snap.state != "running" else f" &middot; ETA {format_seconds(snap.remaining)}"
        elapsed = "" if snap.elapsed is None else f" &middot; elapsed {format_seconds(snap.elapsed)}"
        _set(self.epoch_text, "value", f"{snap.current_epoch}/{snap.total_epochs}{elapsed}{eta}")
        _set(self.batch_text, "value", f"{snap.batch}/{snap.num_batches}" if snap.num_batches else "")


def _set(widget: W.Widget, name: str, value: object) -> None:
    if getattr(widget, name) != value:
        setattr(widget, name, value)
