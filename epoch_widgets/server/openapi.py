"""The API's OpenAPI 3.1 document, served at ``GET <base_url>api/v1/epoch-training/openapi.json``.

The config's schema is pydantic's JSON Schema of :class:`trainer.TrainingConfig` (the one the
server validates with), so the document cannot drift from the fields; the endpoints, their
parameters and every answer are described here, next to the handlers they describe.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Optional

from trainer import TrainingConfig, __version__
from trainer.config_values import MAX_PATH
from trainer.steering import CHANGEABLE

from .feed import CHANGES, SPARK_POINTS
from .jsonio import MAX_BODY_BYTES
from .lifecycle import TRAINING_STATES
from .openapi_sweeps import sweep_paths, sweep_schemas

NUMBER_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
STRING_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
NON_NEGATIVE: dict[str, Any] = {"type": "integer", "minimum": 0}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


LOGGER_ERRORS: dict[str, Any] = {"type": "array", "items": _ref("LoggerError"), "description": (
    "each tracking logger that failed (TensorBoard, MLflow): the run went on without it; the task still "
    "completes")}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def _success(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return _obj({"success": {"const": True}, **properties}, ("success", *required))


def config_schema() -> dict[str, Any]:
    """TrainingConfig's JSON Schema, its per-field help as descriptions."""
    schema = copy.deepcopy(TrainingConfig.model_json_schema())
    for prop in schema["properties"].values():
        help_text = prop.pop("help", None)
        if help_text:
            prop["description"] = help_text
        for key in ("group", "scheduler"):
            if key in prop:
                prop[f"x-{key}"] = prop.pop(key)
        prop.pop("kind", None)
    return schema


def start_request_schema() -> dict[str, Any]:
    """The start body: the config (``data_path`` required here) plus ``overwrite``."""
    schema = config_schema()
    schema["title"] = "StartRequest"
    schema["description"] = ("A training config; unknown keys are refused. `overwrite` is not a config field: it is "
                             "read from the request and not saved with the run.")
    props = schema["properties"]
    props["data_path"] = {"type": "string", "minLength": 1, "maxLength": MAX_PATH, "description": (
        "CSV/TSV (optionally compressed) or Parquet file, folder of Parquet files or glob of them (e.g. "
        "'lake/part-*.parquet') inside the server's root directory, relative to it; no symbolic link below the "
        "root is followed.")}
    props["output_path"] = {**props["output_path"], "description": (
        "Folder inside the server's models directory (relative to it, or starting with /models/). A folder "
        "holding another run's checkpoints is refused with 409 unless `overwrite` is true.")}
    props["mlflow_tracking_uri"] = {"type": "null", "description": (
        "Not a request field: the server's administrator decides where tasks log to MLflow "
        "(--EpochTrainingApp.mlflow_tracking_uri); a request that sets it is refused with 400.")}
    props["overwrite"] = {"type": "boolean", "default": False, "description": (
        "Replace the checkpoints of another run (an ended task, or a run started elsewhere) in output_path. "
        "That task can then no longer be resumed.")}
    schema["required"] = ["data_path"]
    return schema


def update_request_schema() -> dict[str, Any]:
    """The update body: any of the fields a live run accepts (``trainer.steering.CHANGEABLE``),
    each with its schema as at start."""
    fields = config_schema()["properties"]
    props = {}
    for name, changeable in CHANGEABLE.items():
        prop = {k: v for k, v in fields[name].items() if k != "default"}
        when = changeable.takes_effect + ("" if changeable.while_running else "; only while the task is paused")
        props[name] = {**prop, "description": f"{prop.get('description', '')} Takes effect {when}.".strip()}
    return {"title": "UpdateRequest", "type": "object", "properties": props, "additionalProperties": False,
            "minProperties": 1, "description": (
                "The settings to change in the live run, checked with the same schema as at start; any other field "
                "is refused with 400 naming it and the fields that can change.")}


