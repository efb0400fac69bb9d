"""Reading a ``POST sweep`` body: the config, the search space in JSON, and the sweep's options.

The body is ``{"config": {...}, "space": {"learning_rate": {"distribution": "log_uniform", "low":
1e-4, "high": 0.1}, "hidden_units": {"distribution": "choice", "values": [[64, 32], [128, 64]]}},
"trials": 10, "parallel": 2, "metric": "val_loss", "sampler": "tpe", "pruner": "median"}`` (the
space as ``trainer.sweep.space_to_dict`` writes it). Only the shape is checked here, each problem
named by its place in the body (``config.epochs``, ``space.dropout_rate``, ``trials``); what the
values mean (a field that cannot vary, a range outside its limits, a metric the task has not) is
``trainer.sweep``'s to say. Where the trials are kept is the server's choice, never the request's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from trainer import ConfigError, TrainingConfig
from trainer.sweep.space import space_from_dict

from .errors import BadRequest

OPTIONS = {"trials": 10, "parallel": 1, "metric": "val_loss", "direction": None, "sampler": "tpe",
           "pruner": "median", "seed": None}
MAX_TRIALS = 1000
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "asha", None)
KEYS = ("config", "space", *OPTIONS)
# Config fields a sweep request may not set: where a trial writes or logs is the server's.
SERVER_DECIDES = {
    "output_path": "the server keeps a sweep's trials in a folder it chooses (/models/sweeps/<sweep_id>/trial-<n>, "
                   "given in the answer); leave output_path out",
    "mlflow_tracking_uri": "over the API the server decides where tasks log to MLflow; leave it out (its "
                           "administrator sets --EpochTrainingApp.mlflow_tracking_uri)",
}


@dataclass
class SweepRequest:
    """A sweep request whose shape is right: the config, the space and the options."""

    config: TrainingConfig
    space: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    space_json: dict[str, Any] = field(default_factory=dict)


def _error(where: str, value: Any, message: str) -> dict[str, Any]:
    return {"field": where, "value": value, "message": message}


def parse_sweep_request(body: Any, max_parallel: int) -> SweepRequest:
    """The request in ``body``; BadRequest listing every problem, each named by its place."""
    if not isinstance(body, dict):
        raise BadRequest("send the sweep as a JSON object: {\"config\": {...}, \"space\": {...}, \"trials\": ...}",
                         [_error("<body>", None, "expected a JSON object")])
    errors = [_error(key, None, f"unknown key; a sweep request has {', '.join(KEYS)}") for key in body if key not in KEYS]
    config = _config(body.get("config"), errors)
    space_json = body.get("space")
    space = _space(space_json, errors)
    options = {key: body.get(key, default) for key, default in OPTIONS.items()}
    errors += _options(options, max_parallel)
    if errors or config is None:
        raise BadRequest(str(ConfigError(errors)), errors[:20])
    return SweepRequest(config, space, options, dict(space_json))


def _config(value: Any, errors: list[dict[str, Any]]) -> Optional[TrainingConfig]:
    if not isinstance(value, dict):
        errors.append(_error("config", None, "give the training config (with data_path) as a JSON object"))
        return None
    for name, why in SERVER_DECIDES.items():
        if value.get(name) is not None:
            errors.append(_error(f"config.{name}", None, why))
    if "overwrite" in value:
        errors.append(_error("config.overwrite", value["overwrite"], "a sweep never replaces a run: each trial has "
                             "a new folder of its own; leave overwrite out"))
    try:
        config = TrainingConfig.from_dict({k: v for k, v in value.items() if k not in (*SERVER_DECIDES, "overwrite")})
    except ConfigError as exc:
        errors += [{**e, "field": f"config.{e['field']}"} for e in exc.errors]
        return None
    if config.data_path is None:
        errors.append(_error("config.data_path", None, "required: name the CSV or Parquet file the trials train "
                             "on, relative to the server's root directory"))
    return config


def _space(value: Any, errors: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        return space_from_dict(value)
    except ConfigError as exc:
        errors += [{**e, "field": e["field"] if e["field"] == "space" else f"space.{e['field']}"} for e in exc.errors]
        return {}


def _options(options: dict[str, Any], max_parallel: int) -> list[dict[str, Any]]:
    errors = []
    for key, most in (("trials", MAX_TRIALS), ("parallel", max_parallel)):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            hint = " (the server's max_running_tasks)" if key == "parallel" else ""
            errors.append(_error(key, value if isinstance(value, (int, float)) else None,
                                 f"give a whole number from 1 to {most}{hint}"))
    if options["sampler"] not in SAMPLERS:
        errors.append(_error("sampler", None, f"choose one of {', '.join(SAMPLERS)}"))
    if options["pruner"] not in PRUNERS:
        errors.append(_error("pruner", None, "choose \"median\", \"asha\" or null (never prune)"))
    for key in ("metric", "direction"):
        if options[key] is not None and not isinstance(options[key], str):
            errors.append(_error(key, None, "give a string"))
    seed = options["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        errors.append(_error("seed", None, "give a whole number from 0 to 4294967295, or null"))
    return errors
