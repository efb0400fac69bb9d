"""What the panel's buttons and their programmatic twins do, and on which thread.

Threading: the panel belongs to the event loop it was created on (the kernel's loop). Button
clicks may arrive on another thread (ipykernel 7 subshells); they hand their work to the loop
with ``call_soon_threadsafe`` and never touch widgets themselves.

Starting: building a ``Trainer`` (importing the framework on a fresh kernel, preparing the data,
building the model) takes seconds, so it runs in a worker thread while the panel already says
"preparing" and Start is disabled; the run starts on the loop once it is built. A run and a
learning-rate search (``lr_search``) never go on at once: each refuses while the other is active.
"""
from __future__ import annotations

import asyncio
import importlib
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional

from trainer import FINAL_STATES, CheckpointError, ConfigError, OutputPathInUse, StateError, Trainer, TrainingConfig
from trainer.checkpoints import saved_config
from trainer.data.inputs import first_pass_progress
from trainer.executors import run_factory

from . import fields

if TYPE_CHECKING:
    from .training_panel import TrainingPanel

PASS_INTERVAL = 0.1        # seconds between pass-bar updates (a block's rows each time at most)
_FRAMEWORKS = {"torch": ("torch", "PyTorch"), "tensorflow": ("tensorflow", "TensorFlow")}


async def import_framework(config: TrainingConfig, say: Callable[[str], None]) -> bool:
    """Import the config's framework in a worker thread, saying so, when this process has not yet
    (seconds on a fresh kernel); True when it did. Multi-process runs import it in their workers."""
    framework = _FRAMEWORKS.get(config.backend) if config.devices == 1 else None
    if framework is None or framework[0] in sys.modules:
        return False
    say(f"loading {framework[1]}…")
    await asyncio.to_thread(importlib.import_module, framework[0])
    return True


