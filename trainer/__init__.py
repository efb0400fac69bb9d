"""Framework-agnostic epoch-by-epoch trainer: config, data preparation, the epoch loop and artifacts.

Never imports UI or server code; torch and TensorFlow are imported only by their backends.
"""
from .artifacts import TrainedModel, load_model
from .backends import BackendUnavailable, available_backends
from .checkpoints import CheckpointError, OutputPathInUse, ResumeMismatch, has_checkpoints
from .config import ConfigError, FieldSpec, TrainingConfig, config_fields
from .evaluation import Evaluation
from .events import Callback
from .follower import RunFollower
from .handle import RunHandle
from .lr_finder import LRFinder, LRFindResult
from .run import Trainer
from .state import FINAL_STATES, RunState, StateError, TrainingFailure, TrainingState
from .schedules import preview_schedule
# Last: binds the name ``sweep`` to the function (the package stays importable as trainer.sweep).
from .sweep import Sweep, choice, log_uniform, sweep, uniform

__version__ = "0.1.0"

__all__ = ["TrainingConfig", "ConfigError", "FieldSpec", "config_fields", "Trainer", "TrainingState",
           "FINAL_STATES", "StateError", "TrainingFailure", "Callback", "RunHandle", "RunState", "RunFollower",
           "load_model", "TrainedModel", "BackendUnavailable", "available_backends", "preview_schedule",
           "CheckpointError", "OutputPathInUse", "ResumeMismatch",
           "has_checkpoints", "Evaluation", "LRFinder", "LRFindResult", "sweep", "Sweep", "uniform",
           "log_uniform", "choice", "__version__"]
