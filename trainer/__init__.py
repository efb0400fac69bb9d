"""Framework-agnostic epoch-by-epoch trainer: config, data preparation, the epoch loop and artifacts.

Never imports UI or server code; torch and TensorFlow are imported only by their backends.
"""
from .artifacts import TrainedModel, load_model
from .backends import BackendUnavailable, available_backends
from .checkpoints import CheckpointError, ResumeMismatch, has_checkpoints
from .config import ConfigError, FieldSpec, TrainingConfig, config_fields
from .evaluation import Evaluation
from .events import Callback
from .lr_finder import LRFinder, LRFindResult
from .run import FINAL_STATES, StateError, Trainer, TrainingFailure, TrainingState
from .schedules import preview_schedule

__version__ = "0.1.0"

__all__ = ["TrainingConfig", "ConfigError", "FieldSpec", "config_fields", "Trainer", "TrainingState",
           "FINAL_STATES", "StateError", "TrainingFailure", "Callback", "load_model", "TrainedModel",
           "BackendUnavailable", "available_backends", "preview_schedule", "CheckpointError", "ResumeMismatch",
           "has_checkpoints", "Evaluation", "LRFinder", "LRFindResult", "__version__"]
