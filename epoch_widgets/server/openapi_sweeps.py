"""The sweeps' part of the OpenAPI document (``openapi.py`` merges it in): the request, the sweep
as answers show it, its stream's events and the endpoints."""
from __future__ import annotations

import copy
from typing import Any, Callable

from trainer.sweep.handle import SWEEP_STATES
from trainer.sweep.trials import TRIAL_STATES

from .sweep_requests import MAX_TRIALS, PRUNERS, SAMPLERS

NUMBER = {"type": "number"}
NUMBER_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
STRING_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
INT_OR_NULL: dict[str, Any] = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def _nullable(name: str) -> dict[str, Any]:
    return {"anyOf": [_ref(name), {"type": "null"}]}


def sweep_schemas(config: dict[str, Any]) -> dict[str, Any]:
    """The components; ``config`` is the TrainingConfig schema (with its help as descriptions)."""
    sweep_config = copy.deepcopy(config)
    sweep_config["title"] = "SweepConfig"
    props = sweep_config["properties"]
    props["data_path"] = {"type": "string", "minLength": 1, "description": (
        "CSV (optionally compressed) or Parquet file inside the server's root directory, relative to it.")}
    for name in ("output_path", "mlflow_tracking_uri"):
        props[name] = {"type": "null", "description": (
            "Not a sweep request field: the server chooses where the trials are kept (/models/sweeps/<sweep_id>/"
            "trial-<n>) and where tasks log to MLflow; a request that sets it is refused with 400.")}
    sweep_config["required"] = ["data_path"]
    state = {"enum": list(TRIAL_STATES)}
    trial = _obj({"number": {"type": "integer", "minimum": 0}, "params": {"type": "object"}, "state": state,
                  "task_id": {**STRING_OR_NULL, "description": "the trial's task (GET tasks/{task_id})"},
                  "best_metric": NUMBER_OR_NULL, "epochs": {"type": "integer", "minimum": 0},
                  "reason": STRING_OR_NULL}, ("number", "params", "state", "task_id", "best_metric", "epochs"))
    best = _obj({"trial": {"type": "integer"}, "task_id": STRING_OR_NULL, "params": {"type": "object"},
                 "best_metric": NUMBER}, ("trial", "params", "best_metric"))
    sweep = _obj({
        "sweep_id": {"type": "string"}, "state": {"enum": list(SWEEP_STATES)}, "reason": STRING_OR_NULL,
        "metric": {"type": "string"}, "direction": {"enum": ["minimize", "maximize"]},
        "trials_wanted": INT_OR_NULL, "parallel": INT_OR_NULL, "sampler": STRING_OR_NULL, "pruner": STRING_OR_NULL,
        "space": _ref("SweepSpace"), "output_dir": {"type": "string", "description": "/models/sweeps/<sweep_id>"},
        "created_at": STRING_OR_NULL, "trials": {"type": "array", "items": _ref("SweepTrial")},
        "best": _nullable("SweepBest"), "best_config": _nullable("TrainingConfig"),
    }, ("sweep_id", "state", "metric", "direction", "output_dir", "trials", "best"))
    summary = _obj({key: sweep["properties"][key] for key in ("sweep_id", "state", "metric", "trials_wanted",
                                                             "created_at", "output_dir", "best")}
                   | {"trials": {"type": "integer", "minimum": 0}}, ("sweep_id", "state", "trials"))
    common = {"sweep_id": {"type": "string"}, "trial": {"type": "integer"}}
    events = {
        "SweepSnapshotEvent": _obj({"type": {"enum": ["sweep", "sweep_end"]}, "sweep_id": {"type": "string"},
                                    "sweep": _ref("Sweep")}, ("type", "sweep_id", "sweep"),
                                   description="`sweep`: the sweep as it is when the stream opens; `sweep_end`: "
                                               "as it ended (the last event)"),
        "TrialStartEvent": _obj({"type": {"const": "trial_start"}, **common, "params": {"type": "object"},
                                 "resumed": {"type": "boolean"}}, ("type", "sweep_id", "trial", "params")),
        "TrialEpochEvent": _obj({"type": {"const": "trial_epoch"}, **common, "epoch": {"type": "integer"},
                                 "metrics": _ref("Metrics")}, ("type", "sweep_id", "trial", "epoch", "metrics")),
        "TrialStateEvent": _obj({"type": {"const": "trial_state"}, **common, "state": state},
                                ("type", "sweep_id", "trial", "state")),
        "TrialEndEvent": _obj({"type": {"const": "trial_end"}, **common, "state": state, "reason": STRING_OR_NULL,
                               "best_metric": NUMBER_OR_NULL, "epochs": {"type": "integer"},
                               "task_id": STRING_OR_NULL}, ("type", "sweep_id", "trial", "state")),
        "SweepStateEvent": _obj({"type": {"const": "sweep_state"}, "sweep_id": {"type": "string"},
                                 "state": {"enum": list(SWEEP_STATES)}}, ("type", "sweep_id", "state")),
    }
    ok = {"success": {"const": True}}
    return {
        "SweepConfig": sweep_config,
        "SweepRange": _obj({"distribution": {"enum": ["uniform", "log_uniform"]}, "low": NUMBER, "high": NUMBER},
                           ("distribution", "low", "high"), additionalProperties=False, description=(
                               "a number between low and high (whole numbers for an integer field); log_uniform: "
                               "evenly in log space, low > 0")),
        "SweepChoice": _obj({"distribution": {"const": "choice"}, "values": {"type": "array", "minItems": 1}},
                            ("distribution", "values"), additionalProperties=False,
                            description="one of the values (e.g. [[64, 32], [128, 64]] for hidden_units)"),
        "SweepSpace": {"type": "object", "minProperties": 1, "description": (
            "config field -> what it varies over; a field that does not exist or cannot vary (where data, files "
            "or trackers are, how a run is computed, the seed) or a range outside the field's limits is refused "
            "with 400 naming space.<field>"),
            "additionalProperties": {"oneOf": [_ref("SweepRange"), _ref("SweepChoice")]}},
        "SweepRequest": _obj({
            "config": _ref("SweepConfig"), "space": _ref("SweepSpace"),
            "trials": {"type": "integer", "minimum": 1, "maximum": MAX_TRIALS, "default": 10},
            "parallel": {"type": "integer", "minimum": 1, "default": 1,
                         "description": "trials trained at once (at most the server's max_running_tasks)"},
            "metric": {"type": "string", "default": "val_loss", "description": (
                "the history column that scores a trial: val_loss, val_accuracy, val_mae, train_loss, ...")},
            "direction": {"enum": ["minimize", "maximize", None], "default": None,
                          "description": "null: from the metric (accuracy is maximized, the rest minimized)"},
            "sampler": {"enum": list(SAMPLERS), "default": "tpe"},
            "pruner": {"enum": list(PRUNERS), "default": "median", "description": "null: never prune"},
            "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**32 - 1},
        }, ("config", "space"), additionalProperties=False),
        "SweepTrial": trial, "SweepBest": best, "Sweep": sweep, "SweepSummary": summary, **events,
        "SweepStreamEvent": {"description": "The JSON in one event's data line of a sweep's stream.",
                             "oneOf": [_ref(name) for name in events]},
        "SweepResponse": _obj({**ok, "sweep_id": {"type": "string"}, "message": {"type": "string"},
                               "sweep": _ref("Sweep")}, ("success", "sweep_id", "sweep")),
        "SweepsResponse": _obj({**ok, "sweeps": {"type": "array", "items": _ref("SweepSummary")}},
                               ("success", "sweeps")),
    }


