"""Experiment tracking: observers that write a run's metrics to TensorBoard or MLflow.

``config.loggers`` names them (``["tensorboard", "mlflow"]``); :func:`loggers_for` builds them
when a run is built. They see only the public event data and run attributes, write from their own
thread once per epoch, and never stop a run: a logger that cannot be built or cannot write is
reported in ``run.observer_errors`` with what to do, and the run goes on.

- ``tensorboard``: event files in ``output_path/tensorboard/`` (``tensorboard --logdir`` on the
  folder holding several runs compares them). Without ``output_path`` it refuses, saying so: a run
  without one writes nothing, and a temporary folder would only lose the curves later.
- ``mlflow``: see :mod:`trainer.loggers.mlflow_logger` for where it logs.

The packages are imported only when a logger runs; ``pip install 'epoch-widgets[tracking]'``
installs them.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Optional

from ..events import Callback
from .base import BackgroundLogger, LoggerFailure, UnavailableLogger

__all__ = ["LOGGERS", "loggers_for", "logger_locations", "BackgroundLogger", "LoggerFailure"]

LOGGERS = ("tensorboard", "mlflow")
_TITLES = {"tensorboard": "TensorBoard", "mlflow": "MLflow"}
_PACKAGES = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "filelock")}


def loggers_for(run: Any) -> list[Callback]:
    """The loggers ``run.config.loggers`` asks for; one that cannot be built is replaced by an
    observer reporting why at ``train_begin``. Never raises."""
    config = run.config
    if not config.loggers or not _reports_for_the_run(run):
        return []
    output = Path(config.output_path).expanduser() if config.output_path else None
    out: list[Callback] = []
    for name in config.loggers:
        title = _TITLES.get(name, name)
        try:
            missing = [p for p in _PACKAGES[name] if importlib.util.find_spec(p) is None]
            if missing:
                raise LoggerFailure(f"the {name} logger needs {' and '.join(missing)}: pip install "
                                    f"'epoch-widgets[tracking]' (or pip install {' '.join(missing)}); "
                                    f"the run goes on without {title}")
            out.append(_build(name, config, output))
        except Exception as exc:
            message = str(exc) if isinstance(exc, LoggerFailure) else (
                f"could not set up the {name} logger: {type(exc).__name__}: {exc}; the run goes on without {title}")
            out.append(UnavailableLogger(title, message))
    return out


def _build(name: str, config: Any, output: Optional[Path]) -> Callback:
    if name == "tensorboard":
        from .tensorboard_logger import TensorBoardLogger

        if output is None:
            raise LoggerFailure("the tensorboard logger writes to output_path/tensorboard, and this run has no "
                                "output_path: set output_path to log to TensorBoard; the run goes on without it")
        return TensorBoardLogger(output)
    if name == "mlflow":
        from .mlflow_logger import MlflowLogger

        return MlflowLogger(config.to_dict(), output)
    raise LoggerFailure(f"unknown logger {name!r}; known: {', '.join(LOGGERS)}")


def _reports_for_the_run(run: Any) -> bool:
    # trainer.distributed's rank processes: under the in-process launcher the launching Trainer
    # logs what rank 0 forwards; under torchrun rank 0 is the run's only face.
    context = getattr(run, "context", None)
    rank = getattr(context, "rank", None)
    if rank is None:
        return True
    return rank == 0 and "TORCHELASTIC_RUN_ID" in os.environ


def logger_locations(output_path: Optional[Path], config: dict[str, Any],
                     relative_to: Optional[Path] = None) -> dict[str, Any]:
    """Where a run's loggers write, for listings (the HTTP API): ``{"tensorboard": folder,
    "mlflow": {"tracking_uri", "run_id", "experiment_id"}}`` for the loggers the config names.

    With ``relative_to`` local paths are given relative to that folder (a local store's URI as
    ``sqlite:///<relative path>``), never as absolute paths; credentials in a URI are left out.
    """
    from .mlflow_logger import STORE_FILE, local_store, public_uri, read_record

    names = config.get("loggers") or []
    out: dict[str, Any] = {}
    output = Path(output_path) if output_path is not None else None
    if "tensorboard" in names and output is not None:
        out["tensorboard"] = _shown(output / "tensorboard", relative_to)
    if "mlflow" in names:
        record = read_record(output) if output is not None else None
        uri = (record or {}).get("tracking_uri") or config.get("mlflow_tracking_uri") \
            or os.environ.get("MLFLOW_TRACKING_URI")
        local = (record or {}).get("local_store", False) if record else (uri is None and output is not None)
        if local and output is not None:
            uri = "sqlite:///" + _shown(local_store(output) / STORE_FILE, relative_to)
        out["mlflow"] = {"tracking_uri": public_uri(uri) if uri else None,
                         "run_id": (record or {}).get("run_id"), "experiment_id": (record or {}).get("experiment_id")}
    return out


def _shown(path: Path, relative_to: Optional[Path]) -> str:
    if relative_to is None:
        return str(path)
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(relative_to).resolve())).as_posix()
    except ValueError:       # another drive on Windows: no relative form exists
        return Path(path).name
