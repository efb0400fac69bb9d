"""The panel's Sweep tab: search the settings over many trials (``trainer.sweep``) and watch them.

Pick the fields to vary (``sweep_space``), how many trials, how many at once, the metric and the
pruner, and press Start sweep: the sweep trains its trials in the background (worker processes
for ``parallel`` > 1) and tells this tab about each trial's start, epochs and end through its
callbacks, which arrive on the sweep's threads and are handed to the loop's thread, so the kernel
stays free. Drawn from those events, throttled like the panel's own curves: every trial's
validation curve, a sortable table and each varied parameter against the metric. "Use best
settings" copies the best trial's values into the panel's controls.
"""
from __future__ import annotations

import asyncio
import time
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import ipywidgets as W

import trainer
from trainer import ConfigError
from trainer.data import infer_task

from .. import theme
from ..charts.sweep_charts import LIVE_STATES, ParamPlots, SweepCurves, TrialsTable, best_trial
from ._loop import Throttle
from .sweep_space import SpaceForm

if TYPE_CHECKING:
    from .training_panel import TrainingPanel

METRICS = ("val_loss", "val_accuracy", "val_mae", "train_loss")
# What a trial can be scored by, for the data's task (a regression has no accuracy).
TASK_METRICS = {"classification": ("val_loss", "val_accuracy", "train_loss", "train_accuracy"),
                "regression": ("val_loss", "val_mae", "train_loss", "train_mae")}
PRUNERS = (("median", "median"), ("ASHA", "asha"), ("none", None))
SAMPLERS = ("tpe", "random", "grid")
SWEEP_LIVE = ("running", "paused")


def _button(text: str, icon: str, tooltip: str, style: str = "") -> W.Button:
    return W.Button(description=text, icon=icon, tooltip=tooltip, button_style=style,
                    layout=W.Layout(width="auto", min_width="110px"))


