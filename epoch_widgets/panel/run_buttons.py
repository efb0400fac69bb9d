"""The panel's row of buttons (Start, Find LR, Pause/Resume, Stop, Resume from checkpoint) and
which of them can be pressed in each state. What a press does is ``actions``' business."""
from __future__ import annotations

import ipywidgets as W


class RunButtons:
    """The buttons and ``sync(...)``, which enables each for the state the panel is in."""

    def __init__(self) -> None:
        self.start = W.Button(description="Start", button_style="success", icon="play",
                              tooltip="Train with these settings")
        self.find_lr = W.Button(description="Find LR", icon="search",
                                tooltip="Search for a learning rate: the loss against the rate, with a suggested "
                                        "rate to use (in the LR finder tab below the charts)")
        self.pause = W.Button(description="Pause", button_style="warning", icon="pause", disabled=True,
                              tooltip="Pause after the batch in progress")
        self.stop = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                             tooltip="Stop the run (finished epochs are kept) or the learning-rate search, "
                                     "after the batch in progress")
        self.resume = W.Button(description="Resume from checkpoint", icon="history", disabled=True,
                               tooltip="Continue the run whose checkpoints are in the Save-to folder",
                               layout=W.Layout(width="auto"))

    @property
    def all(self) -> tuple[W.Button, W.Button, W.Button, W.Button, W.Button]:
        return self.start, self.find_lr, self.pause, self.stop, self.resume

    def sync(self, *, running: bool, searching: bool, preparing: bool, paused: bool, valid: bool,
             can_resume: bool) -> None:
        """A run and a learning-rate search exclude each other; Stop ends whichever is on."""
        active = running or searching
        self.start.disabled = self.find_lr.disabled = active or not valid
        self.pause.disabled = not running or preparing
        self.stop.disabled = not (searching or (running and not preparing))
        self.resume.disabled = active or not can_resume
        self.pause.description = "Resume" if paused else "Pause"
        self.pause.icon = "play" if paused else "pause"
