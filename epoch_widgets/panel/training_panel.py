"""``TrainingPanel``: config controls, Start/Pause/Stop, progress, live curves and the numbers to
read, in one widget, composed of parts with one job each: ``controls``, ``actions`` (what the buttons
do, on which thread), ``steer`` (Apply changes to a live run), ``lr_search``, ``overwrite``, ``adapter``
(a run's events into panel updates), ``progress``, ``curves``, ``table``, ``notices``, ``exports``,
``tabs`` (Epochs, Model summary, Evaluation, LR finder, Runs, Sweep), ``snapshot`` and ``redraw``.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import ipywidgets as W
import pandas as pd
from traitlets import Bool, Dict, Instance, Int, List, Unicode

import trainer
from trainer import ConfigError, StateError, Trainer, TrainingState
from trainer.checkpoints import has_checkpoints
from trainer.data import infer_task
from trainer.executors import check_executor

from ..charts import export, static_figure
from ._loop import LoopBinding
from .actions import Actions
from .lr_search import LRSearch
from .controls import ConfigControls, Validation
from ..charts.curves import MAX_POINTS, Curves
from ..charts.compare import RunsView
from .data_file import DataFile
from .metrics_table import MetricsTable
from .notices import Notices
from .overwrite_choice import OverwriteChoice
from ._tree import close_tree
from .progress import ProgressView
from .redraw import Redraw
from .run_adapter import RunAdapter
from .run_buttons import RunButtons
from .steer import Steering
from ..charts.snapshot import Snapshot as StaticSnapshot
from .sweep_tab import SweepTab
from .views import PanelViews

if TYPE_CHECKING:
    from trainer.summary import ModelSummary

__all__ = ["TrainingPanel"]
UPDATE_INTERVAL = 0.25      # seconds between widget refreshes while training: <= 4 per second


class TrainingPanel(W.VBox):
    """Train a model on a DataFrame from the notebook and watch it live.

    ``TrainingPanel(data=df, target_column="label", epochs=30)``: any config field as a keyword
    pre-fills its control; ``executor="ray"`` trains on a Ray actor (see :mod:`trainer.executors`)
    instead of in the kernel. Traits (observable): ``state``, ``preparing``, ``current_epoch``,
    ``total_epochs``, ``current_batch``, ``total_batches``, ``latest_metrics``, ``best_metrics``,
    ``history``, ``reason``, ``error``, ``valid``, ``errors`` and ``run`` (the :class:`trainer.Trainer`).
    ``panel.views`` is the tab container below the curves (Epochs, Model summary, Evaluation, LR
    finder, Runs, Sweep: ``panel.sweeps``); ``add_view(title, widget)`` adds a tab.
    """

    state = Unicode(TrainingState.PENDING.value, help="The run's state; 'pending' before the first run.")
    preparing = Unicode("", help="What a starting run is doing before it trains (data, model); '' otherwise.")
    current_epoch = Int(0, help="Epochs completed.")
    total_epochs = Int(0)
    current_batch = Int(0, help="Batches done in the epoch in progress (updated per slice of batches).")
    total_batches = Int(0)
    latest_metrics = Dict(help="The last history entry.")
    best_metrics = Dict(help="loss and accuracy (or mae) of the best epoch by val_loss, and its epoch.")
    history = List(help="One dict per finished epoch (the run's history entries).")
    reason = Unicode("", help="Why the run ended or paused.")
    error = Unicode("", help="What went wrong, when the run or its start failed.")
    valid = Bool(False, help="Whether the controls hold a config that can start.")
    errors = Dict(help="Problems with the controls, by field (the detailed messages).")
    run = Instance(Trainer, allow_none=True, help="The current (or last) run.")
    config_changes = List(help="Every change applied to the run while it trained (config_change data), in order.")

    def __init__(self, data: Optional[pd.DataFrame] = None, *, update_interval: float = UPDATE_INTERVAL,
                 max_points: int = MAX_POINTS, executor: str = "local", **config: Any):
        if data is not None and not isinstance(data, pd.DataFrame):
            raise ConfigError.single("data", type(data).__name__,
                                     "expected a pandas DataFrame (or None, then set data_path)")
        if not update_interval >= 0:
            raise ValueError(f"update_interval must be >= 0 seconds, got {update_interval!r}")
        if not (isinstance(max_points, int) and max_points >= 10):
            raise ValueError(f"max_points must be an int >= 10, got {max_points!r}")
        if config.get("target_column") is not None and config["target_column"] in (config.get("feature_columns") or ()):
            trainer.TrainingConfig(feature_columns=config["feature_columns"], target_column=config["target_column"])
        self.executor = check_executor(executor)
        self.data: Optional[pd.DataFrame] = data
        self.data_given = data is not None
        self._data_file = DataFile()
        self._validation = Validation(None)
        self.binding = LoopBinding()
        self.actions = Actions(self)
        self.lr_search = LRSearch(self, update_interval)
        ui = self.actions.from_ui
        self.overwrite = OverwriteChoice(lambda: ui(lambda: self.actions.start_now(overwrite=True)),
                                         lambda path, epochs: ui(lambda: self.actions.continue_other_now(path, epochs)))
        self.adapter = RunAdapter(self)
        self.snapshot = StaticSnapshot()

        self.controls = ConfigControls(list(data.columns) if data is not None else [], self._controls_changed)
        self.buttons = RunButtons()
        self.steer = Steering(self)
        self.start_button, self.find_lr_button, self.pause_button, self.stop_button, self.resume_button = \
            self.buttons.all
        self.notices = Notices()
        self.message = self.notices.view
        self.progress = ProgressView()
        self.curves = Curves(max_points)
        self.table = MetricsTable()
        self.exports = export.ExportBar(lambda: list(self.history), self.figure_data, self._export_path,
                                        self.actions.from_ui)
        self.tabs = PanelViews(self.table.view, self.lr_search.view, self.binding, self.show_config_errors)
        self.views = self.tabs.tab
        self.controls.add_to_group("model", self.tabs.model.headline)
        self.controls.add_to_group("data", self._data_file.view)
        self.redraw = Redraw(self, update_interval)
        self.sweeps = SweepTab(self, update_interval)      # the Sweep tab: trainer.sweep over these settings
        self.add_view("Sweep", self.sweeps.view)

        self.start_button.on_click(lambda _b: ui(self.actions.start_now))
        self.find_lr_button.on_click(lambda _b: ui(self.lr_search.start_now))
        self.pause_button.on_click(lambda _b: ui(self.actions.toggle_pause_now))
        self.stop_button.on_click(lambda _b: ui(self.actions.stop_now))
        self.resume_button.on_click(lambda _b: ui(lambda: self.actions.resume_from_now(None, {})))
        row = W.Layout(width="100%", flex_flow="row wrap", align_items="center")
        buttons = W.HBox([*self.buttons.all, self.steer.button, W.Box([self.progress.status], layout=W.Layout(margin="0 0 0 12px"))],
                         layout=row)
        tools = W.HBox([*self.curves.tools, W.Box(layout=W.Layout(flex="1 1 auto")), *self.exports.widgets],
                       layout=row)
        style = W.HTML(self.snapshot.live_style(), layout=W.Layout(display="none"))
        super().__init__([style, self.controls.view, buttons, self.message, self.overwrite.view, self.progress.view,
                          tools, self.curves.view, self.views], layout=W.Layout(width="100%"))
        try:
            self._prefill(config)
        except Exception:
            self.close()    # a panel that is never shown must not leave its widgets' comms open
            raise
        self.revalidate()
        self.redraw.draw()

    # ------------------------------------------------------------------ public API
    def show(self) -> None:
        """Display the panel in the notebook (the same as leaving it as a cell's value)."""
        from IPython.display import display
        display(self)

    def _ipython_display_(self) -> None:
        # Two outputs: the live widget, and a static snapshot that shows where the widget cannot
        # (a saved notebook opened without its kernel; see snapshot.py).
        from IPython.display import display
        bundle = self._repr_mimebundle_() if callable(self._repr_mimebundle_) else None
        if bundle:
            # What viewers without widgets print instead; the state at display time would be stale.
            bundle["text/plain"] = "TrainingPanel widget (live with the notebook's kernel; a snapshot follows)"
        display(bundle or {"text/plain": repr(self)}, raw=True)
        if bundle and "application/vnd.jupyter.widget-view+json" in bundle:
            self.snapshot.display()

    def add_view(self, title: str, widget: W.Widget, select: bool = False) -> None:
        """Add a tab below the curves (a model summary, an evaluation, a comparison of runs, ...)."""
        self.tabs.pages.add(title, widget, select)

    @property
    def history_df(self) -> pd.DataFrame:
        """The history as a DataFrame, one row per finished epoch."""
        return pd.DataFrame(list(self.history))

    @property
    def config(self) -> trainer.TrainingConfig:
        """The config the controls hold now; ConfigError when they hold an invalid one."""
        validation = self.controls.validate(self.checked_data)
        if not validation.valid:
            raise ConfigError([{"field": f, "value": None, "message": m} for f, m in validation.errors.items()])
        assert validation.config is not None
        return validation.config

    def start(self, overwrite: bool = False) -> Optional["asyncio.Task[None]"]:
        """Start a run with the controls' config, like the Start button.

        On the loop's thread this returns at once with the task that prepares the data, builds
        the model and trains (await it, or ``panel.wait()``, for the end; ``panel.wait_started()``
        for the run). ConfigError or StateError when it cannot start; a problem found while
        preparing the data makes the task raise. The panel shows why either way. From another
        thread the request goes to the loop and this returns None. When output_path holds another
        run's checkpoints the task raises ``trainer.OutputPathInUse`` and the panel offers to
        replace or continue that run; ``overwrite=True`` replaces it ("Replace it").
        """
        return self.actions.programmatic(lambda: self.actions.start_now(overwrite))

    def find_lr(self, **options: Any) -> Optional["asyncio.Task[Optional[trainer.LRFindResult]]"]:
        """Search for a learning rate on the controls' config, like the Find LR button (the curve
        in the LR finder tab; ``stop()`` ends it). Returns the task as ``start()`` does; its result
        is ``panel.lr_result``. ``options``: start_lr, end_lr, num_iter, rule (``trainer.LRFinder``)."""
        return self.actions.programmatic(lambda: self.lr_search.start_now(**options))

    def use_suggested_rate(self) -> None:
        """Put the last search's suggestion into the learning_rate control ("Use suggested rate")."""
        self.actions.programmatic(self.lr_search.apply)

    def pause(self) -> None:
        """Pause after the batch in progress (StateError when there is no running run)."""
        self.actions.programmatic(self.actions.pause_now)

    def resume(self) -> None:
        """Continue a paused run where it paused."""
        self.actions.programmatic(self.actions.resume_now)

    def apply_changes(self, **values: Any) -> Optional["asyncio.Task[Optional[dict[str, Any]]]"]:
        """Set ``values`` in their controls, then apply every unlocked control that differs from the live
        run's settings, like Apply changes; the task returns the applied ``config_change`` data."""
        return self.actions.programmatic(lambda: self.steer.apply_values(values))

    def stop(self) -> None:
        """Stop the run after the batch in progress (finished epochs and artifacts are kept), or
        the learning-rate search."""
        self.actions.programmatic(self.actions.stop_now)

    def resume_from(self, output_path: Optional[str] = None, **changes: Any) -> Optional["asyncio.Task[None]"]:
        """Continue the run checkpointed in ``output_path`` (default: the output_path control), like
        the Resume-from-checkpoint button, with the panel's data (else the run's data_path) and
        ``changes`` as ``Trainer.from_checkpoint`` allows; returns the task as ``start()`` does (it
        raises CheckpointError, ResumeMismatch or StateError, which the panel shows).
        """
        return self.actions.programmatic(lambda: self.actions.resume_from_now(output_path, changes))

    async def wait_started(self) -> Trainer:
        """Wait until the started run is built and training; returns it (or raises why it could not start)."""
        task = self._started_task()
        assert self.actions.built is not None
        run = await asyncio.shield(self.actions.built)
        if run is None:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()
            raise StateError("the run did not start (its task was cancelled)")
        return run

    async def wait(self) -> Trainer:
        """Wait for the run to end and the panel to show its end (its snapshot and evaluation
        included); returns the run."""
        await asyncio.shield(self._started_task())
        await self.after_run()
        self.redraw.now()
        assert self.run is not None
        return self.run

    async def wait_summary(self) -> "Optional[ModelSummary]":
        """Wait until the Model summary tab shows the controls' current config; returns its summary."""
        return await self.tabs.model.settled()

    @property
    def model_summary(self) -> "Optional[ModelSummary]":
        """The Model summary tab's: the controls' config (None until summarised, or invalid)."""
        return self.tabs.model.summary

    @property
    def evaluation(self) -> "Optional[trainer.Evaluation]":
        """The Evaluation tab's: the last ended run's model on its validation split."""
        return self.tabs.evaluation.evaluation

    @property
    def lr_result(self) -> "Optional[trainer.LRFindResult]":
        """The LR finder tab's: the last learning-rate search's result."""
        return self.lr_search.result

    @property
    def runs(self) -> RunsView:
        """The Runs tab: every run started or resumed here, beside the runs saved in its folder."""
        return self.tabs.runs

    def _started_task(self) -> "asyncio.Task[None]":
        if self.actions.task is None:
            raise StateError("wait() needs a started run: call start() or press Start first")
        return self.actions.task

    def export_csv(self, path: Union[str, Path, None] = None) -> Path:
        """Write the history (one row per epoch) as CSV; the default path is next to the notebook."""
        return self.exports.csv(path)

    def export_png(self, path: Union[str, Path, None] = None) -> Path:
        """Write the curves as a PNG (drawn with matplotlib); the default path is next to the notebook."""
        return self.exports.png(path)

    def figure_data(self) -> static_figure.FigureData:
        """A copy of what the curves show, for drawing elsewhere."""
        c = self.curves
        return static_figure.FigureData(c.series, c.previous, c.previous_label.short, c.best_epoch,
                                        c.lr_preview.x.copy(), c.lr_preview.y.copy(), c.ended_note,
                                        c.change_positions())

    def _export_path(self, suffix: str) -> Path:
        name = self.run.config.name if self.run is not None else self.controls["name"].value
        return export.default_path(name, suffix)

    def close(self) -> None:
        """Close every widget of the panel and stop following the run (which goes on: stop it first
        to end it)."""
        # Also called by Widget.__del__, possibly on a panel whose __init__ failed half-way.
        for name, method in (("redraw", "cancel"), ("lr_search", "close"), ("tabs", "close"),
                             ("sweeps", "close"), ("adapter", "unfollow")):
            part = getattr(self, name, None)
            if part is not None:
                getattr(part, method)()
        close_tree(self)

    def __repr__(self) -> str:
        return f"TrainingPanel(state={self.state!r}, epoch={self.current_epoch}/{self.total_epochs})"

    # ------------------------------------------------------------------ used by actions and the adapter
    def refresh(self, urgent: bool = False) -> None:
        """Ask for a widget refresh (throttled; urgent ones at the next loop turn)."""
        self.redraw.request(urgent)

    def begin_preparing(self, epochs: Optional[int], text: str) -> None:
        if epochs is not None and self.run is None:
            self.total_epochs = epochs
        self.set_preparing(text)
        self.sync_controls()

    def set_preparing(self, text: str) -> None:
        self.preparing = text
        self.redraw.now()      # now, not in 0.25 s: the next seconds go to the worker thread

    def end_preparing(self) -> None:
        self.preparing = ""
        self.sync_controls()
        self.refresh(urgent=True)

    def show_config_errors(self, errors: dict[str, str]) -> None:
        """Problems found while preparing the data: beside their controls and in the message, and
        Start disabled, until a control changes."""
        self._validation = Validation(self._validation.config, {**self._validation.errors, **errors})
        self.controls.show_errors(self._validation.errors)
        with self.hold_trait_notifications():
            self.errors = dict(self._validation.errors)
            self.valid = False
        self.sync_controls()

    async def after_run(self) -> None:
        """Wait for what a run's end set going (the snapshot, the evaluation), so a saved notebook has it."""
        if self.snapshot.pending is not None:
            await asyncio.shield(self.snapshot.pending)
        await self.tabs.after_run()

    def sync_controls(self) -> None:
        """Buttons and controls follow the run's state (called on every state change)."""
        running, searching = self.actions.run_active(), self.lr_search.active
        active = running or searching
        self.buttons.sync(running=running, searching=searching, preparing=self.actions.preparing,
                          paused=running and self.run is not None and self.run.pause_requested, valid=self.valid,
                          can_resume=has_checkpoints(self.controls["output_path"].value.strip()))
        live = running and not self.actions.preparing and self.run is not None
        paused = live and self.run is not None and self.run.pause_requested
        self.controls.set_enabled(not active, frozenset(self.steer.unlocked(paused)) if live else frozenset())
        self.steer.sync(live, paused)
        self.exports.sync(bool(self.history))
        self.notices.set_problems({} if active else self._validation.errors, self.controls.hidden_fields())

    # ------------------------------------------------------------------ controls (loop thread)
    def _prefill(self, config: dict[str, Any]) -> None:
        if self.data_given:
            self.controls.lock("data_path", f"(using the DataFrame given as data, {len(self.data)} rows)")
        if "data_path" in config:
            self.controls.set_value("data_path", config.pop("data_path"))
            self.load_data_path()
        if "target_column" in config:        # first: it decides which columns are features
            self.controls.set_value("target_column", config.pop("target_column"))
        for name, value in config.items():
            self.controls.set_value(name, value)

    def _controls_changed(self) -> None:
        # May run on a subshell thread (a frontend edit): validate and redraw on the loop thread.
        self.binding.call(lambda: (self.overwrite.withdraw(), self.revalidate()))

    def revalidate(self) -> Validation:
        """Check the controls, show problems beside them, and preview the LR schedule."""
        self.load_data_path()
        validation = self.controls.validate(self.checked_data)
        if self._data_file.error:
            validation.errors["data_path"] = self._data_file.error
        validation.errors.update(self._data_file.column_errors(validation.config))
        self._validation = validation
        self.controls.show_errors(validation.errors)
        with self.hold_trait_notifications():
            self.errors = dict(validation.errors)
            self.valid = validation.valid
        self.tabs.model.request(validation.config if validation.valid else None, self.data)
        config = validation.config
        if config is not None and self.run is None:
            self.total_epochs = config.epochs      # before the first run, the epochs to come
        if config is not None and not self.actions.active():
            self.curves.set_preview(config)
            target = config.target_column
            if self.data is not None and target in self.data.columns:
                self.curves.set_task(infer_task(config, self.data[target]) == "classification")
        self.refresh(urgent=True)
        self.sync_controls()
        return validation

    def load_data_path(self) -> None:
        """Without a DataFrame, describe the table at data_path and offer its columns (read unless streamed)."""
        if self.data_given or not self._data_file.load_from(self.controls):
            return
        self.data = self._data_file.data
        self.controls.set_columns(list(self.checked_data.columns) if self.checked_data is not None else [])

    @property
    def checked_data(self) -> Optional[pd.DataFrame]:
        """What the columns are checked against: the data, or an empty frame of a streamed table's schema."""
        return self.data if self.data_given else self._data_file.columns_frame()

    @property
    def run_data(self) -> Union[pd.DataFrame, str, None]:
        """What a run is built from: the DataFrame, or the path of a table a run streams."""
        return self.data if self.data_given else self._data_file.run_data()
