"""Steering the panel's live run: while a run trains (or is paused) the controls of the settings it
accepts (``trainer.steering.CHANGEABLE``) stay unlocked, an "Apply changes" button sends what
differs from the run's settings to ``run.update``, and every other control stays locked with a
tooltip saying why.

``run.update`` waits for the run's next batch boundary, so it is called in a worker thread: the
kernel's loop, where an in-process run trains, stays free meanwhile.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional

import ipywidgets as W

from trainer import ConfigError, StateError
from trainer.run_records import describe_change
from trainer.steering import CHANGEABLE

from . import fields

if TYPE_CHECKING:
    from .training_panel import TrainingPanel

APPLY_TOOLTIP = "Change the live run's settings to the unlocked controls' values, between two batches"


def locked_reason(name: str, paused: bool) -> str:
    """Why ``name``'s control is locked while a run trains, and what to do."""
    label = fields.label(name)
    changeable = CHANGEABLE.get(name)
    if changeable is not None and not changeable.while_running and not paused:
        return f"{label} can change only while the run is paused: press Pause, change it, then Apply changes"
    can = ", ".join(fields.label(n) for n in CHANGEABLE)
    return (f"Locked while the run trains: {label} is fixed when a run starts (settings that can change now: "
            f"{can}). Stop the run and start a new one to change it")


class Steering:
    """The Apply-changes button and the lock state of the controls while a run is live."""

    def __init__(self, panel: "TrainingPanel") -> None:
        self.panel = panel
        self.button = W.Button(description="Apply changes", icon="check", button_style="info", disabled=True,
                               tooltip=APPLY_TOOLTIP, layout=W.Layout(width="auto", display="none"))
        self.button.on_click(lambda _b: panel.actions.from_ui(self.apply_now))
        self.task: Optional["asyncio.Task[Optional[dict[str, Any]]]"] = None
        self._tooltips = {name: w.tooltip for name, w in panel.controls.inputs.items()}

    @property
    def busy(self) -> bool:
        """Whether a change is on its way to the run."""
        return self.task is not None and not self.task.done()

    def unlocked(self, paused: bool) -> set[str]:
        """The fields whose controls a live run leaves unlocked (more of them while it is paused)."""
        return {n for n, c in CHANGEABLE.items() if (paused or c.while_running) and n in self.panel.controls.inputs}

    def sync(self, live: bool, paused: bool) -> None:
        """Tooltips and the button for a live run (``live``: training or paused, not preparing)."""
        controls = self.panel.controls
        open_now = self.unlocked(paused) if live else set()
        for name, widget in controls.inputs.items():
            if not live:
                tip = self._tooltips[name]
            elif name in open_now:
                tip = f"{self._tooltips[name]}. Can change in the live run: {CHANGEABLE[name].takes_effect}"
            else:
                tip = locked_reason(name, paused)
            if widget.tooltip != tip:
                widget.tooltip = tip
        self.button.layout.display = None if live else "none"
        pending = self.changes(quiet=True) if live else {}
        self.button.disabled = not live or self.busy or not pending
        self.button.description = "Applying…" if self.busy else "Apply changes"
        listed = ", ".join(f"{fields.label(k)} \u2192 {v}" for k, v in pending.items())
        self.button.tooltip = (f"{APPLY_TOOLTIP}: {listed}" if pending
                               else "Change an unlocked setting to apply it to the live run")

    def changes(self, quiet: bool = False) -> dict[str, Any]:
        """The unlocked controls' values that differ from the run's settings. ConfigError (shown
        beside the controls) when one of them cannot be read, unless ``quiet`` (then it is left out)."""
        run = self.panel.run
        if run is None:
            return {}
        values, errors = self.panel.controls.values()
        paused = bool(run.pause_requested)
        open_now = self.unlocked(paused)
        bad = {n: m for n, m in errors.items() if n in open_now}
        if bad and not quiet:
            raise ConfigError([{"field": n, "value": None, "message": m} for n, m in bad.items()])
        return {n: values[n] for n in sorted(open_now) if n in values and n not in bad
                and values[n] != getattr(run.config, n)}

    # ------------------------------------------------------------------ applying (loop thread)
    def apply_values(self, values: dict[str, Any]) -> "asyncio.Task[Optional[dict[str, Any]]]":
        """Put ``values`` into their controls, then :meth:`apply_now`."""
        for name, value in values.items():
            self.panel.controls.set_value(name, value)
        return self.apply_now()

    def apply_now(self) -> "asyncio.Task[Optional[dict[str, Any]]]":
        """Send the pending changes to the run; the task returns the applied change (the
        ``config_change`` data), or raises why it was refused (shown in the panel too)."""
        panel, actions = self.panel, self.panel.actions
        run = panel.run
        if run is None or not actions.run_active() or actions.preparing:
            raise actions.fail(StateError("there is no live run to change: start one first"))
        if self.busy:
            raise actions.fail(StateError("a change is already on its way to the run; wait for it"))
        try:
            changes = self.changes()
        except ConfigError as exc:
            panel.show_config_errors({e["field"]: e["message"] for e in exc.errors})
            raise actions.fail(exc)
        if not changes:
            raise actions.fail(StateError("nothing to apply: every unlocked setting already has the run's value"))
        loop = panel.binding.loop
        assert loop is not None
        panel.notices.clear("action", "steer")
        self.task = loop.create_task(self._apply(run, changes))
        self.task.add_done_callback(lambda t: t.cancelled() or t.exception())     # shown in the panel
        panel.sync_controls()
        return self.task

    async def _apply(self, run: Any, changes: dict[str, Any]) -> Optional[dict[str, Any]]:
        panel = self.panel
        try:
            change = await asyncio.to_thread(run.update, **changes)
        except ConfigError as exc:
            panel.show_config_errors({e["field"]: e["message"] for e in exc.errors})
            panel.notices.set("steer", f"not applied: {exc}")
            raise
        except StateError as exc:
            panel.notices.set("steer", f"not applied: {exc}")
            raise
        finally:
            self.task = None
            panel.sync_controls()
        panel.notices.set("steer", "Applied: " + describe_change(change), kind="info")
        return change
