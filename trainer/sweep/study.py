"""The Optuna study of a sweep: its SQLite storage in the sweep's folder, sampler, pruner, direction.

The study is stored in ``<output_path>/study.db`` (``optuna-dashboard sqlite:///<output_path>/study.db``
opens it); the sweep's own settings (metric, space, trials wanted) are the study's user attributes,
so a sweep reloads from its folder alone. Only the process driving the sweep writes to it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..config import ConfigError
from .space import Distribution, grid_values

STUDY_FILE = "study.db"
STUDY_NAME = "sweep"
METRICS = ("val_loss", "val_accuracy", "val_mae", "train_loss", "train_accuracy", "train_mae")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "asha", None)
# Metrics where more is better; every other metric is a loss or an error.
_MAXIMIZED = ("val_accuracy", "train_accuracy")


def storage_url(folder: Path) -> str:
    return f"sqlite:///{(folder / STUDY_FILE).resolve()}"


def check_metric(metric: Any, direction: Any) -> str:
    """The direction (``"minimize"``/``"maximize"``) for ``metric``; ConfigError for a bad one."""
    if metric not in METRICS:
        raise ConfigError.single("metric", metric, f"choose one of {', '.join(METRICS)}")
    auto = "maximize" if metric in _MAXIMIZED else "minimize"
    if direction is None:
        return auto
    if direction not in ("minimize", "maximize"):
        raise ConfigError.single("direction", direction, "choose 'minimize', 'maximize' or None (from the metric)")
    return direction


def make_sampler(sampler: Any, space: dict[str, Distribution], seed: Optional[int]) -> Any:
    """Optuna's sampler for ``sampler`` (a name, or an Optuna sampler used as given)."""
    import optuna

    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    if sampler == "tpe":
        # A few random trials before modelling: the default ten would be most of a small sweep.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sampler == "grid":
        return _grid_sampler_class()(grid_values(space), seed=seed)
    raise ConfigError.single("sampler", repr(sampler), f"choose one of {', '.join(map(repr, SAMPLERS))} "
                             f"or pass an optuna sampler")


def _grid_sampler_class() -> Any:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid, without stopping the study when the grid is done: outside ``optimize()``
        that stop raises, and the sweep asks for no more trials than the grid holds anyway."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return GridSampler


def make_pruner(pruner: Any) -> Any:
    """Optuna's pruner for ``pruner``: ``"median"``, ``"asha"`` (successive halving), None (never
    prune), or an Optuna pruner used as given."""
    import optuna

    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "median":
        # Compare from the first epoch on, once two trials have finished: a sweep is small, and its
        # first epochs already tell the poor settings apart.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    if pruner is None:
        return optuna.pruners.NopPruner()
    raise ConfigError.single("pruner", repr(pruner), "choose 'median', 'asha', None or pass an optuna pruner")


def grid_size(space: dict[str, Distribution]) -> int:
    size = 1
    for values in grid_values(space).values():
        size *= len(values)
    return size


def open_study(folder: Path, direction: str, sampler: Any, pruner: Any, settings: dict[str, Any],
               resume: bool) -> Any:
    """The sweep's study in ``folder``: created (resume=False, the folder holding no study) or
    loaded (resume=True), with ``settings`` stored as its user attributes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(folder)
    exists = (folder / STUDY_FILE).is_file()
    if exists and not resume:
        raise ConfigError.single("output_path", str(folder), "this folder holds a sweep already: pass resume=True to "
                                 "continue it, or choose another output_path")
    if resume and not exists:
        raise ConfigError.single("output_path", str(folder), "there is no sweep to resume here (no study.db); "
                                 "start one with resume=False")
    study = optuna.create_study(storage=url, study_name=STUDY_NAME, direction=direction, sampler=sampler,
                                pruner=pruner, load_if_exists=resume)
    if not resume:
        for key, value in settings.items():
            study.set_user_attr(key, value)
    return study


def load_study(folder: Path) -> Any:
    """The stored study of the sweep in ``folder`` (read-only use); ConfigError when there is none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not (folder / STUDY_FILE).is_file():
        raise ConfigError.single("path", str(folder), "not a sweep folder: it holds no study.db")
    return optuna.load_study(study_name=STUDY_NAME, storage=storage_url(folder))


def stored_settings(study: Any) -> dict[str, Any]:
    """The sweep settings saved with the study."""
    return {key: value for key, value in study.user_attrs.items()}


def check_resumable(saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """A resumed sweep must search the same space for the same metric as the stored one."""
    differ = [key for key in ("metric", "direction", "space", "config") if saved.get(key) != wanted.get(key)]
    if differ:
        raise ConfigError([{"field": key, "value": json.dumps(wanted.get(key))[:80],
                            "message": f"differs from the sweep being resumed ({json.dumps(saved.get(key))[:80]}); "
                                       f"resume with the same {key}, or start a new sweep in another output_path"}
                           for key in differ])