class Actions:
    """Start, pause, resume, stop and resume-from-checkpoint for one panel."""

    def __init__(self, panel: "TrainingPanel") -> None:
        self.panel = panel
        self.task: Optional["asyncio.Task[None]"] = None      # preparing, then training, one run
        self.built: Optional["asyncio.Future[Optional[Trainer]]"] = None   # the run, once built (None: failed)
        self.preparing = False

    # ------------------------------------------------------------------ threads
    def programmatic(self, action: Callable[[], Any]) -> Any:
        """Run ``action`` here when this is the loop's thread (errors raise), else hand it over."""
        binding = self.panel.binding
        loop = binding.loop
        if binding.bind_running() or loop is None or loop.is_closed():
            return action()
        binding.call(lambda: self.guarded(action))
        return None

    def from_ui(self, action: Callable[[], Any]) -> None:
        """A button click: do ``action`` on the loop's thread; errors go to the panel, not the log."""
        self.panel.binding.bind_running()
        self.panel.binding.call(lambda: self.guarded(action))

    def guarded(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except (ConfigError, StateError, CheckpointError):
            pass    # already shown in the panel by the action
        except Exception as exc:
            self.panel.notices.set("action", f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ state
    def active(self) -> bool:
        """Whether a run is being prepared or has not ended, or a learning-rate search is on."""
        return self.run_active() or self.panel.lr_search.active

    def run_active(self) -> bool:
        """Whether a run is being prepared or has not ended."""
        run = self.panel.run
        return self.preparing or (run is not None and run.state not in FINAL_STATES)

    def fail(self, exc: Exception, notice: bool = True, while_active: bool = False) -> Exception:
        """Show why an action failed in the panel, and hand back the exception to raise."""
        if notice:
            known = isinstance(exc, (StateError, ConfigError, CheckpointError))
            text = str(exc) if known else f"{type(exc).__name__}: {exc}"
            self.panel.notices.set("action", text, holds=self.active if while_active else None)
        return exc

    def refuse_while_active(self, what: str) -> None:
        if self.panel.lr_search.active:
            raise self.fail(StateError(f"a learning-rate search is in progress; stop it before {what}"),
                            while_active=True)
        if self.run_active():
            raise self.fail(StateError(f"a run is in progress; stop it before {what}"), while_active=True)

    def need_loop(self, what: str) -> None:
        if not self.panel.binding.bind_running():
            raise self.fail(StateError(f"{what} needs a running asyncio event loop: use the panel in a "
                                       "Jupyter notebook, or call it from async code"))

    def valid_config(self) -> TrainingConfig:
        """The controls' config, checked again now; its problems (shown beside the controls) raised if any."""
        validation = self.panel.revalidate()
        if not validation.valid:
            raise self.fail(ConfigError([{"field": f, "value": None, "message": m}
                                         for f, m in validation.errors.items()]), notice=False)
        assert validation.config is not None
        return validation.config

    # ------------------------------------------------------------------ start
    def start_now(self, overwrite: bool = False) -> "asyncio.Task[None]":
        panel = self.panel
        self.need_loop("start()")
        self.refuse_while_active("starting another")
        config, data = fields.with_run_name(self.valid_config()), panel.run_data
        assert data is not None
        factory = run_factory(panel.executor)
        return self._launch(lambda: factory(config, data, overwrite=overwrite), config.epochs, config)

    def continue_other_now(self, output_path: str, planned_epochs: Optional[int]) -> "asyncio.Task[None]":
        """"Continue that run" (the overwrite choice): resume the run in ``output_path``, to the
        controls' epochs when they ask for more than that run planned."""
        epochs = self.panel.controls["epochs"].value
        more = isinstance(epochs, int) and planned_epochs is not None and epochs > planned_epochs
        changes = {"epochs": epochs} if more else {}
        return self.resume_from_now(output_path, changes)

    def resume_from_now(self, output_path: Optional[str], changes: dict[str, Any]) -> "asyncio.Task[None]":
        panel = self.panel
        self.need_loop("resume_from()")
        self.refuse_while_active("resuming another")
        path = output_path or panel.controls["output_path"].value.strip()
        if not path:
            raise self.fail(CheckpointError("set output_path to the folder of the run to resume"))
        try:
            if panel.run_data is None:
                self._use_saved_data_path(path)
            if panel.run_data is None:
                raise CheckpointError("the panel has no data: pass data=DataFrame, or set data_path to the run's data")
        except Exception as exc:
            raise self.fail(exc)
        data = panel.run_data
        factory = run_factory(panel.executor)

        def build() -> Trainer:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                run = factory.from_checkpoint(path, data, **changes)
            if caught:
                text = "; ".join(str(w.message) for w in caught)
                panel.binding.call(lambda: panel.notices.set("resume", text, kind="warning"))
            return run

        return self._launch(build, None, None, resumed=True)

    def _use_saved_data_path(self, output_path: str) -> None:
        """Without a DataFrame, load the data file the checkpointed run named (if any)."""
        try:
            data_path = saved_config(output_path).get("data_path")
        except CheckpointError:
            return          # Trainer.from_checkpoint says why
        if data_path:
            self.panel.controls.set_value("data_path", data_path)
            self.panel.load_data_path()

    def _reporting_passes(self, build: Callable[[], Trainer]) -> Trainer:
        """``build()`` (in the worker thread), its passes over a streamed table shown on the pass bar."""
        panel, last = self.panel, [0.0]

        def report(phase: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < PASS_INTERVAL:
                return
            last[0] = now
            panel.binding.call(lambda: panel.progress.show_pass(phase, done, total))

        with first_pass_progress(report):
            return build()

    def _launch(self, build: Callable[[], Trainer], epochs: Optional[int], config: Optional[TrainingConfig],
                resumed: bool = False) -> "asyncio.Task[None]":
        panel = self.panel
        panel.notices.clear()
        panel.overwrite.withdraw()
        self.preparing = True
        panel.begin_preparing(epochs, "reading the checkpoint and preparing the data…" if resumed
                              else "preparing the data and building the model…")
        loop = panel.binding.loop
        assert loop is not None
        self.built = loop.create_future()
        self.task = loop.create_task(self._prepare_and_run(build, config, resumed))
        self.task.add_done_callback(self._task_done)
        return self.task

    async def _prepare_and_run(self, build: Callable[[], Trainer], config: Optional[TrainingConfig],
                               resumed: bool) -> None:
        panel = self.panel
        try:
            if config is not None and await import_framework(config, panel.set_preparing):
                panel.set_preparing("preparing the data and building the model…")
            run = await asyncio.to_thread(self._reporting_passes, build)
        except Exception as exc:
            self._end_preparing()
            if isinstance(exc, OutputPathInUse):
                panel.overwrite.offer(exc)      # the choice says it all, with the ways out
            elif isinstance(exc, ConfigError):
                panel.show_config_errors({e["field"]: e["message"] for e in exc.errors})
            self._built(None)
            raise self.fail(exc, notice=not isinstance(exc, ConfigError))
        try:
            run_task = panel.adapter.start(run, resumed)
        except Exception:
            self._built(None)
            raise
        finally:
            # Only once panel.run is the new run: in between, nothing would count as active and
            # "a run is in progress" notices would vanish while it is.
            self._end_preparing()
        self._built(run)
        await run_task

    def _end_preparing(self) -> None:
        self.preparing = False
        self.panel.end_preparing()

    def _built(self, run: Optional[Trainer]) -> None:
        if self.built is not None and not self.built.done():
            self.built.set_result(run)

    def _task_done(self, task: "asyncio.Task[None]") -> None:
        self._built(None)
        if task.cancelled():
            self.panel.notices.set("run", "the training task was cancelled")
        elif task.exception() is not None:      # retrieved here: no "never retrieved" warning
            exc = task.exception()
            if self.panel.run is not None and self.panel.run.state not in FINAL_STATES:
                self.panel.error = f"{type(exc).__name__}: {exc}"
                self.panel.notices.set("run", f"the training task failed: {self.panel.error}")
        self.panel.sync_controls()

    # ------------------------------------------------------------------ pause, resume, stop
    def toggle_pause_now(self) -> None:
        # Decided here, on the loop thread, so two quick clicks from a subshell cannot both pause;
        # and from the run's own flag, so a pause asked for in code (panel.run.pause()) counts too.
        run = self.panel.run
        (self.resume_now if run is not None and run.pause_requested else self.pause_now)()

    def pause_now(self) -> None:
        self._control(lambda run: run.pause())
        self.panel.sync_controls()

    def resume_now(self) -> None:
        self._control(lambda run: run.resume())
        self.panel.sync_controls()

    def stop_now(self) -> None:
        if self.panel.lr_search.active:
            self.panel.lr_search.stop()
            return
        self._control(lambda run: run.stop())

    def _control(self, fn: Callable[[Trainer], None]) -> None:
        run = self.panel.run
        if run is None:
            what = "the run is still being prepared" if self.preparing else "there is no run yet: press Start first"
            raise self.fail(StateError(what))
        self.panel.notices.clear("action")
        try:
            fn(run)
        except StateError as exc:
            raise self.fail(exc)