class SweepTab:
    """The Sweep tab of a TrainingPanel (``view``); ``start()``, ``wait()``, ``use_best_settings()``."""

    def __init__(self, panel: "TrainingPanel", update_interval: float = 0.25) -> None:
        self.panel = panel
        self.sweep: Optional[Any] = None            # the trainer Sweep handle of the last Start sweep
        self.histories: dict[int, list[dict[str, Any]]] = {}
        self._start_task: Optional["asyncio.Task[Any]"] = None
        self._varied: list[str] = []
        self._logs: list[str] = []
        self._throttle = Throttle(self._redraw, update_interval, panel.binding)
        self._built = False
        self.form = SpaceForm(self._request)
        self.trials = W.BoundedIntText(value=10, min=1, max=10_000, description="trials",
                                       layout=W.Layout(width="170px"))
        self.parallel = W.BoundedIntText(value=1, min=1, max=64, description="parallel",
                                         tooltip="trials trained at once, each in a worker process",
                                         layout=W.Layout(width="170px"))
        self.metric = W.Dropdown(options=list(METRICS), value="val_loss", description="metric",
                                 layout=W.Layout(width="220px"))
        self.pruner = W.Dropdown(options=list(PRUNERS), value="median", description="pruner",
                                 layout=W.Layout(width="200px"))
        self.sampler = W.Dropdown(options=list(SAMPLERS), value="tpe", description="sampler",
                                  layout=W.Layout(width="200px"))
        self.start_button = _button("Start sweep", "play", "Train the trials with the settings above", "success")
        self.pause_button = _button("Pause sweep", "pause", "Pause every running trial (Resume continues them)")
        self.stop_button = _button("Stop sweep", "stop", "Stop the sweep: no new trials; running ones stop", "danger")
        self.trial_pick = W.Dropdown(options=[], description="trial", layout=W.Layout(width="170px"))
        self.trial_pause = _button("Pause trial", "pause", "Pause (or resume) the chosen trial")
        self.trial_stop = _button("Stop trial", "stop", "Stop the chosen trial; the sweep goes on")
        self.use_best_button = _button("Use best settings", "check", "Copy the best trial's settings into the controls")
        self.message = W.HTML()
        self.curves = SweepCurves()
        self.param_plots = ParamPlots()
        self.table = TrialsTable()
        ui = panel.actions.from_ui
        self.start_button.on_click(lambda _b: ui(self.start))
        self.pause_button.on_click(lambda _b: ui(self.toggle_pause))
        self.stop_button.on_click(lambda _b: ui(self.stop))
        self.trial_pause.on_click(lambda _b: ui(lambda: self.toggle_trial(self.trial_pick.value)))
        self.trial_stop.on_click(lambda _b: ui(lambda: self.stop_trial(self.trial_pick.value)))
        self.use_best_button.on_click(lambda _b: ui(self.use_best_settings))
        row = W.Layout(flex_flow="row wrap", align_items="center", width="100%")
        self.view = W.VBox([
            W.HTML("<b>Vary</b> <small>(ranges start from the field's limits and the current settings)</small>"),
            self.form.view,
            W.HBox([self.trials, self.parallel, self.metric, self.pruner, self.sampler], layout=row),
            W.HBox([self.start_button, self.pause_button, self.stop_button, self.use_best_button], layout=row),
            W.HBox([self.trial_pick, self.trial_pause, self.trial_stop], layout=row),
            self.message, self.curves.view, self.table.view, self.param_plots.view,
        ], layout=W.Layout(width="100%"))
        self.prefill()
        self._built = True
        self._sync()
        # The settings may change after the panel is built: the ranges follow them each time the tab shows.
        panel.views.observe(lambda _c: self._shown() and self.prefill(), "selected_index")

    # ------------------------------------------------------------------ public
    def prefill(self) -> None:
        """Ranges and choices around the controls' current settings, and the metrics their task has."""
        values, _errors = self.panel.controls.values()
        self.form.prefill(values)
        validation = self.panel.controls.validate(self.panel.data)
        if validation.valid and self.panel.data is not None:
            task = infer_task(validation.config, self.panel.data[validation.config.target_column])
            options = list(TASK_METRICS.get(task, METRICS))
            if list(self.metric.options) != options:
                keep = self.metric.value if self.metric.value in options else "val_loss"
                with self.metric.hold_trait_notifications():
                    self.metric.options = options
                    self.metric.value = keep

    @property
    def state(self) -> str:
        """The sweep's state ('' before the first Start sweep)."""
        return str(self.sweep.state) if self.sweep is not None else ""

    def start(self) -> "asyncio.Task[Any]":
        """Start a sweep with the form's space and options and the panel's config (what Start sweep does).

        Returns the task that creates it (the sweep trains in the background); ConfigError or
        ValueError when the controls or the form cannot start one, said in the tab too."""
        if self.sweep is not None and self.state in SWEEP_LIVE or self._starting():
            raise self._say_error(trainer.StateError("a sweep is already running: stop it first"))
        self.prefill()          # rows the user left alone follow the settings as they are now
        try:
            config = self.panel.config
            space = self.form.space()
        except (ConfigError, ValueError) as exc:
            raise self._say_error(exc)
        if self.panel.data is None:
            raise self._say_error(ConfigError.single("data", None, "no data: pass data=DataFrame or set data_path"))
        folder = config.output_path or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
        options = dict(trials=self.trials.value, parallel=self.parallel.value, metric=self.metric.value,
                       sampler=self.sampler.value, pruner=self.pruner.value, output_path=str(Path(folder)))
        self._varied, self._logs = list(space), self.form.log_fields()
        self.histories, self.sweep = {}, None
        self.curves.clear()
        self._say(f"Starting a sweep of {options['trials']} trials in {escape(folder)}…")
        run_config = config.replace(output_path=None)
        self._start_task = asyncio.ensure_future(asyncio.to_thread(
            trainer.sweep, run_config, self.panel.data, space, callbacks=[self._from_sweep], **options))
        self._start_task.add_done_callback(lambda task: self.panel.binding.call(lambda: self._started(task)))
        self._sync()
        return self._start_task

    async def wait(self) -> Any:
        """Wait for the sweep started here to end (its last trial); returns the Sweep."""
        if self._start_task is None:
            raise trainer.StateError("wait() needs a started sweep: press Start sweep first")
        sweep = await asyncio.shield(self._start_task)
        await asyncio.to_thread(sweep.wait)
        await asyncio.sleep(0)          # the last events, handed over by the sweep's threads
        self._throttle.flush_now()
        return sweep

    def toggle_pause(self) -> None:
        """Pause the sweep's running trials, or resume a paused sweep."""
        sweep = self._need_sweep("pause")
        self._in_thread(sweep.resume if self.state == "paused" else sweep.pause)

    def stop(self) -> None:
        self._in_thread(self._need_sweep("stop").stop)

    def toggle_trial(self, number: Optional[int]) -> None:
        """Pause the trial ``number``, or resume it when it is paused."""
        sweep = self._need_sweep("pause a trial")
        trial = self._trial(number)
        self._in_thread(lambda: (sweep.resume_trial if trial.state == "paused" else sweep.pause_trial)(number))

    def stop_trial(self, number: Optional[int]) -> None:
        sweep = self._need_sweep("stop a trial")
        self._trial(number)
        self._in_thread(lambda: sweep.stop_trial(number))

    def use_best_settings(self) -> dict[str, Any]:
        """Copy the best trial's values of the varied fields into the panel's controls; returns them."""
        sweep = self._need_sweep("use the best settings")
        best = sweep.best_config
        if best is None:
            raise self._say_error(trainer.StateError("no trial has completed yet: there is no best setting"))
        chosen = {name: getattr(best, name) for name in self._varied}
        for name, value in chosen.items():
            self.panel.controls.set_value(name, value)
        self.panel.revalidate()
        self._say("Copied the best trial's settings into the controls: " + ", ".join(
            f"{escape(k)} = {escape(str(v))}" for k, v in chosen.items()))
        return chosen

    def trial_dicts(self) -> list[dict[str, Any]]:
        """Each trial as the charts draw it: number, params, state, history, best_metric, epochs_done, reason."""
        if self.sweep is None:
            return []
        out = []
        for t in list(self.sweep.trials):
            history = list(self.histories.get(t.number) or ())
            if not history and getattr(t, "run", None) is not None:
                history = list(getattr(t.run, "history", None) or ())
            out.append({"number": t.number, "params": dict(t.params), "state": str(t.state), "history": history,
                        "best_metric": t.best_metric, "epochs_done": t.epochs_done,
                        "reason": getattr(t, "reason", None)})
        return out

    def close(self) -> None:
        self._throttle.cancel()
        self.param_plots.close()

    # ------------------------------------------------------------------ following the sweep
    def _started(self, task: "asyncio.Future[Any]") -> None:
        if task.cancelled() or task.exception() is not None:
            exc = task.exception() if not task.cancelled() else trainer.StateError("cancelled")
            self._say_error(exc)
            self._sync()
            return
        self.sweep = task.result()
        self._say(f"Sweep running in {escape(str(self.sweep.path))}")
        self._request(urgent=True)

    def _from_sweep(self, _sweep: Any, event: str, data: dict[str, Any]) -> None:
        # On one of the sweep's threads: hand the event to the loop's thread.
        self.panel.binding.call(lambda: self._on_event(event, data))

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "trial_start":
            self.histories[data["number"]] = []
        elif event == "trial_epoch":
            entry = {"epoch": data["epoch"], **(data.get("metrics") or {})}
            history = self.histories.setdefault(data["number"], [])
            if not history or history[-1]["epoch"] < entry["epoch"]:
                history.append(entry)
        self._request(urgent=event != "trial_epoch")

    def _request(self, urgent: bool = False) -> None:
        if self._built:
            self._throttle.request(urgent)

    def _redraw(self) -> None:
        trials = self.trial_dicts()
        metric = self.metric.value
        direction = getattr(self.sweep, "direction", None) or ("maximize" if "accuracy" in metric else "minimize")
        best = best_trial(trials, direction)
        self.curves.update(trials, metric)
        self.table.update(trials, self._varied, metric, best["number"] if best else None)
        self.param_plots.update(trials, self._varied, metric, self._logs)
        live = [t["number"] for t in trials if t["state"] in LIVE_STATES and t["state"] != "waiting"]
        options = [(f"{n}", n) for n in live]
        if list(self.trial_pick.options) != options:
            self.trial_pick.options = options
        if self.sweep is not None:
            counts: dict[str, int] = {}
            for t in trials:
                counts[t["state"]] = counts.get(t["state"], 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            best_text = (f"; best so far: trial {best['number']} ({metric} {best['best_metric']:.4g})" if best else "")
            color = theme.STATE_COLORS.get(self.state, theme.FG_MUTED)
            self._say(f"<span style='color:{color}'>Sweep {escape(self.state)}</span>: {escape(summary)}{best_text}")
        self._sync()

    # ------------------------------------------------------------------ helpers
    def _shown(self) -> bool:
        views = self.panel.views
        return views.selected_index is not None and views.titles[views.selected_index] == "Sweep"

    def _starting(self) -> bool:
        return self._start_task is not None and not self._start_task.done()

    def _sync(self) -> None:
        live = self.sweep is not None and self.state in SWEEP_LIVE
        self.start_button.disabled = live or self._starting()
        self.pause_button.disabled = self.stop_button.disabled = not live
        self.pause_button.description = "Resume sweep" if self.state == "paused" else "Pause sweep"
        self.pause_button.icon = "play" if self.state == "paused" else "pause"
        self.trial_pause.disabled = self.trial_stop.disabled = not (live and self.trial_pick.options)
        picked = self._find(self.trial_pick.value)
        self.trial_pause.description = "Resume trial" if picked is not None and picked.state == "paused" else "Pause trial"
        self.use_best_button.disabled = self.sweep is None or getattr(self.sweep, "best_config", None) is None

    def _need_sweep(self, action: str) -> Any:
        if self.sweep is None:
            raise self._say_error(trainer.StateError(f"cannot {action}: no sweep has started here"))
        return self.sweep

    def _find(self, number: Optional[int]) -> Optional[Any]:
        if self.sweep is None or number is None:
            return None
        return next((t for t in list(self.sweep.trials) if t.number == number), None)

    def _trial(self, number: Optional[int]) -> Any:
        trial = self._find(number)
        if trial is None:
            raise self._say_error(trainer.StateError(f"no trial {number!r} in this sweep; pick a running one"))
        return trial

    def _in_thread(self, fn: Callable[[], Any]) -> None:
        """Control calls may wait for a trial's process: off the loop's thread, errors said here."""
        def done(task: "asyncio.Future[Any]") -> None:
            if not task.cancelled() and task.exception() is not None:
                self.panel.binding.call(lambda: self._say_error(task.exception()))
            self.panel.binding.call(lambda: self._request(urgent=True))
        asyncio.ensure_future(asyncio.to_thread(fn)).add_done_callback(done)

    def _say(self, html: str) -> None:
        if self.message.value != html:
            self.message.value = html

    def _say_error(self, exc: BaseException) -> BaseException:
        self._say(f"<span style='color:{theme.ERROR}'>{escape(str(exc))}</span>")
        return exc
