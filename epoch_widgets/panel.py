"""``TrainingPanel``: config controls, Start/Pause/Stop, progress and live curves in one widget.

Threading: the panel belongs to the event loop it was created on (the kernel's loop). The run's
events arrive on that loop's thread and update traits and widgets there. Button clicks and control
edits may arrive on another thread (ipykernel 7 subshells); they hand their work to the loop with
``call_soon_threadsafe`` and never touch widgets themselves. Widget refreshes are throttled by time.
"""
from __future__ import annotations

import asyncio
import time
import warnings
from html import escape
from typing import Any, Callable, Optional

import ipywidgets as W
import pandas as pd
from traitlets import Bool, Dict, Instance, Int, List, Unicode

import trainer
from trainer import FINAL_STATES, CheckpointError, ConfigError, StateError, Trainer, TrainingState
from trainer.checkpoints import has_checkpoints, saved_config
from trainer.data import infer_task
from trainer.tables import read_table

from ._loop import LoopBinding, Throttle
from .controls import ConfigControls, Validation
from .curves import MAX_POINTS, Curves
from .progress import ProgressView, Snapshot, estimate_remaining

UPDATE_INTERVAL = 0.25      # seconds between widget refreshes while training: <= 4 per second
_MAX_LISTED_PROBLEMS = 6


