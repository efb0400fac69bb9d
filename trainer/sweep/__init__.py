"""Sweeps: search a run's settings over many trials with Optuna, pruning the poor ones.

``trainer.sweep(config, df, space, trials=20)`` starts a :class:`Sweep` in the background; every
trial is a normal run in ``<output_path>/trial-<n>/``. ``space`` is declared against the config
schema with :func:`uniform`, :func:`log_uniform` and :func:`choice`. See ``docs/sweeps.md``.

``from trainer import sweep`` gives the function; the package's other names are imported from
``trainer.sweep`` (``from trainer.sweep import Sweep``).
"""
from .handle import SWEEP_STATES, Sweep
from .launchers import InProcessLauncher, Launcher, ProcessLauncher, RayLauncher
from .space import FIXED, choice, check_space, log_uniform, space_from_dict, space_to_dict, uniform, variable_fields
from .start import sweep
from .trials import TRIAL_STATES, Trial

__all__ = ["sweep", "Sweep", "Trial", "uniform", "log_uniform", "choice", "check_space", "space_from_dict",
           "space_to_dict", "variable_fields", "FIXED", "Launcher", "InProcessLauncher", "ProcessLauncher", "RayLauncher", "SWEEP_STATES",
           "TRIAL_STATES"]
