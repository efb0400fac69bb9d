"""The choice offered when Start meets an ``output_path`` holding another run's checkpoints or saved
files (``trainer.OutputPathInUse``): replace that run, or continue it from its newest checkpoint.

Nothing is deleted unless "Replace it" is pressed; the text says what each button does and that
another Save-to folder is the third way out.
"""
from __future__ import annotations

from html import escape
from typing import Callable, Optional

import ipywidgets as W

from trainer import OutputPathInUse
from trainer.checkpoints import run_summary

from .. import theme
from . import fields


class OverwriteChoice:
    """Hidden until ``offer(exc)``; ``on_replace()`` and ``on_continue(output_path, planned_epochs)``
    are called on a button press (on whatever thread delivers the click)."""

    def __init__(self, on_replace: Callable[[], None], on_continue: Callable[[str, Optional[int]], None]) -> None:
        self.text = W.HTML()
        self.replace_button = W.Button(description="Replace it", button_style="danger", icon="trash",
                                       tooltip="Start this run in that folder; the other run's checkpoints and "
                                               "saved files there are deleted")
        self.continue_button = W.Button(description="Continue that run", icon="history",
                                        tooltip="Resume the other run from its newest checkpoint",
                                        layout=W.Layout(width="auto"))
        self.view = W.VBox([self.text, W.HBox([self.replace_button, self.continue_button])],
                           layout=W.Layout(display="none", margin="2px 0 6px 0"))
        self.output_path: Optional[str] = None
        self.planned_epochs: Optional[int] = None
        self.replace_button.on_click(lambda _b: on_replace())
        self.continue_button.on_click(lambda _b: on_continue(self.output_path or "", self.planned_epochs))

    @property
    def offered(self) -> bool:
        return self.view.layout.display != "none"

    def offer(self, exc: OutputPathInUse) -> None:
        """Say whose checkpoints (or, for a run without them, saved files) ``exc.output_path`` holds
        and show the buttons; "Continue that run" only when it has checkpoints to continue from."""
        self.output_path = exc.output_path
        self.planned_epochs = exc.run.get("epochs") if exc.run else None
        where = fields.label("output_path")
        summary = escape(run_summary(exc.run)) if exc.run else "unreadable"
        if exc.resumable:
            what = (f"holds the checkpoints of another run ({summary}); a new run there would delete them. "
                    f"<b>Replace it</b> to start this run there anyway, <b>Continue that run</b> to resume it "
                    f"from its newest checkpoint,")
        else:
            what = (f"holds the saved files of another run ({summary}); a new run there would replace them. "
                    f"<b>Replace it</b> to start this run there anyway,")
        self.continue_button.layout.display = None if exc.resumable else "none"
        self.text.value = (f"<div class='ew-overwrite' style='color:{theme.WARN}'><b>{escape(exc.output_path)}</b> "
                           f"{what} or change '{escape(where)}' in the Output tab.</div>")
        self.view.layout.display = None

    def withdraw(self) -> None:
        if self.offered:
            self.view.layout.display = "none"