def _change_schemas() -> dict[str, Any]:
    change = _obj({
        "changes": {"type": "object", "additionalProperties": _ref("FieldChange"),
                    "description": "each changed field's value before and after"},
        "epoch": {"type": "integer", "minimum": 1, "description": "the 1-based epoch the change applies in"},
        "batch": {**NON_NEGATIVE, "description": "batches of that epoch already trained when it applied"},
        "step": {**NON_NEGATIVE, "description": "the run's global batch step when it applied"},
        "time": {"type": "number", "description": "when it applied, Unix seconds"},
    }, ("changes", "epoch", "batch", "step", "time"), description=(
        "One change applied to a live run between two batches (the run's config_change event)."))
    return {"FieldChange": _obj({"old": {}, "new": {}}, ("old", "new")), "ConfigChange": change,
            "UpdateRequest": update_request_schema()}


CONFIG_CHANGES: dict[str, Any] = {"type": "array", "items": _ref("ConfigChange"), "description": (
    "every change applied to the live run (POST update), in order")}


def _schemas() -> dict[str, Any]:
    metrics = {"type": "object", "properties": {"epoch": {"type": "integer"}},
               "additionalProperties": NUMBER_OR_NULL,
               "description": "One epoch: epoch, train_loss, train_accuracy (train_mae for regression), val_loss, "
                              "val_accuracy (val_mae), learning_rate, time_per_epoch. A non-finite number is null."}
    best = {"type": "object", "additionalProperties": NUMBER_OR_NULL,
            "description": "loss, accuracy (mae for regression) and epoch of the best epoch by val_loss; {} before one."}
    training_state = {"enum": list(TRAINING_STATES), "description": (
        "pending until the worker is ready (also while resuming from a checkpoint), then running or paused, "
        "then how it ended; interrupted: the server stopped meanwhile.")}
    progress = _obj({
        "current_epoch": NON_NEGATIVE, "total_epochs": {"type": "integer", "minimum": 1},
        "training_state": _ref("TrainingState"),
        "latest_metrics": _ref("Metrics"), "best_metrics": _ref("BestMetrics"), "current_batch": NON_NEGATIVE,
        "total_batches": NON_NEGATIVE, "reason": STRING_OR_NULL, "error": STRING_OR_NULL,
        "logger_errors": LOGGER_ERRORS, "config_changes": CONFIG_CHANGES,
    }, ("current_epoch", "total_epochs", "training_state", "latest_metrics", "best_metrics"))
    summary = _obj({
        "task_id": {"type": "string"}, "name": STRING_OR_NULL, "training_state": _ref("TrainingState"),
        "current_epoch": NON_NEGATIVE, "total_epochs": {"type": "integer"}, "best_metrics": _ref("BestMetrics"),
        "reason": STRING_OR_NULL, "error": STRING_OR_NULL, "created_at": STRING_OR_NULL, "finished_at": STRING_OR_NULL,
        "watchers": NON_NEGATIVE, "output_path": STRING_OR_NULL, "logger_errors": LOGGER_ERRORS,
        "sweep_id": {**STRING_OR_NULL, "description": "the sweep this task is a trial of (GET sweep/{sweep_id})"},
        "trial": {"type": ["integer", "null"], "description": "its trial number in that sweep"},
        "loggers": {"type": "object", "description": (
            "where the task's loggers write (only for a task with loggers, and only those that did not fail): "
            "tensorboard, a folder relative to the models directory; mlflow, {tracking_uri, run_id, experiment_id}")},
    }, ("task_id", "training_state", "current_epoch", "total_epochs"))
    details = copy.deepcopy(summary)
    details["properties"].update({
        "config": _ref("TrainingConfig"), "progress": _ref("Progress"), "seed": {"type": ["integer", "null"]},
        "samples": {"type": "object", "additionalProperties": {"type": "integer"}},
        "output_dir": {**STRING_OR_NULL, "description": "where output_path landed, as /models/<folder>"},
        "replaced_by": {**STRING_OR_NULL, "description": (
            "the task whose run replaced this task's files in output_path (started with overwrite); "
            "then its evaluation answers 410")},
    })
    error = _obj({
        "success": {"const": False}, "message": {"type": "string", "description": "what is wrong and what to do"},
        "errors": {"type": "array", "items": _ref("FieldError")},
    }, ("success", "message"))
    state = _ref("TrainingState")
    common = {"task_id": {"type": "string"}, "progress": _ref("Progress")}
    # Every event kind, and every object an event holds, is a named component: a generator that
    # names inline schemas itself gives two of them one name (and drops one).
    events = {
        "ProgressEvent": _obj({"type": {"const": "progress"}, **common, "improved": {"type": "boolean"}},
                              ("type", "task_id", "progress")),
        "StateEvent": _obj({"type": {"const": "state"}, **common, "old": {"type": ["string", "null"]}, "new": state,
                            "training_state": state, "reason": STRING_OR_NULL}, ("type", "task_id", "new", "training_state")),
        "CompleteEvent": _obj({"type": {"const": "complete"}, **common, "training_state": state,
                               "best_metrics": _ref("BestMetrics"), "reason": STRING_OR_NULL},
                              ("type", "task_id", "training_state", "best_metrics")),
        "ErrorEvent": _obj({"type": {"const": "error"}, **common, "training_state": state, "message": STRING_OR_NULL},
                           ("type", "task_id", "training_state")),
        "ConfigChangeEvent": _obj({"type": {"const": "config_change"}, **common, "change": _ref("ConfigChange")},
                                  ("type", "task_id", "change", "progress")),
    }
    stream_event = {"description": "The JSON in one event's data line.", "oneOf": [_ref(name) for name in events]}
    live = copy.deepcopy(summary)
    live["properties"].update({
        "model_type": STRING_OR_NULL, "latest_metrics": _ref("Metrics"),
        "val_loss": {"type": "array", "items": NUMBER_OR_NULL, "maxItems": SPARK_POINTS, "description": (
            f"the validation loss of the last {SPARK_POINTS} epochs, oldest first (null where not finite)")},
        "elapsed_s": {**NUMBER_OR_NULL, "description": "seconds of training so far (pauses not counted)"},
        "eta_s": {**NUMBER_OR_NULL, "description": (
            "estimated seconds of training left, at the pace of the last epochs; null before the first epoch "
            "and once the task has ended")},
    })
    live["required"] += ["model_type", "latest_metrics", "val_loss", "elapsed_s", "eta_s"]
    tasks_events = {
        "TasksSnapshotEvent": _obj({"type": {"const": "snapshot"}, "tasks": {
            "type": "array", "items": _ref("TaskLive"), "description": "every task, newest first"}}, ("type", "tasks")),
        "TaskChangeEvent": _obj({"type": {"const": "task"}, "change": {"enum": list(CHANGES)},
                                 "task": _ref("TaskLive")}, ("type", "change", "task")),
        "TaskDeletedEvent": _obj({"type": {"const": "deleted"}, "task_id": {"type": "string"}}, ("type", "task_id")),
    }
    tasks_stream_event = {"description": "The JSON in one event's data line of stream-tasks.",
                          "oneOf": [_ref(name) for name in tasks_events]}
    return {
        "TrainingState": training_state, "BestMetrics": best, **events, **_change_schemas(), "StreamEvent": stream_event,
        "TaskLive": live, **tasks_events, "TasksStreamEvent": tasks_stream_event,
        "LoggerError": _obj({"logger": {"type": "string"}, "message": {"type": "string"}}, ("logger", "message")),
        "FieldError": _obj({"field": {"type": "string"}, "value": {}, "message": {"type": "string"}}, ("field", "message")),
        "TrainingConfig": config_schema(), "StartRequest": start_request_schema(), "Metrics": metrics,
        "Progress": progress, "TaskSummary": summary, "TaskDetails": details, "Error": error,
        "StartResponse": _success({"task_id": {"type": "string"}, "message": {"type": "string"},
                                   "config": _ref("TrainingConfig"), "output_dir": details["properties"]["output_dir"],
                                   "samples": details["properties"]["samples"], "data_task": STRING_OR_NULL,
                                   "parameters": {"type": ["integer", "null"],
                                                  "description": "the model's parameter count"}},
                                  ("task_id", "message", "config")),
        "ProgressResponse": _success({"task_id": {"type": "string"}, "progress": _ref("Progress")}, ("task_id", "progress")),
        "HistoryResponse": _success({"task_id": {"type": "string"}, "history": {"type": "array", "items": _ref("Metrics")},
                                     "config_changes": CONFIG_CHANGES}, ("task_id", "history")),
        "UpdateResponse": _success({"task_id": {"type": "string"}, "message": {"type": "string"},
                                    "change": _ref("ConfigChange"), "training_state": _ref("TrainingState"),
                                    "progress": _ref("Progress")}, ("task_id", "message", "change", "progress")),
        "ControlResponse": _success({"task_id": {"type": "string"}, "message": {"type": "string"},
                                     "training_state": _ref("TrainingState"),
                                     "progress": _ref("Progress")}, ("task_id", "message", "training_state", "progress")),
        "TasksResponse": _success({"tasks": {"type": "array", "items": _ref("TaskSummary")}}, ("tasks",)),
        "TaskResponse": _success({"task_id": {"type": "string"}, "task": _ref("TaskDetails")}, ("task_id", "task")),
        "EvaluationResponse": _success({"task_id": {"type": "string"}, "evaluation": {"type": "object", "description": (
            "the finished run's evaluation.json: for classification the confusion matrix, per-class report, "
            "accuracy and ROC-AUC; for regression MAE, RMSE, R^2 and residuals")}}, ("task_id", "evaluation")),
        "DeleteResponse": _success({"task_id": {"type": "string"}, "message": {"type": "string"}}, ("task_id", "message")),
        **sweep_schemas(config_schema()),
    }