SWEEP_PARAM = {"name": "sweep_id", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "a sweep id as POST sweep returned it: sweep_YYYYMMDD_HHMMSS[_N]",
               "example": "sweep_20240101_120000"}


def sweep_paths(operation: Callable[..., dict[str, Any]], stream: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The endpoints; ``operation`` and ``stream`` build operations as openapi.py does."""
    def sweep_path(**ops: Any) -> dict[str, Any]:
        return {"parameters": [SWEEP_PARAM], **ops}

    start = operation("Start a sweep: trials of a config over a search space", "SweepResponse",
                      (400, 413, 429, 503), (
                          "Answers once the sweep's study exists; the trials train in the background, each as a task "
                          "(GET tasks?sweep_id=...). The server keeps them in /models/sweeps/<sweep_id>/trial-<n>. "
                          "429 when `parallel` is more than the free task slots."))
    start["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref("SweepRequest")}}}
    control = (404, 409)
    return {
        "/sweep": {"post": start},
        "/sweeps": {"get": operation("Every sweep of this server (also those of earlier server lives)",
                                     "SweepsResponse", ())},
        "/sweep/{sweep_id}": sweep_path(get=operation("A sweep: its state, trials and best trial", "SweepResponse",
                                                      (404, 409), "409 when its stored study cannot be read.")),
        "/stream-sweep/{sweep_id}": sweep_path(get=stream(
            "Server-Sent Events of a sweep", "SweepStreamEvent", (404, 409),
            "A `text/event-stream`: `data: <json>` lines, each a SweepStreamEvent: the sweep as it is first "
            "(`sweep`), then `trial_start`, `trial_epoch`, `trial_state`, `trial_end` and `sweep_state` as they "
            "happen, and finally `sweep_end`.")),
        "/pause-sweep/{sweep_id}": sweep_path(post=operation(
            "Pause a sweep: its running trials pause, no new trial starts", "SweepResponse", control)),
        "/resume-sweep/{sweep_id}": sweep_path(post=operation("Resume a paused sweep", "SweepResponse", control)),
        "/stop-sweep/{sweep_id}": sweep_path(post=operation(
            "Stop a sweep: no new trial starts, the running ones stop (each keeps its checkpoint)", "SweepResponse",
            control)),
    }
