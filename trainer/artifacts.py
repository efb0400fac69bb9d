"""What a run leaves at ``output_path`` and how it loads back for predictions.

Layout (every file written atomically)::

    output_path/
      config.json          the effective TrainingConfig
      preprocessing.json   scaler, categories, classes, window length, task
      history.json         per-epoch metrics, plus the run's state, reason and config_changes (steering)
      history.csv          the same metrics as a table
      metadata.json        backend, versions, files, best metrics
      evaluation.json      figures on the validation split (trainer/evaluation.py)
      model.pt | model.keras ...   the weights, in the backend's own format
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import pandas as pd

from .atomic import atomic_write_json, atomic_write_text
from .backends import backend_module
from .config import TrainingConfig
from .confined import ConfinementError, confined_path, open_confined
from .data import windows
from .preprocessor import Preprocessor
from .evaluation import Evaluation, evaluate_frame, save_evaluation, softmax

if TYPE_CHECKING:
    from .handle import RunHandle
    from .state import TrainingState

FORMAT_VERSION = 1


def save_run(run: "RunHandle", state: "TrainingState", reason: str) -> Path:
    """Write the run's model, preprocessing, config and history to its ``output_path``."""
    out = Path(run.config.output_path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    # metadata.json, written last, says the files are complete and of one run: until it is
    # rewritten they are not (a resume finishes a run killed in between, trainer/resume.py).
    (out / "metadata.json").unlink(missing_ok=True)
    model_meta = run.backend.save_model(out)
    atomic_write_json(out / "config.json", run.config.to_saved_dict())
    atomic_write_json(out / "preprocessing.json", run.data.preprocessor.to_dict())
    atomic_write_json(out / "history.json", {"state": state.value, "reason": reason,
                                             "best_metrics": run.best_metrics, "history": run.history,
                                             "config_changes": run.config_changes})
    atomic_write_text(out / "history.csv", pd.DataFrame(run.history).to_csv(index=False))
    evaluation = save_evaluation(run, out)      # never raises: a failed evaluation is noted below
    atomic_write_json(out / "metadata.json", {
        "format_version": FORMAT_VERSION, "backend": run.config.backend, "model": model_meta,
        "seed": run.seed, "state": state.value, "epochs_completed": run.current_epoch,
        "best_metrics": run.best_metrics, "restored_best_weights": bool(run.config.restore_best_weights
                                                                        and run.run_state.best_epoch),
        "evaluation": evaluation, "python": platform.python_version()})
    return out


class TrainedModel:
    """A saved model with its preprocessing: raw DataFrame columns in, predictions out."""

    def __init__(self, path: Optional[Path], config: TrainingConfig, preprocessor: Preprocessor,
                 predict_fn: Any, metadata: dict[str, Any], history: list[dict[str, Any]]):
        self.path = path
        self.config = config
        self.preprocessor = preprocessor
        self.metadata = metadata
        self.history = history
        self._predict_fn = predict_fn

    @classmethod
    def from_run(cls, run: "RunHandle") -> "TrainedModel":
        """The model a run holds in memory, with the same prediction API as a loaded one."""
        path = Path(run.config.output_path).expanduser() if run.config.output_path else None
        return cls(path, run.config, run.data.preprocessor, run.backend.predict_outputs,
                   {"backend": run.config.backend, "state": run.state.value}, list(run.history))

    @property
    def task(self) -> str:
        return self.preprocessor.task

    @property
    def classes_(self) -> list[Any]:
        return list(self.preprocessor.classes)

    @property
    def feature_columns(self) -> list[str]:
        return list(self.preprocessor.feature_columns)

    def _samples(self, df: pd.DataFrame) -> np.ndarray:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"predict expects a pandas DataFrame with columns {self.feature_columns}, got {type(df).__name__}")
        x = self.preprocessor.transform(df)
        window = self.preprocessor.sequence_length
        if window is None:
            return x
        if len(x) < window:
            raise ValueError(f"a {self.config.model_type} model needs at least sequence_length={window} rows, got {len(x)}")
        return windows(x, window)

    def decision_function(self, df: pd.DataFrame) -> np.ndarray:
        """Raw outputs: logits for classes, scaled values for regression."""
        return self._predict_fn(self._samples(df))

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Labels (classification) or values (regression) in the target's own units.

        For ``cnn``/``lstm``/``gru`` there is one prediction per window: ``len(df) -
        sequence_length + 1`` of them, the first for the row at position ``sequence_length - 1``.
        """
        out = self.decision_function(df)
        if self.task == "classification":
            return self.preprocessor.decode_target(out.argmax(axis=1))
        return self.preprocessor.decode_target(out.reshape(-1).astype(np.float64))

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        if self.task != "classification":
            raise ValueError("predict_proba is for classification models; this one does regression")
        return softmax(self.decision_function(df))

    def evaluate(self, df: pd.DataFrame) -> Evaluation:
        """Figures on a raw DataFrame with the feature columns and the target column (see
        :mod:`trainer.evaluation`); sequence models are evaluated per window, as predict predicts."""
        return evaluate_frame(self, df)

    def __repr__(self) -> str:
        where = f"from {str(self.path)!r}" if self.path else "in memory"
        return f"<TrainedModel {self.config.model_type} {self.task} {where}>"


def load_model(path: Union[str, Path], model: Any = None, *, trust_pickle: bool = False) -> TrainedModel:
    """Load what a run saved at ``path``, without running code from the folder.

    Only JSON and tensors are read, each from a file inside ``path`` (no absolute path, ``..`` or
    link leading out). A model of your own is rebuilt from ``model``: an instance, the class or a
    function returning one (called with no arguments), or a ``"package.module:name"`` string to
    import; without it, from the class recorded at save time if its module is imported already.
    ``trust_pickle=True`` instead unpickles a PyTorch module saved whole (and turns off Keras's
    ``safe_mode``): that runs any code the folder holds, so use it only for folders you trust.
    """
    path = Path(path).expanduser()
    meta_file = path / "metadata.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no trained model at {str(path)!r} (metadata.json is missing); "
                                f"is this the output_path of a finished run?")
    metadata = _read_json(path, "metadata.json")
    config = TrainingConfig.from_dict(_read_json(path, "config.json"))
    pre = Preprocessor.from_dict(_read_json(path, "preprocessing.json"))
    history = _read_json(path, "history.json")["history"] if (path / "history.json").exists() else []
    predict_fn = backend_module(metadata["backend"]).load_predict_fn(path, metadata["model"], model,
                                                                     trust_pickle=trust_pickle)
    return TrainedModel(path, config, pre, predict_fn, metadata, history)


def _read_json(folder: Path, name: str) -> Any:
    try:
        with open_confined(folder, confined_path(folder, name)) as fh:
            return json.loads(fh.read())
    except ConfinementError as exc:
        raise ValueError(f"refusing to load from {str(folder)!r}: {exc}") from None
