"""Driving a sweep: ``parallel`` threads, each taking the next trial, training its run, telling Optuna.

Every Optuna call happens in this process, under one lock (the SQLite study has one writer). A
trial's run reports the sweep's metric after each epoch (``trial.report``); when the pruner says
so the run is stopped and the trial ends ``pruned``. Trials interrupted earlier (the sweep process
was killed, or the sweep was stopped) come first and continue from their checkpoints; then new
trials are asked for until the sweep has as many as it wants.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd

from ..checkpoints import has_checkpoints
from ..events import Callback
from ..run_records import read_run
from ..state import FINAL_STATES, StateError, TrainingState
from .space import decode_params
from .trials import Trial, best_value, final_state, trial_config

if TYPE_CHECKING:
    from .handle import Sweep
    from .launchers import Launcher

log = logging.getLogger("trainer")

ENDED_BY_ITSELF = ("completed", "early_stopped", "failed")
INTERRUPTED = "stopped with the sweep before it ended; sweep(..., resume=True) continues it from its checkpoint"


class _TrialWatch(Callback):
    """Reports each epoch's metric to Optuna and stops the run when the pruner says so."""

    def __init__(self, runner: "SweepRunner", trial: Trial, otrial: Any):
        self.runner, self.trial, self.otrial = runner, trial, otrial
        self.pruned: Optional[str] = None

    def on_epoch_end(self, run: Any, data: dict[str, Any]) -> None:
        entry = dict(data["metrics"])
        epoch = int(entry["epoch"])
        self.runner.sweep._emit("trial_epoch", {"number": self.trial.number, "epoch": epoch, "metrics": entry})
        value = entry.get(self.runner.sweep.metric)
        if value is None or self.pruned:
            return
        with self.runner.db:
            self.otrial.report(float(value), epoch)
            prune = self.otrial.should_prune()
        if prune and run.state not in FINAL_STATES:
            self.pruned = (f"pruned after epoch {epoch}: {self.runner.sweep.metric} {value:.4g} was worse than the "
                           f"pruner allows at this epoch")
            try:
                run.stop()
            except StateError:
                pass


class SweepRunner:
    """The threads training a sweep's trials (see the module docstring)."""

    def __init__(self, sweep: "Sweep", study: Any, launcher: "Launcher", data: pd.DataFrame, parallel: int,
                 wanted: int, interrupted: list[tuple[Trial, Any]], distributions: dict[str, Any]):
        self.sweep, self.study, self.launcher, self.data = sweep, study, launcher, data
        self.parallel, self.wanted = parallel, wanted
        self.db = threading.Lock()
        self._queue = list(interrupted)
        self._distributions = distributions
        self._cond = threading.Condition()
        self.paused = False
        self.stopping = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="sweep", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control
    def pause(self) -> None:
        with self._cond:
            self.paused = True

    def resume(self) -> None:
        with self._cond:
            self.paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self.paused = False
            self._cond.notify_all()

    # ------------------------------------------------------------------ driving
    def _main(self) -> None:
        state, reason = "completed", None
        try:
            workers = [threading.Thread(target=self._work, name=f"sweep-trial-{i}", daemon=True)
                       for i in range(self.parallel)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if self.stopping:
                state, reason = "stopped", "stopped by the user; sweep(..., resume=True) continues it"
        except Exception as exc:      # e.g. the study's storage failed
            log.exception("the sweep failed")
            state, reason = "failed", f"{type(exc).__name__}: {exc}"
        close = getattr(self.launcher, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("the sweep's launcher did not close")
        self.sweep._finish(state, reason)

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            trial, otrial, resume = job
            try:
                self._run_trial(trial, otrial, resume)
            except Exception as exc:
                log.exception("trial %s failed", trial.number)
                self._end_trial(trial, otrial, "failed", f"{type(exc).__name__}: {exc}")

    def _next(self) -> Optional[tuple[Trial, Any, bool]]:
        with self._cond:
            while self.paused and not self.stopping:
                self._cond.wait()
            if self.stopping:
                return None
            if self._queue:
                trial, otrial = self._queue.pop(0)
                trial._starting = True
                return trial, otrial, True
            if len(self.sweep.trials) >= self.wanted:
                return None
            with self.db:
                otrial = self.study.ask(self._distributions)
            trial = self.sweep._new_trial(otrial.number, decode_params(otrial.params))
            with self.db:
                otrial.set_user_attr("state", "running")
            trial._starting = True
            return trial, otrial, False

    def _run_trial(self, trial: Trial, otrial: Any, resume: bool) -> None:
        sweep = self.sweep
        config = trial_config(sweep.config, trial.params, trial.path, trial.number, sweep.seed)
        saved = read_run(trial.path) if resume and (trial.path / "metadata.json").is_file() else None
        if saved is not None and saved.state in ENDED_BY_ITSELF:
            # The run had ended and saved everything; only the sweep did not hear of it. (A run
            # that was stopped, by the sweep's stop() or its process ending, continues below.)
            state = final_state(TrainingState(saved.state), False, False)
            trial._saved_epochs = len(saved.history)
            trial._saved_best = best_value(saved.history, sweep.metric, sweep.direction)
            self._end_trial(trial, otrial, state, saved.reason)
            return
        watch = _TrialWatch(self, trial, otrial)
        sweep._emit("trial_start", {"number": trial.number, "params": trial.params, "path": str(trial.path),
                                    "resumed": resume})
        run = self.launcher.launch(config, self.data, [watch], resume and has_checkpoints(trial.path))
        try:
            self._train(trial, otrial, run, watch)
        finally:
            release = getattr(self.launcher, "release", None)
            if release is not None:
                release(run)

    def _train(self, trial: Trial, otrial: Any, run: Any, watch: _TrialWatch) -> None:
        with self._cond:
            trial.run = run
            stopping, paused = self.stopping, self.paused
        # The sweep was paused or stopped while this run was being built: the run still starts, so
        # whatever hosts it (a worker process, an actor) ends with it.
        try:
            if stopping:
                run.stop()
            elif paused and not run.pause_requested:
                run.pause()
        except StateError:
            pass
        run.fit()
        state = final_state(run.state, watch.pruned is not None, trial._stop_asked)
        if state == "pruned":
            reason = watch.pruned
        elif state == "stopped" and not trial._stop_asked:
            self._end_trial(trial, otrial, "stopped", INTERRUPTED, told=False)
            return
        else:
            reason = run.reason
        self._end_trial(trial, otrial, state, reason)

    def _end_trial(self, trial: Trial, otrial: Any, state: str, reason: Optional[str], told: bool = True) -> None:
        """End ``trial`` in ``state``; ``told=False`` leaves the Optuna trial running (an
        interrupted trial that a resumed sweep continues)."""
        import optuna

        trial._end(state, reason)
        value = trial.best_metric
        with self.db:
            if self.study._storage.get_trial(otrial._trial_id).state.is_finished():
                told = False     # already told (a failure after the tell): only the sweep hears of it
            else:
                for key, item in trial.record().items():
                    otrial.set_user_attr(key, item)
            if told:
                if state == "completed" and value is not None:
                    self.study.tell(otrial, value)
                elif state in ("pruned", "stopped"):
                    self.study.tell(otrial, state=optuna.trial.TrialState.PRUNED)
                else:
                    self.study.tell(otrial, state=optuna.trial.TrialState.FAIL)
        self.sweep._emit("trial_end", {"number": trial.number, "state": state, "reason": reason,
                                       "best_metric": value, "epochs": trial.epochs_done})