ERRORS = {
    400: "invalid config, data or path; `errors` names each field",
    401: "no or a wrong token",
    403: "no or a wrong token, or the server's Authorizer does not allow this user the action "
         "(resource `epoch_training`: `read` for GET requests, `write` for the others)",
    404: "no such task",
    409: "the task's state does not allow the action (or output_path is taken); the message says what to do",
    410: "another task's run replaced this task's files in its output_path; the message names that task",
    413: f"the request body is larger than {MAX_BODY_BYTES:,} bytes",
    429: "max_running_tasks are running", 500: "the worker process could not start",
    503: "the server is shutting down", 504: "the worker did not answer in time",
}


def _operation(summary: str, ok: str, codes: tuple[int, ...], description: str = "",
               body: Optional[str] = None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "success", "content": {"application/json": {"schema": _ref(ok)}}}}
    for code in sorted((401, 403, *codes)):
        responses[str(code)] = {"description": ERRORS[code], "content": {"application/json": {"schema": _ref("Error")}}}
    op: dict[str, Any] = {"summary": summary, "description": description or summary, "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def _stream_operation(summary: str, event: str, codes: tuple[int, ...], description: str) -> dict[str, Any]:
    """An SSE operation: a stream of text (one JSON object per event's data line, never one document),
    so a generated client reads it as text; ``x-event-schema`` is the JSON of each event."""
    op = _operation(summary, event, codes, description + (
        " A `: keepalive` comment when idle. Non-finite numbers are null. Read it with an EventSource or "
        "line by line, not as one JSON document."))
    op["responses"]["200"] = {"description": f"the event stream; each event's data is a {event}", "content": {
        "text/event-stream": {"schema": {"type": "string"}, "x-event-schema": _ref(event)}}}
    return op


TASK_PARAM = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "a task id as start returned it: epoch_training_YYYYMMDD_HHMMSS[_N]",
              "example": "epoch_training_20240101_120000"}