class TrainingPanel(W.VBox):
    """Train a model on a DataFrame from the notebook and watch it live.

    ``TrainingPanel(data=df, target_column="label", epochs=30)``: any config field as a keyword
    pre-fills its control. Traits (observable): ``state``, ``current_epoch``, ``total_epochs``,
    ``current_batch``, ``total_batches``, ``latest_metrics``, ``best_metrics``, ``history``,
    ``reason``, ``error``, ``valid``, ``errors`` and ``run`` (the :class:`trainer.Trainer`).
    """

    state = Unicode(TrainingState.PENDING.value, help="The run's state; 'pending' before the first run.")
    current_epoch = Int(0, help="Epochs completed.")
    total_epochs = Int(0)
    current_batch = Int(0, help="Batches done in the epoch in progress (updated per slice of batches).")
    total_batches = Int(0)
    latest_metrics = Dict(help="The last history entry.")
    best_metrics = Dict(help="loss and accuracy (or mae) of the best epoch by val_loss, and its epoch.")
    history = List(help="One dict per finished epoch, SPEC.md's keys.")
    reason = Unicode("", help="Why the run ended or paused.")
    error = Unicode("", help="What went wrong, when the run or its start failed.")
    valid = Bool(False, help="Whether the controls hold a config that can start.")
    errors = Dict(help="Problems with the controls, by field.")
    run = Instance(Trainer, allow_none=True, help="The current (or last) run.")

    def __init__(self, data: Optional[pd.DataFrame] = None, *, update_interval: float = UPDATE_INTERVAL,
                 max_points: int = MAX_POINTS, **config: Any):
        if data is not None and not isinstance(data, pd.DataFrame):
            raise ConfigError.single("data", type(data).__name__,
                                     "expected a pandas DataFrame (or None, then set data_path)")
        if not update_interval >= 0:
            raise ValueError(f"update_interval must be >= 0 seconds, got {update_interval!r}")
        if not (isinstance(max_points, int) and max_points >= 10):
            raise ValueError(f"max_points must be an int >= 10, got {max_points!r}")
        self.data: Optional[pd.DataFrame] = data
        self._data_given = data is not None
        self._data_error = ""
        self._loaded_path: Optional[str] = None
        self._task: Optional[asyncio.Task] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._pause_requested = False
        self._notice = ""
        self._validation = Validation(None)
        self._binding = LoopBinding()

        self.controls = ConfigControls(list(data.columns) if data is not None else [], self._controls_changed)
        self.start_button = W.Button(description="Start", button_style="success", icon="play",
                                     tooltip="Train with these settings")
        self.pause_button = W.Button(description="Pause", button_style="warning", icon="pause",
                                     disabled=True, tooltip="Pause after the batch in progress")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                    tooltip="Stop after the batch in progress; finished epochs are kept")
        self.message = W.HTML()
        self.progress = ProgressView()
        self.curves = Curves(max_points)
        self._throttle = Throttle(self._render, update_interval, self._binding)
        self.start_button.on_click(lambda _b: self._from_ui(self._start_now))
        self.pause_button.on_click(lambda _b: self._from_ui(self._toggle_pause_now))
        self.stop_button.on_click(lambda _b: self._from_ui(self._stop_now))
        self.resume_button = W.Button(description="Resume from checkpoint", icon="history", disabled=True,
                                      tooltip="Continue the run whose checkpoints are in output_path",
                                      layout=W.Layout(width="auto"))
        self.resume_button.on_click(lambda _b: self._from_ui(lambda: self._resume_from_now(None, {})))
        super().__init__([self.controls.view,
                          W.HBox([self.start_button, self.pause_button, self.stop_button, self.resume_button]),
                          self.message, self.progress.view, self.curves.view])
        try:
            self._prefill(config)
        except Exception:
            self.close()    # a panel that is never shown must not leave its widgets' comms open
            raise
        self._revalidate()
        self.curves.render()

    # ------------------------------------------------------------------ public API
    def show(self) -> None:
        """Display the panel in the notebook (the same as leaving it as a cell's value)."""
        from IPython.display import display
        display(self)

    @property
    def history_df(self) -> pd.DataFrame:
        """The history as a DataFrame, one row per finished epoch."""
        return pd.DataFrame(list(self.history))

    @property
    def config(self) -> trainer.TrainingConfig:
        """The config the controls hold now; ConfigError when they hold an invalid one."""
        validation = self.controls.validate(self.data)
        if not validation.valid:
            raise ConfigError([{"field": f, "value": None, "message": m} for f, m in validation.errors.items()])
        assert validation.config is not None
        return validation.config

    def start(self) -> Optional["asyncio.Task[None]"]:
        """Start a run with the controls' config, like the Start button.

        On the loop's thread this returns the run's task at once (ConfigError or StateError when it
        cannot start; the panel shows why as well). From another thread the request goes to the
        loop and this returns None.
        """
        return self._programmatic(self._start_now)

    def pause(self) -> None:
        """Pause after the batch in progress (StateError when there is no running run)."""
        self._programmatic(self._pause_now)

    def resume(self) -> None:
        """Continue a paused run where it paused."""
        self._programmatic(self._resume_now)

    def stop(self) -> None:
        """Stop after the batch in progress; finished epochs and artifacts are kept."""
        self._programmatic(self._stop_now)

    def resume_from(self, output_path: Optional[str] = None, **changes: Any) -> Optional["asyncio.Task[None]"]:
        """Continue the run checkpointed in ``output_path`` (default: the output_path control), like
        the Resume-from-checkpoint button; the controls then show that run's config.

        Uses the panel's data, or the run's data_path when the panel has none. ``changes`` may set
        what cannot change the results (``epochs``, ...: see ``Trainer.from_checkpoint``). On the
        loop's thread this returns the run's task (CheckpointError, ResumeMismatch or StateError when
        it cannot resume; the panel shows why as well); from another thread it returns None.
        """
        return self._programmatic(lambda: self._resume_from_now(output_path, changes))

    async def wait(self) -> Trainer:
        """Wait for the run to end and the panel to show its end; returns the run."""
        if self._task is None or self.run is None:
            raise StateError("wait() needs a started run: call start() or press Start first")
        await asyncio.shield(self._task)
        self._throttle.flush_now()
        return self.run

    def close(self) -> None:
        """Close every widget of the panel and stop following the run (which goes on: stop it first
        to end it)."""
        # Also called by Widget.__del__, possibly on a panel whose __init__ failed half-way.
        throttle = getattr(self, "_throttle", None)
        if throttle is not None:
            throttle.cancel()
        if getattr(self, "_unsubscribe", None) is not None:
            self._unsubscribe()
            self._unsubscribe = None
        _close_tree(self)

    def __repr__(self) -> str:
        return f"TrainingPanel(state={self.state!r}, epoch={self.current_epoch}/{self.total_epochs})"

    # ------------------------------------------------------------------ threads
    def _programmatic(self, action: Callable[[], Any]) -> Any:
        """Run ``action`` here when this is the loop's thread (errors raise), else hand it over."""
        loop = self._binding.loop
        if self._binding.bind_running() or loop is None or loop.is_closed():
            return action()
        self._binding.call(lambda: self._guarded(action))
        return None

    def _from_ui(self, action: Callable[[], Any]) -> None:
        """A button click: do ``action`` on the loop's thread; errors go to the panel, not the log."""
        self._binding.bind_running()
        self._binding.call(lambda: self._guarded(action))

    def _guarded(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except (ConfigError, StateError, CheckpointError):
            pass    # already shown in the panel by the action
        except Exception as exc:
            self._set_notice(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ actions (loop thread)
    def _active(self) -> bool:
        return self.run is not None and self.run.state not in FINAL_STATES

    def _start_now(self) -> "asyncio.Task[None]":
        if not self._binding.bind_running():
            raise self._fail(StateError(
                "start() needs a running asyncio event loop: use the panel in a Jupyter notebook, or "
                "call start() from async code (e.g. inside asyncio.run)"))
        if self._active():
            raise self._fail(StateError("a run is in progress; stop it before starting another"))
        validation = self._revalidate()
        if not validation.valid:
            raise self._fail(ConfigError([{"field": f, "value": None, "message": m}
                                          for f, m in validation.errors.items()]), notice=False)
        assert validation.config is not None and self.data is not None
        try:
            run = Trainer(validation.config, self.data)
        except ConfigError as exc:
            self.controls.show_errors({e["field"]: e["message"] for e in exc.errors})
            raise self._fail(exc)
        except Exception as exc:
            raise self._fail(exc)
        return self._launch(run)

    def _resume_from_now(self, output_path: Optional[str], changes: dict[str, Any]) -> "asyncio.Task[None]":
        if not self._binding.bind_running():
            raise self._fail(StateError("resume_from() needs a running asyncio event loop: use the panel in a "
                                        "Jupyter notebook, or call it from async code"))
        if self._active():
            raise self._fail(StateError("a run is in progress; stop it before resuming another"))
        path = output_path or self.controls["output_path"].value.strip()
        if not path:
            raise self._fail(CheckpointError("set output_path to the folder of the run to resume"))
        try:
            if self.data is None:
                self._use_saved_data_path(path)
            if self.data is None:
                raise CheckpointError("the panel has no data: pass data=DataFrame, or set data_path to the run's data")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                run = Trainer.resume(path, self.data, **changes)
        except Exception as exc:
            raise self._fail(exc)
        task = self._launch(run)
        self._show_config(run.config)
        if caught:
            self._set_notice("; ".join(str(w.message) for w in caught))
        return task

    def _use_saved_data_path(self, output_path: str) -> None:
        """Without a DataFrame, load the data file the checkpointed run named (if any)."""
        try:
            data_path = saved_config(output_path).get("data_path")
        except CheckpointError:
            return          # Trainer.resume says why, below
        if data_path:
            self.controls.set_value("data_path", data_path)
            self._load_data_path()

    def _show_config(self, config: trainer.TrainingConfig) -> None:
        """Put a resumed run's config into the controls (they are disabled while it trains)."""
        for name, value in config.to_dict().items():
            if name == "data_path" and self._data_given:
                continue
            try:
                self.controls.set_value(name, value)
            except ConfigError:
                pass        # a column the controls do not offer: the run still has it

    def _launch(self, run: Trainer) -> "asyncio.Task[None]":
        """Follow ``run`` (a new one, or one resumed with its history so far) and start it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = run.add_callback(self._on_run_event)
        self.curves.begin_run(run.is_classification)
        self.curves.set_preview(run.config)
        best = run.best_metrics.get("epoch")
        for entry in run.history:
            self.curves.add_epoch(entry, entry["epoch"] == best)
        self._pause_requested = False
        self._notice = ""
        self.set_trait("run", run)
        self._reset_traits(run)
        self._task = run.start()
        self._task.add_done_callback(self._task_done)
        self._sync_controls()
        self._throttle.request(urgent=True)
        return self._task

    def _toggle_pause_now(self) -> None:
        # Decided here, on the loop thread, so two quick clicks from a subshell cannot both pause.
        (self._resume_now if self._pause_requested else self._pause_now)()

    def _pause_now(self) -> None:
        self._control(lambda run: run.pause())
        self._pause_requested = True
        self._sync_controls()

    def _resume_now(self) -> None:
        self._control(lambda run: run.resume())
        self._pause_requested = False
        self._sync_controls()

    def _stop_now(self) -> None:
        self._control(lambda run: run.stop())

    def _control(self, fn: Callable[[Trainer], None]) -> None:
        if self.run is None:
            raise self._fail(StateError("there is no run yet: press Start first"))
        try:
            fn(self.run)
        except StateError as exc:
            raise self._fail(exc)

    def _fail(self, exc: Exception, notice: bool = True) -> Exception:
        """Show why an action failed in the panel, and hand back the exception to raise."""
        if notice:
            text = str(exc) if isinstance(exc, (StateError, ConfigError, CheckpointError)) else f"{type(exc).__name__}: {exc}"
            self._set_notice(text)
        return exc

    def _set_notice(self, text: str) -> None:
        self._notice = text
        self._show_message()

    # ------------------------------------------------------------------ run events (loop thread)
    def _reset_traits(self, run: Trainer) -> None:
        with self.hold_trait_notifications():
            self.state = run.state.value
            self.current_epoch = run.current_epoch        # > 0 for a run resumed from a checkpoint
            self.total_epochs = run.total_epochs
            self.current_batch, self.total_batches = run.batch, run.num_batches
            self.history = list(run.history)
            self.latest_metrics, self.best_metrics = run.latest_metrics, run.best_metrics
            self.reason = self.error = ""

    def _on_run_event(self, event: str, data: dict[str, Any]) -> None:
        run = self.run
        if run is None:
            return
        if event == "batch_end":
            self.curves.add_batch(data["epoch"], data["batch"], data["num_batches"], data["loss"])
            self.total_batches = data["num_batches"]
            self.current_batch = data["batch"]
            self._throttle.request()
        elif event == "epoch_begin":
            self.curves.begin_epoch()
            self.total_batches = run.num_batches
            self.current_batch = 0
            self._throttle.request()
        elif event == "epoch_end":
            self.curves.add_epoch(data["metrics"], data["improved"])
            with self.hold_trait_notifications():
                self.history = list(run.history)
                self.latest_metrics = dict(data["metrics"])
                self.best_metrics = run.best_metrics
                self.current_epoch = run.current_epoch
            self._throttle.request()
        elif event == "state_change":
            with self.hold_trait_notifications():
                self.state = data["new"]
                self.reason = data.get("reason") or ""
            self._sync_controls()
            self._throttle.request(urgent=True)
        elif event == "train_end":
            self._pause_requested = False
            with self.hold_trait_notifications():
                self.best_metrics = run.best_metrics
                self.reason = data.get("reason") or ""
                self.error = run.error or ""
                self.state = data["state"]
            self.curves.end_run(_end_note(run))
            if run.observer_errors:
                self._notice = (f"{len(run.observer_errors)} observer error(s) during the run; "
                                f"see panel.run.observer_errors. First: {run.observer_errors[0]}")
            self._sync_controls()
            self._throttle.request(urgent=True)

    def _task_done(self, task: "asyncio.Task[None]") -> None:
        if task.cancelled():
            self._set_notice("the training task was cancelled")
        elif task.exception() is not None:
            exc = task.exception()
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_notice(f"the training task failed: {self.error}")
        self._sync_controls()

    # ------------------------------------------------------------------ rendering (loop thread)
    def _render(self) -> None:
        run = self.run
        snap = Snapshot(state=self.state, current_epoch=self.current_epoch, total_epochs=self.total_epochs,
                        batch=self.current_batch, num_batches=self.total_batches, reason=self.reason,
                        error=self.error)
        if run is not None and run.started_at is not None:
            snap.elapsed = (run.finished_at or time.time()) - run.started_at
            snap.remaining = estimate_remaining([h["time_per_epoch"] for h in run.history[-10:]],
                                                self.current_epoch, self.total_epochs,
                                                self.current_batch, self.total_batches)
        self.progress.update(snap)
        self.curves.render()

    def _sync_controls(self) -> None:
        """Buttons and controls follow the run's state (called on every state change)."""
        active = self._active()
        self.start_button.disabled = active or not self.valid
        self.pause_button.disabled = not active
        self.stop_button.disabled = not active
        output_path = self.controls["output_path"].value.strip()
        self.resume_button.disabled = active or not has_checkpoints(output_path)
        paused = active and self._pause_requested
        self.pause_button.description = "Resume" if paused else "Pause"
        self.pause_button.icon = "play" if paused else "pause"
        self.controls.set_enabled(not active)

    def _show_message(self) -> None:
        parts = []
        if self._notice:
            parts.append(f"<div style='color:#c62828'>{escape(self._notice)}</div>")
        problems = self._validation.errors
        if problems and not self._active():
            hidden = self.controls.hidden_fields()
            items = [f"<li><b>{escape(f)}</b>{' (hidden for this choice)' if f in hidden else ''}: "
                     f"{escape(m)}</li>" for f, m in list(problems.items())[:_MAX_LISTED_PROBLEMS]]
            more = len(problems) - _MAX_LISTED_PROBLEMS
            if more > 0:
                items.append(f"<li>and {more} more</li>")
            parts.append("<div style='color:#c62828'>Start is disabled until these are fixed:<ul "
                         "style='margin:2px 0'>" + "".join(items) + "</ul></div>")
        html = "".join(parts)
        if self.message.value != html:
            self.message.value = html

    # ------------------------------------------------------------------ controls (loop thread)
    def _prefill(self, config: dict[str, Any]) -> None:
        if self._data_given:
            self.controls.lock("data_path", f"(using the DataFrame given as data, {len(self.data)} rows)")
        if "data_path" in config:
            self.controls.set_value("data_path", config.pop("data_path"))
            self._load_data_path()
        for name, value in config.items():
            self.controls.set_value(name, value)

    def _controls_changed(self) -> None:
        # May run on a subshell thread (a frontend edit): validate and redraw on the loop thread.
        self._binding.call(self._revalidate)

    def _revalidate(self) -> Validation:
        """Check the controls, show problems beside them, and preview the LR schedule."""
        self._load_data_path()
        validation = self.controls.validate(self.data)
        if self._data_error:
            validation.errors["data_path"] = self._data_error
        self._validation = validation
        self.controls.show_errors(validation.errors)
        with self.hold_trait_notifications():
            self.errors = dict(validation.errors)
            self.valid = validation.valid
        config = validation.config
        if config is not None and self.run is None:
            self.total_epochs = config.epochs      # before the first run, the epochs to come
        if config is not None and not self._active():
            self.curves.set_preview(config)
            target = config.target_column
            if self.data is not None and target in self.data.columns:
                self.curves.set_task(infer_task(config, self.data[target]) == "classification")
            self.curves.render()
        self._sync_controls()
        self._show_message()
        return validation

    def _load_data_path(self) -> None:
        """Without a DataFrame, read the table at data_path (once per path) and offer its columns."""
        if self._data_given:
            return
        text = self.controls["data_path"].value.strip()
        if text == (self._loaded_path or ""):
            return
        self._loaded_path = text or None
        self.data, self._data_error = None, ""
        if text:
            try:
                self.data = read_table(text)
            except ConfigError as exc:
                self._data_error = "; ".join(e["message"] for e in exc.errors)
        self.controls.set_columns(list(self.data.columns) if self.data is not None else [])


def _end_note(run: Trainer) -> str:
    """A few words for the loss figure's title (the state line has the full reason)."""
    best = run.best_metrics.get("epoch")
    best_text = f", best {best}" if best else ""
    if run.state == TrainingState.EARLY_STOPPED:
        return f"early stopped at {run.current_epoch}{best_text}"
    if run.state == TrainingState.STOPPED:
        return f"stopped at {run.current_epoch}{best_text}"
    if run.state == TrainingState.FAILED:
        return f"failed in epoch {run.current_epoch + 1}"
    return f"best epoch {best}" if best else f"{run.current_epoch} epochs"


def _close_tree(root: W.Widget) -> None:
    """Close ``root`` and every widget reachable through its synced traits (children, marks, ...)."""
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, W.Widget):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend(getattr(item, name, None) for name in item.keys)
            W.Widget.close(item)   # not item.close(): the panel's own close() is what called us
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
