"""The state line and the epoch and batch progress bars, with elapsed time (paused time left out)
and ETA."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Optional

import ipywidgets as W

from .. import theme

_BAR_STYLES = {"completed": "success", "early_stopped": "success", "failed": "danger", "paused": "warning"}
STATE_WORDS = {"pending": "ready", "preparing": "preparing", "running": "running", "paused": "paused",
               "completed": "completed", "early_stopped": "early stopped", "stopped": "stopped",
               "failed": "failed"}


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
    preparing: str = ""


def describe(snap: Snapshot) -> str:
    """The words after the state: where the run is, or why it ended (never repeating the state)."""
    if snap.preparing:
        return snap.preparing
    epoch, total = snap.current_epoch, snap.total_epochs
    if snap.state == "running":
        return f"epoch {min(epoch + 1, total)} of {total}"
    if snap.state == "paused":
        where = f", after batch {snap.batch} of {snap.num_batches}" if snap.num_batches else ""
        return f"during epoch {min(epoch + 1, total)} of {total}{where}; press Resume to go on"
    if snap.state == "failed":
        return snap.error or snap.reason
    reason = snap.reason
    for prefix in ("early stopping: ", "stopped ", "finished "):
        if reason.startswith(prefix):
            reason = reason[len(prefix):]
    if snap.state == "completed" and reason.startswith("all "):
        return reason
    return reason


class ProgressView:
    """A state line and two progress bars (epochs done, batches of the epoch in progress)."""

    def __init__(self) -> None:
        self.status = W.HTML(layout=W.Layout(min_height="24px"))
        bar = W.Layout(width="260px")
        self.epoch_bar = W.IntProgress(value=0, min=0, max=1, description="Epochs", layout=bar)
        self.batch_bar = W.IntProgress(value=0, min=0, max=1, description="Batches", layout=W.Layout(width="260px"))
        self.epoch_text = W.HTML()
        self.batch_text = W.HTML()
        # A streamed table's passes before training (its statistics): shown only while they run.
        self.pass_bar = W.IntProgress(value=0, min=0, max=1, description="Reading", layout=W.Layout(width="260px"))
        self.pass_text = W.HTML()
        self.pass_row = W.HBox([self.pass_bar, self.pass_text], layout=W.Layout(display="none", margin="0 24px 0 0"))
        self.view = W.HBox([self.pass_row,
                            W.HBox([self.epoch_bar, self.epoch_text], layout=W.Layout(margin="0 24px 0 0")),
                            W.HBox([self.batch_bar, self.batch_text])],
                           layout=W.Layout(flex_flow="row wrap", justify_content="flex-start"))
        self.update(Snapshot())

    def show_pass(self, phase: str, done: int, total: int) -> None:
        """A pass over a streamed table before training: ``done`` of ``total`` rows (``phase``
        "statistics" for the first, "scaling" for those gathering a column's values)."""
        with self.pass_bar.hold_sync():
            _set(self.pass_bar, "max", max(total, 1))
            _set(self.pass_bar, "value", min(done, max(total, 1)))
        word = "first pass (statistics)" if phase == "statistics" else f"{phase} pass"
        _set(self.pass_text, "value", f"<span style='color:{theme.FG}'>{escape(word)}: {done:,}/{total:,} rows</span>")
        _set(self.pass_row.layout, "display", None)

    def update(self, snap: Snapshot) -> None:
        """Show ``snap``; only widgets whose value changed send a message."""
        if not snap.preparing:
            _set(self.pass_row.layout, "display", "none")
        state = "preparing" if snap.preparing else snap.state
        color = theme.STATE_COLORS.get(state, theme.FG_MUTED)
        word = STATE_WORDS.get(state, state.replace("_", " "))
        detail = describe(snap)
        detail_color = theme.ERROR if state == "failed" else theme.FG
        status = (f"<span class='ew-state ew-state-{state}' style='font-weight:bold;color:{color}'>"
                  f"{escape(word)}</span>")
        if detail:
            status += f"<span style='color:{detail_color}'> &mdash; {escape(detail)}</span>"
        _set(self.status, "value", f"<div style='font-size:var(--jp-ui-font-size2, 15px)'>{status}</div>")

        style = _BAR_STYLES.get(snap.state, "info")
        total = max(snap.total_epochs, 1)
        with self.epoch_bar.hold_sync():
            _set(self.epoch_bar, "max", total)
            _set(self.epoch_bar, "value", min(snap.current_epoch, total))
            _set(self.epoch_bar, "bar_style", style)
        with self.batch_bar.hold_sync():
            _set(self.batch_bar, "max", max(snap.num_batches, 1))
            _set(self.batch_bar, "value", min(snap.batch, max(snap.num_batches, 1)))
            _set(self.batch_bar, "bar_style", style)

        eta = f" &middot; ETA {format_seconds(snap.remaining)}" if snap.state == "running" and not snap.preparing else ""
        elapsed = "" if snap.elapsed is None else f" &middot; elapsed {format_seconds(snap.elapsed)}"
        muted = f"style='color:{theme.FG}'"
        _set(self.epoch_text, "value", f"<span {muted}>{snap.current_epoch}/{snap.total_epochs} done{elapsed}{eta}</span>")
        _set(self.batch_text, "value",
             f"<span {muted}>{snap.batch}/{snap.num_batches}</span>" if snap.num_batches else "")


def _set(widget: W.Widget, name: str, value: object) -> None:
    if getattr(widget, name) != value:
        setattr(widget, name, value)


def end_note(state: str, current_epoch: int, best_epoch: Optional[int]) -> str:
    """A few words for the loss figure's title (the state line has the full reason)."""
    best_text = f", best {best_epoch}" if best_epoch else ""
    if state == "early_stopped":
        return f"early stopped at {current_epoch}{best_text}"
    if state == "stopped":
        return f"stopped at {current_epoch}{best_text}"
    if state == "failed":
        return f"failed in epoch {current_epoch + 1}"
    return f"best epoch {best_epoch}" if best_epoch else f"{current_epoch} epochs"