CONTROL = (404, 409, 504)


@lru_cache(maxsize=8)
def _document(server_url: str) -> dict[str, Any]:
    def task_path(**ops: Any) -> dict[str, Any]:
        return {"parameters": [TASK_PARAM], **ops}

    paths = {
        "/start": {"post": _operation(
            "Validate a config against its data and start a task", "StartResponse", (400, 409, 413, 429, 500, 503, 504),
            "Answers once the worker has loaded the data and built the model. 409 when a running task writes "
            "to output_path, or when output_path holds another run's checkpoints and `overwrite` is not true "
            "(the message names that task and the ways out).", body="StartRequest")},
        "/progress/{task_id}": task_path(get=_operation("A task's progress", "ProgressResponse", (404,))),
        "/history/{task_id}": task_path(get=_operation("A task's per-epoch history", "HistoryResponse", (404,))),
        "/stream-progress/{task_id}": task_path(get=_stream_operation(
            "Server-Sent Events of a task", "StreamEvent", (404,),
            "A `text/event-stream`: `data: <json>` lines, each a StreamEvent: the current progress first, then "
            "`progress` per epoch, `state` per state change, `config_change` per change applied (POST update), "
            "and finally `complete` (final state, best metrics) or `error`.")),
        "/stream-tasks": {"get": _stream_operation(
            "Server-Sent Events of every task's summary", "TasksStreamEvent", (), (
                "A `text/event-stream` that stays open: `data: <json>` lines, each a TasksStreamEvent: first a "
                "`snapshot` of every task (newest first), then a `task` event with the whole summary of one task "
                "each time it is created, changes state or ends an epoch, and `deleted` when one is forgotten. "
                "One connection follows all tasks; a client that reconnects starts again from a snapshot."))},
        "/pause/{task_id}": task_path(post=_operation("Pause within one batch", "ControlResponse", CONTROL)),
        "/resume/{task_id}": task_path(post=_operation(
            "Resume a paused task, or continue an ended one from its checkpoint", "ControlResponse",
            (*CONTROL, 429, 500, 503),
            "A paused task resumes within one batch. An interrupted, stopped or failed task with checkpoints "
            "continues in a new worker (training_state running once it is ready); a stop or delete meanwhile "
            "cancels it (409). Concurrent requests: the losers get 409 at once and change nothing.")),
        "/stop/{task_id}": task_path(post=_operation(
            "Stop within one batch (artifacts are written)", "ControlResponse", CONTROL,
            "A worker that has not ended stop_timeout seconds after the request is killed. A task resuming "
            "from its checkpoint is stopped at once (its new worker is ended).")),
        "/update/{task_id}": task_path(post=_operation(
            "Change settings of a running or paused task", "UpdateResponse", (400, 404, 409, 413, 504),
            "The body names the fields to change (UpdateRequest). The run applies them between two batches (at "
            "once while paused) and answers with the applied change, which is also recorded in the task's "
            "progress and history (`config_changes`), sent to stream clients as a `config_change` event and "
            "saved in its checkpoints. 400 names a field that cannot change (listing those that can) or a bad "
            "value, and changes nothing; 409 when the task is not running or paused.", body="UpdateRequest")),
        "/tasks": {"get": {**_operation("Every task of this server, oldest first", "TasksResponse", (400,)),
                           "parameters": [
                               {"name": "state", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "keep tasks in any of these training states (comma-separated; the "
                                               "parameter may repeat); 400 names the allowed ones"},
                               {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "keep tasks whose name contains this (any case)"},
                               {"name": "sweep_id", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "keep the trials of this sweep"}]}},
        "/evaluation/{task_id}": task_path(get=_operation(
            "A finished task's evaluation on its validation split", "EvaluationResponse", (404, 409, 410),
            "409 while the task runs, when it has none (no output_path, or it ended before its first "
            "epoch), or when its evaluation.json is unreadable (damaged, or a link, which is not followed); "
            "the message says why. 410 when a task started later with `overwrite` replaced its "
            "files (the message names it).")),
        "/tasks/{task_id}": task_path(
            get=_operation("One task with its config", "TaskResponse", (404,)),
            delete=_operation("Forget an ended task (its model files and checkpoints stay)", "DeleteResponse",
                              (404, 409))),
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {
            "description": "success", "content": {"application/json": {"schema": {"type": "object"}}}},
            **{str(c): {"description": ERRORS[c], "content": {"application/json": {"schema": _ref("Error")}}}
               for c in (401, 403)}}}},
    }
    paths.update(sweep_paths(_operation, _stream_operation))
    return {
        "openapi": "3.1.0",
        "info": {"title": "epoch-widgets training API", "version": __version__, "description": (
            "Train deep-learning models epoch by epoch in worker processes of a Jupyter server, and follow "
            "them with Server-Sent Events. Every answer is `{\"success\": ...}` JSON; errors carry `message` "
            "and, for invalid input, `errors` naming each field.")},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"token_header": []}, {"token_query": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the Jupyter server's token"},
                "token_header": {"type": "apiKey", "in": "header", "name": "Authorization",
                                 "description": "`token <the Jupyter server's token>`"},
                "token_query": {"type": "apiKey", "in": "query", "name": "token",
                                "description": "for EventSource clients, which cannot send headers"},
            },
        },
    }


def openapi_document(server_url: str = "/api/v1/epoch-training") -> dict[str, Any]:
    """The document, its paths relative to ``server_url`` (the API's URL path on this server)."""
    return copy.deepcopy(_document(server_url))
