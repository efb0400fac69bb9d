"""``sweep(config, data, space, ...)``: check everything a sweep is asked, then start it in the background.

Every argument is checked before anything is written (a refused sweep leaves no folder behind):
the config, the space against the config's schema and the data (``prepare_data``), the metric
against the task, the counts, sampler, pruner and executor, and where the sweep is kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Union

import pandas as pd

from ..config import ConfigError, TrainingConfig, as_config
from ..data import prepare_data
from ..executors import check_executor
from ..data.tables import read_table
from .handle import Sweep, SweepCallback
from .launchers import Launcher, default_launcher
from .runner import SweepRunner
from .space import check_space, optuna_distributions, space_to_dict
from .study import (STUDY_FILE, check_metric, check_resumable, grid_size, make_pruner, make_sampler, open_study,
                    stored_settings)

MAX_PARALLEL = 64


def sweep(config: Union[TrainingConfig, dict[str, Any]], data: Optional[pd.DataFrame], space: dict[str, Any], *,
          trials: int = 10, parallel: int = 1, metric: str = "val_loss", direction: Optional[str] = None,
          sampler: Any = "tpe", pruner: Any = "median", executor: str = "local",
          output_path: Union[str, Path, None] = None, resume: bool = False, seed: Optional[int] = None,
          launcher: Optional[Launcher] = None, callbacks: Iterable[SweepCallback] = ()) -> Sweep:
    """Search ``space`` with ``trials`` runs of ``config`` on ``data`` and return the :class:`Sweep` at
    once (it trains in the background; ``wait()`` blocks until it ends).

    ``space`` maps config fields to ``uniform``, ``log_uniform`` or ``choice``; ``metric`` is a
    history column (``val_loss``, ``val_accuracy``, ``val_mae``, ...) whose best epoch scores a
    trial (``direction`` from the metric unless given); ``sampler``: ``"tpe"``, ``"random"``,
    ``"grid"`` (every combination of ``choice`` values; ``trials`` at most the grid's size) or an
    Optuna sampler; ``pruner``: ``"median"``, ``"asha"``, None or an Optuna pruner. ``parallel``
    trials train at once: in worker processes (``executor="local"``) or on Ray actors
    (``executor="ray"``); ``launcher`` replaces how a trial's run is built. Trials are kept in
    ``output_path`` (default ``config.output_path``), the study in its ``study.db``;
    ``resume=True`` continues the sweep kept there. ``data`` None reads ``config.data_path``.
    ``callbacks`` are added (``Sweep.add_callback``) before the first trial starts.
    """
    config = as_config(config)
    space = check_space(config, space)
    wanted = _count("trials", trials, 100_000)
    parallel = _count("parallel", parallel, MAX_PARALLEL)
    direction = check_metric(metric, direction)
    executor = check_executor(executor)
    if launcher is not None and not callable(getattr(launcher, "launch", None)):
        raise ConfigError.single("launcher", type(launcher).__name__, "a launcher needs a launch(config, data, "
                                 "callbacks, resume) method (see trainer.sweep.launchers)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise ConfigError.single("seed", seed, "give an integer between 0 and 2**32 - 1, or None")
    sampler_obj = make_sampler(sampler, space, seed)
    if sampler == "grid":
        wanted = min(wanted, grid_size(space))
    pruner_obj = make_pruner(pruner)
    folder = _folder(output_path, config, resume)
    data = _data(config, data, metric)
    settings = {"metric": metric, "direction": direction, "space": space_to_dict(space),
                "config": config.to_saved_dict(), "trials": wanted, "seed": seed,
                "sampler": sampler if isinstance(sampler, str) else type(sampler).__name__,
                "pruner": pruner if isinstance(pruner, str) or pruner is None else type(pruner).__name__}
    if resume:
        from .study import load_study

        check_resumable(stored_settings(load_study(folder)), settings)
    folder.mkdir(parents=True, exist_ok=True)
    study = open_study(folder, direction, sampler_obj, pruner_obj, settings, resume)
    if resume:
        study.set_user_attr("trials", wanted)
        study.set_user_attr("state", "running")
    handle = Sweep(folder, config, space, metric, direction, seed)
    for fn in callbacks:
        handle.add_callback(fn)
    interrupted = handle._restore_trials(study, interrupted_ended=False)
    runner = SweepRunner(handle, study, launcher or default_launcher(executor, parallel), data, parallel, wanted,
                         interrupted, optuna_distributions(space))
    handle._runner = runner
    runner.start()
    return handle


def _count(name: str, value: Any, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigError.single(name, value, f"give a whole number from 1 to {most}")
    return value


def _folder(output_path: Union[str, Path, None], config: TrainingConfig, resume: bool) -> Path:
    where = output_path if output_path is not None else config.output_path
    if not where:
        raise ConfigError.single("output_path", None, "a sweep keeps every trial as a run in its own folder: give "
                                 "output_path (or set config.output_path)")
    folder = Path(where).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ConfigError.single("output_path", str(folder), "is a file; give a folder for the sweep")
    held = (folder / STUDY_FILE).is_file()
    if resume and not held:
        raise ConfigError.single("output_path", str(folder), "there is no sweep to resume here (no study.db); "
                                 "start one with resume=False")
    if not resume and held:
        raise ConfigError.single("output_path", str(folder), "this folder holds a sweep already: pass resume=True "
                                 "to continue it, or choose another output_path")
    if not resume and folder.is_dir() and any(folder.iterdir()):
        raise ConfigError.single("output_path", str(folder), "this folder is not empty; a sweep starts in a new or "
                                 "empty folder (nothing in it is replaced)")
    return folder


def _data(config: TrainingConfig, data: Optional[pd.DataFrame], metric: str) -> pd.DataFrame:
    if data is None:
        if not config.data_path:
            raise ConfigError.single("data", None, "give a DataFrame, or set config.data_path to a data file")
        data = read_table(config.data_path)
    if not isinstance(data, pd.DataFrame):
        raise ConfigError.single("data", type(data).__name__, "expected a pandas DataFrame")
    task = prepare_data(config, data).task
    score = metric.split("_", 1)[1]
    if score in ("accuracy", "mae") and score != ("accuracy" if task == "classification" else "mae"):
        other = "val_accuracy" if task == "classification" else "val_mae"
        raise ConfigError.single("metric", metric, f"this is a {task} task, which has no {score}: use val_loss or "
                                 f"{other}")
    return data
