"""``Sweep``: the handle of a sweep, while it runs in this process or loaded from its folder.

It holds the trials (``Trial``, each a normal run), the sweep's state (``running``, ``paused``,
``completed``, ``stopped``, ``failed``), the best trial so far and its settings, a table of every
trial, and the controls: pause, resume or stop the sweep or one trial. Observers added with
:meth:`Sweep.add_callback` hear ``fn(sweep, event, data)`` for ``trial_start``, ``trial_epoch``,
``trial_end``, ``trial_state``, ``sweep_state`` and ``sweep_end`` (see ``docs/sweeps.md``), from
the sweep's threads.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import pandas as pd

from ..config import TrainingConfig
from ..state import FINAL_STATES, StateError
from .space import Distribution, decode_params
from .study import load_study, stored_settings
from .trials import Trial, trial_folder

if TYPE_CHECKING:
    from .runner import SweepRunner

log = logging.getLogger("trainer")

SWEEP_STATES = ("running", "paused", "completed", "stopped", "failed")
SweepCallback = Callable[["Sweep", str, dict[str, Any]], None]


class Sweep:
    """A sweep (see the module docstring); ``trainer.sweep(...)`` starts one, :meth:`load` reads one."""

    def __init__(self, path: Path, config: TrainingConfig, space: dict[str, Distribution], metric: str,
                 direction: str, seed: Optional[int] = None):
        self.path = path
        self.config = config
        self.space = space
        self.metric = metric
        self.direction = direction
        self.seed = seed
        self.state = "running"
        self.reason: Optional[str] = None
        self.trials: list[Trial] = []
        self.callback_errors: list[str] = []
        self._callbacks: list[SweepCallback] = []
        self._runner: Optional["SweepRunner"] = None
        self._done = threading.Event()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ reading a sweep back
    @classmethod
    def load(cls, path: Union[str, Path]) -> "Sweep":
        """The sweep stored in ``path`` (finished or interrupted), read-only: trials, table and best
        settings; ``sweep(..., output_path=path, resume=True)`` continues an interrupted one."""
        from .space import space_from_dict

        folder = Path(path).expanduser().resolve()
        study = load_study(folder)
        settings = stored_settings(study)
        sweep = cls(folder, TrainingConfig.from_dict(settings["config"]), space_from_dict(settings["space"]),
                    settings["metric"], settings["direction"], settings.get("seed"))
        sweep._restore_trials(study, interrupted_ended=True)
        running = any(t.state == "stopped" and t.reason == INTERRUPTED_LOAD for t in sweep.trials)
        stored = settings.get("state")
        sweep.state = "stopped" if running or stored in (None, "running", "paused") else stored
        sweep.reason = settings.get("reason") if not running else "interrupted before its end; continue it with resume=True"
        sweep._done.set()
        return sweep

    def _restore_trials(self, study: Any, interrupted_ended: bool) -> list[tuple[Trial, Any]]:
        """The study's trials as :class:`Trial` objects; returns the interrupted ones (still running in
        Optuna) with their Optuna trial, to continue. ``interrupted_ended``: show them as stopped."""
        import optuna

        interrupted = []
        for frozen in study.get_trials(deepcopy=False):
            trial = self._new_trial(frozen.number, decode_params(frozen.params))
            trial._restore(frozen.user_attrs)
            if frozen.state == optuna.trial.TrialState.RUNNING:
                trial._ended = None
                if interrupted_ended:
                    trial._end("stopped", INTERRUPTED_LOAD)
                interrupted.append((trial, optuna.trial.Trial(study, frozen._trial_id)))
        return interrupted

    def _new_trial(self, number: int, params: dict[str, Any]) -> Trial:
        trial = Trial(number, params, trial_folder(self.path, number), self.metric, self.direction)
        with self._lock:
            self.trials.append(trial)
            self.trials.sort(key=lambda t: t.number)
        return trial

    # ------------------------------------------------------------------ results
    @property
    def best_trial(self) -> Optional[Trial]:
        """The completed trial with the best value of the metric (None before one)."""
        done = [t for t in self.trials if t.state == "completed" and t.best_metric is not None]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: t.best_metric)

    @property
    def best_metric(self) -> Optional[float]:
        best = self.best_trial
        return best.best_metric if best else None

    @property
    def best_config(self) -> Optional[TrainingConfig]:
        """The sweep's config with the best trial's settings (None before a completed trial)."""
        best = self.best_trial
        return self.config.replace(**best.params) if best else None

    @property
    def best_run(self) -> Any:
        """The best trial's run handle (trained in this process's session); None for a loaded sweep,
        where ``trainer.load_model(sweep.best_trial.path)`` loads its model."""
        best = self.best_trial
        return best.run if best else None

    @property
    def table(self) -> pd.DataFrame:
        """One row per trial: number, each parameter, the best value of the metric, epochs, state."""
        columns = ["number", *self.space, self.metric, "epochs", "state"]
        return pd.DataFrame([t.row() for t in list(self.trials)], columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """The sweep as JSON values: its state, metric, space, best trial and every trial."""
        from .space import space_to_dict

        best = self.best_trial
        return {"state": self.state, "reason": self.reason, "path": str(self.path), "metric": self.metric,
                "direction": self.direction, "space": space_to_dict(self.space),
                "best": None if best is None else {"number": best.number, "metric": best.best_metric,
                                                   "params": best.params},
                "trials": [t.to_dict() for t in list(self.trials)]}

    def trial(self, number: int) -> Trial:
        """Trial ``number``; ValueError naming the trials there are."""
        for t in list(self.trials):
            if t.number == number:
                return t
        known = ", ".join(str(t.number) for t in self.trials) or "none yet"
        raise ValueError(f"there is no trial {number!r} in this sweep (trials: {known})")

    # ------------------------------------------------------------------ waiting and observing
    def wait(self, timeout: Optional[float] = None) -> "Sweep":
        """Block until the sweep ends (or ``timeout`` seconds pass); returns the sweep."""
        self._done.wait(timeout)
        return self

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def add_callback(self, fn: SweepCallback) -> Callable[[], None]:
        """Call ``fn(sweep, event, data)`` for each sweep event; returns an unsubscribe function."""
        self._callbacks.append(fn)
        return lambda: self._callbacks.remove(fn) if fn in self._callbacks else None

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for fn in list(self._callbacks):
            try:
                fn(self, event, data)
            except Exception as exc:     # an observer never stops the sweep
                log.warning("a sweep callback failed on %s: %s", event, exc, exc_info=True)
                self.callback_errors.append(f"{event}: {type(exc).__name__}: {exc}")

    def _finish(self, state: str, reason: Optional[str]) -> None:
        with self._lock:
            self.state, self.reason = state, reason
        runner = self._runner
        if runner is not None:
            try:
                with runner.db:
                    runner.study.set_user_attr("state", state)
                    runner.study.set_user_attr("reason", reason)
            except Exception as exc:
                log.warning("could not record the sweep's end in its study: %s", exc)
        best = self.best_trial
        # Observers hear the end before wait() returns, so a waiter finds everything they did.
        self._emit("sweep_end", {"state": state, "reason": reason, "best_trial": best.number if best else None,
                                 "best_metric": best.best_metric if best else None})
        self._done.set()

    # ------------------------------------------------------------------ control
    def _active(self, action: str) -> "SweepRunner":
        if self._runner is None:
            raise StateError(f"cannot {action}: this sweep was loaded from its folder and does not run here; "
                             f"continue it with sweep(config, df, space, output_path=..., resume=True)")
        if self._done.is_set() or self.state in ("completed", "stopped", "failed"):
            raise StateError(f"cannot {action}: the sweep has already ended ({self.state})")
        return self._runner

    def pause(self) -> None:
        """Pause every running trial and start no new one until :meth:`resume`."""
        runner = self._active("pause")
        if self.state == "paused":
            raise StateError("cannot pause: the sweep is already paused")
        runner.pause()
        self.state = "paused"
        for t in self._live_runs():
            _quietly(t.run.pause)
        self._emit("sweep_state", {"state": "paused"})

    def resume(self) -> None:
        """Continue a paused sweep: its paused trials go on and new trials start."""
        runner = self._active("resume")
        if self.state != "paused":
            raise StateError(f"cannot resume: the sweep is not paused ({self.state})")
        for t in self._live_runs():
            if t.run.pause_requested:
                _quietly(t.run.resume)
        self.state = "running"
        runner.resume()
        self._emit("sweep_state", {"state": "running"})

    def stop(self) -> None:
        """Stop every trial (each keeps its checkpoint) and start no new one; returns at once."""
        runner = self._active("stop")
        runner.stop()
        for t in self._live_runs():
            _quietly(t.run.stop)

    def pause_trial(self, number: int) -> None:
        """Pause one running trial."""
        self._trial_run(number, "pause").pause()
        self._emit("trial_state", {"number": number, "state": "paused"})

    def resume_trial(self, number: int) -> None:
        """Continue one paused trial."""
        self._trial_run(number, "resume").resume()
        self._emit("trial_state", {"number": number, "state": "running"})

    def stop_trial(self, number: int) -> None:
        """End one trial now (state ``stopped``); the sweep goes on with the others."""
        run = self._trial_run(number, "stop")
        self.trial(number)._stop_asked = True
        run.stop()

    def _trial_run(self, number: int, action: str) -> Any:
        self._active(f"{action} trial {number}")
        trial = self.trial(number)
        if trial.run is None or trial.state not in ("running", "paused") or trial.run.state in FINAL_STATES:
            raise StateError(f"cannot {action} trial {number}: it is {trial.state}")
        return trial.run

    def _live_runs(self) -> list[Trial]:
        return [t for t in list(self.trials) if t.run is not None and t.run.state not in FINAL_STATES]

    def __repr__(self) -> str:
        best = "-" if self.best_metric is None else f"{self.best_metric:.4g}"
        return f"<Sweep {self.state} trials={len(self.trials)} best {self.metric}={best} at {self.path}>"


INTERRUPTED_LOAD = "interrupted before its end; sweep(..., resume=True) continues it"


def _quietly(action: Callable[[], None]) -> None:
    """Apply a control to a run that may have ended in the meantime."""
    try:
        action()
    except StateError:
        pass
