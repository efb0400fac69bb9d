"""The one training-config schema: every field's default, limits and help, validated by pydantic.

The panel's controls, the HTTP API's validation and the saved artifacts are all built from
:class:`TrainingConfig`; :func:`config_fields` is the introspection face they use.
"""
from __future__ import annotations

import difflib
import json
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

import annotated_types
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .config_values import (MAX_COLUMN_NAME, MAX_COLUMNS, MAX_DEVICES, MAX_DEVICES_TEXT, MAX_NAME, MAX_PATH,
                            MAX_REPORTED, MAX_URI, ColumnName, listed_twice, parse_devices, preview, short_text,
                            shown_value)
from .redaction import redacted_config

MODEL_TYPES = ("mlp", "cnn", "lstm", "gru")
SEQUENCE_MODELS = ("cnn", "lstm", "gru")
SCHEDULERS = ("step", "plateau", "cosine", "none")
# Which config fields belong to which scheduler: the panel shows only the chosen one's.
SCHEDULER_PARAMS: dict[str, tuple[str, ...]] = {
    "step": ("step_size", "gamma"),
    "plateau": ("patience", "factor"),
    "cosine": ("T_max", "eta_min"),
    "none": (),
}


class ConfigError(ValueError):
    """A config (or config-vs-data) problem; ``errors`` lists each as field/value/message."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        lines = [f"  - {e['field']}: {e['message']}" for e in errors]
        noun = "problem" if len(errors) == 1 else "problems"
        super().__init__(f"Invalid training config ({len(errors)} {noun}):\n" + "\n".join(lines))

    @classmethod
    def single(cls, field: str, value: Any, message: str) -> "ConfigError":
        return cls([{"field": field, "value": value, "message": message}])


def _g(group: str, help: str, **extra: Any) -> dict[str, Any]:
    return {"group": group, "help": help, **extra}


class TrainingConfig(BaseModel):
    """Every setting of one training run. Unknown keys are refused."""

    # strict: "10" for an int or true for a float is a wrong type, not something to coerce.
    # NaN and infinities are refused in every float field: no setting means them, and JSON has no
    # literal for them (the HTTP API and saved configs must stay standard JSON).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False,
                              protected_namespaces=())

    # --- run identity ---
    name: str = Field("Deep learning model training", max_length=MAX_NAME, json_schema_extra=_g("run", "Name kept with the run and its artifacts.", label="Run name"))
    algorithm_type: Literal["deep_learning"] = Field("deep_learning", json_schema_extra=_g("run", "Only 'deep_learning' is supported.", label="Algorithm", advanced=True))

    # --- data ---
    feature_columns: list[ColumnName] = Field(default_factory=list, max_length=MAX_COLUMNS, json_schema_extra=_g("data", "Input columns; empty means every column except the target.", label="Feature columns"))
    target_column: Optional[str] = Field(None, max_length=MAX_COLUMN_NAME, json_schema_extra=_g("data", "The column to predict.", label="Target column"))
    task: Literal["auto", "classification", "regression"] = Field("auto", json_schema_extra=_g("data", "auto: strings, booleans, categories and integers with at most 20 distinct values are classes; otherwise regression.", label="Task"))
    validation_split: float = Field(0.2, gt=0.0, lt=1.0, json_schema_extra=_g("data", "Fraction held out for validation (the last rows for sequence models).", label="Validation fraction"))
    missing_values: Literal["error", "impute"] = Field("error", json_schema_extra=_g("data", "error: refuse features with missing values; impute: training median / an 'unknown' category.", label="Missing values", advanced=True))
    sequence_length: int = Field(10, ge=2, le=10_000, json_schema_extra=_g("data", "Rows per window for cnn/lstm/gru; the window predicts its last row's target.", label="Window length (rows)"))
    data_path: Optional[str] = Field(None, max_length=MAX_PATH, json_schema_extra=_g("data", "CSV, TSV (optionally compressed, e.g. .csv.gz) or Parquet file with the data (HTTP API, panel and command line).", label="Data file"))
    streaming: Literal["auto", True, False] = Field("auto", json_schema_extra=_g("data", "Read a table file in blocks instead of whole: true streams, false reads it into memory, auto streams when the table would not fit memory_budget_mb. DataFrames stay in memory unless true.", label="Stream the data", advanced=True))
    memory_budget_mb: int = Field(1024, ge=64, le=1_048_576, json_schema_extra=_g("data", "MiB the data may take while training: streaming='auto' streams a table that would need more, and a stream's statistics pass and shuffle buffer stay within it.", label="Data memory budget (MiB)", advanced=True))

    # --- model ---
    model_type: Literal["mlp", "cnn", "lstm", "gru"] = Field("mlp", json_schema_extra=_g("model", "mlp works on rows; cnn, lstm and gru on windows of sequence_length rows.", label="Model"))
    hidden_units: list[int] = Field(default_factory=lambda: [64, 32], min_length=1, max_length=16, json_schema_extra=_g("model", "Units (channels for cnn) of each hidden layer.", label="Hidden layers"))
    dropout_rate: float = Field(0.2, ge=0.0, lt=1.0, json_schema_extra=_g("model", "Dropout after each hidden layer.", label="Dropout"))

    # --- training ---
    epochs: int = Field(100, ge=1, le=1_000_000, json_schema_extra=_g("training", "Number of passes over the training data.", label="Epochs"))
    batch_size: int = Field(32, ge=1, le=1_048_576, json_schema_extra=_g("training", "Samples per optimisation step.", label="Batch size"))
    learning_rate: float = Field(0.001, gt=0.0, le=10.0, json_schema_extra=_g("training", "The rate of the first epoch; the schedule changes it from there.", label="Learning rate"))
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", json_schema_extra=_g("training", "adam, adamw (Adam with decoupled weight decay) or sgd.", label="Optimizer"))
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1, json_schema_extra=_g("training", "Random seed; a seeded run is reproducible, also across pause/resume.", label="Random seed"))
    backend: Literal["torch", "tensorflow"] = Field("torch", json_schema_extra=_g("training", "Deep-learning framework: torch (PyTorch) or tensorflow (Keras 3).", label="Framework"))
    device: str = Field("auto", max_length=32, json_schema_extra=_g("training", "auto, cpu, cuda or cuda:N.", label="Device", advanced=True))
    devices: Union[int, Annotated[list[int], Field(max_length=MAX_DEVICES)],
                   Annotated[str, Field(max_length=MAX_DEVICES_TEXT)]] = Field(1, json_schema_extra=_g(
        "training", "How many devices train the model: a count (2), GPU indices ([0, 1] or '0,1'), or 'auto' "
        "(every visible GPU; 1 without a GPU). With several, batch_size is the global batch, split evenly "
        "between them (it must divide by their number) and learning_rate is unchanged. torch runs one "
        "process per device (DistributedDataParallel; with device='cpu' a count starts that many CPU "
        "processes); tensorflow uses MirroredStrategy.", kind="str", label="Number of devices", advanced=True))
    mixed_precision: bool = Field(False, json_schema_extra=_g("training", "Compute in 16-bit floats where safe: TensorFlow's mixed_float16 policy; PyTorch autocast (bfloat16 on CPU, bfloat16 or float16 on GPU). Faster on recent GPUs.", label="Mixed precision", advanced=True))
    cuda_graphs: bool = Field(False, json_schema_extra=_g("training", "PyTorch on one GPU: replay each batch's forward and backward pass as CUDA graphs (torch.compile's reduce-overhead mode), which removes most per-batch launch overhead of small models. A seeded run repeats itself but differs from one without (other dropout masks). Needs backend='torch', device='cuda' and devices=1.", label="CUDA graphs", advanced=True))

    # --- early stopping ---
    early_stopping: bool = Field(True, json_schema_extra=_g("early_stopping", "Stop when val_loss stops improving.", label="Stop early"))
    early_stopping_patience: int = Field(10, ge=1, le=1_000_000, json_schema_extra=_g("early_stopping", "Epochs without improvement before stopping.", label="Patience (epochs)"))
    min_delta: float = Field(0.001, ge=0.0, json_schema_extra=_g("early_stopping", "An epoch improves only if val_loss < best - min_delta.", label="Minimum improvement", advanced=True))
    restore_best_weights: bool = Field(True, json_schema_extra=_g("early_stopping", "Keep the weights of the best epoch at the end.", label="Keep best weights", advanced=True))

    # --- learning-rate schedule ---
    learning_rate_scheduler: Literal["step", "plateau", "cosine", "none"] = Field("step", json_schema_extra=_g("scheduler", "How the learning rate changes over the epochs: step (multiply by the decay factor every N epochs), plateau (reduce when val_loss stalls), cosine (follow a cosine down to the minimum rate) or none.", label="Schedule"))
    step_size: int = Field(30, ge=1, json_schema_extra=_g("scheduler", "step: epochs between decays.", scheduler="step", label="Decay every (epochs)"))
    gamma: float = Field(0.1, gt=0.0, le=1.0, json_schema_extra=_g("scheduler", "step: decay factor.", scheduler="step", label="Decay factor"))
    patience: int = Field(5, ge=0, json_schema_extra=_g("scheduler", "plateau: epochs without val_loss improvement before reducing.", scheduler="plateau", label="Wait (epochs)"))
    factor: float = Field(0.5, gt=0.0, lt=1.0, json_schema_extra=_g("scheduler", "plateau: multiply the rate by this.", scheduler="plateau", label="Reduction factor"))
    T_max: int = Field(100, ge=1, json_schema_extra=_g("scheduler", "cosine: epochs of a half period.", scheduler="cosine", label="Half period (epochs)"))
    eta_min: float = Field(0.0001, ge=0.0, json_schema_extra=_g("scheduler", "cosine: lowest rate.", scheduler="cosine", label="Minimum rate"))

    # --- artifacts ---
    output_path: Optional[str] = Field(None, max_length=MAX_PATH, json_schema_extra=_g("output", "Folder for the model, preprocessing and history; none writes nothing.", label="Save to folder"))

    # --- checkpoints (written only with an output_path; see trainer/checkpoints.py) ---
    checkpoints: bool = Field(True, json_schema_extra=_g("output", "Write checkpoints to output_path/checkpoints while training, so Trainer.from_checkpoint continues a run after a crash or restart.", label="Write checkpoints", advanced=True))
    checkpoint_every_epochs: int = Field(1, ge=1, le=1_000_000, json_schema_extra=_g("output", "Checkpoint after every N-th epoch (also when the run pauses, stops or ends).", label="Checkpoint every N epochs", advanced=True))
    checkpoint_every_batches: Optional[int] = Field(None, ge=1, le=1_000_000_000, json_schema_extra=_g("output", "Also checkpoint every N batches within an epoch; empty: only at epoch ends.", label="Checkpoint every N batches", advanced=True))
    checkpoint_every_seconds: Optional[float] = Field(None, gt=0.0, json_schema_extra=_g("output", "Also checkpoint once this many seconds of training passed since the last one; empty: no time cadence.", label="Checkpoint every N seconds", advanced=True))
    checkpoint_keep: int = Field(2, ge=1, le=1000, json_schema_extra=_g("output", "How many recent checkpoints to keep; the best epoch's weights are kept besides them.", label="Checkpoints kept", advanced=True))

    # --- experiment tracking (trainer/loggers/): observers that never stop the run ---
    # No more loggers exist than this limit (and each may be listed once).
    loggers: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list, max_length=8, json_schema_extra=_g(
        "tracking", "Where else each epoch's metrics go: tensorboard writes event files to output_path/tensorboard "
        "(needs output_path); mlflow logs the config as params, the metrics per epoch and the saved model to "
        "mlflow_tracking_uri (default: a local store beside output_path, in its parent's mlruns/ folder). "
        "Needs pip install 'epoch-widgets[tracking]'. A logger that fails is reported and never stops the run.",
        label="Log to"))
    mlflow_tracking_uri: Optional[str] = Field(None, max_length=MAX_URI, json_schema_extra=_g(
        "tracking", "MLflow tracking server or store, e.g. http://mlflow.example:5000; empty: the "
        "MLFLOW_TRACKING_URI environment variable, else a local SQLite store beside output_path.",
        label="MLflow tracking URI"))

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, v: list[int]) -> list[int]:
        bad = [u for u in v if u < 1 or u > 65536]
        if bad:
            raise ValueError(f"every layer needs 1..65536 units, got {bad}")
        return v

    @field_validator("loggers")
    @classmethod
    def _unique_loggers(cls, v: list[str]) -> list[str]:
        twice = listed_twice(v)
        if twice:
            raise ValueError(f"loggers listed twice: {twice}")
        return v

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _tracking_uri(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.strip():
            raise ValueError("give a tracking URI such as http://host:5000 or sqlite:///mlflow.db, or leave it "
                             "empty (None) for MLFLOW_TRACKING_URI or the local store")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return v

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, v: Any) -> Union[int, list[int], str]:
        return parse_devices(v)

    @field_validator("cuda_graphs")
    @classmethod
    def _cuda_graphs(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("backend") == "tensorflow":
            raise ValueError("CUDA graphs are a PyTorch option (the tensorflow backend compiles its own graphs); "
                             "set cuda_graphs=False or backend='torch'")
        devices = info.data.get("devices", 1)
        if v and not (devices == 1 or isinstance(devices, list) and len(devices) == 1):
            raise ValueError(f"CUDA graphs train on one device, and devices is {devices!r}; set devices=1 "
                             f"or cuda_graphs=False")
        return v

    @field_validator("feature_columns")
    @classmethod
    def _unique_features(cls, v: list[str]) -> list[str]:
        dup = listed_twice(v)
        if dup:
            shown = dup[:MAX_REPORTED]
            more = f" and {len(dup) - len(shown)} more" if len(dup) > len(shown) else ""
            raise ValueError(f"columns listed twice: {shown}{more}")
        return v

    @field_validator("target_column")
    @classmethod
    def _target_not_feature(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if v is not None and v in info.data.get("feature_columns", ()):
            raise ValueError(f"{v!r} is also in feature_columns; remove it from one of them")
        return v

    @field_validator("feature_columns")
    @classmethod
    def _features_without_target(cls, v: list[str], info: ValidationInfo) -> list[str]:
        # At construction the target is validated later (above); this catches assigning features.
        target = info.data.get("target_column")
        if target is not None and target in v:
            raise ValueError(f"the target column {target!r} cannot also be a feature; remove it")
        return v

    # ------------------------------------------------------------------ construction
    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _to_config_error(exc, data) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        """Build from a plain dict (the API's JSON body), refusing unknown keys."""
        if not isinstance(data, dict):
            raise ConfigError.single("<config>", data, f"expected a JSON object, got {type(data).__name__}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "TrainingConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError.single("<config>", text[:80], f"not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON values, credentials included (what a run needs to connect)."""
        return self.model_dump(mode="json")

    def to_saved_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` fit to save, log or show: credentials in URIs replaced by ``***``."""
        return redacted_config(self.to_dict())

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A validated copy with some fields changed."""
        return TrainingConfig(**{**self.to_dict(), **changes})

    @property
    def is_sequence_model(self) -> bool:
        return self.model_type in SEQUENCE_MODELS

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise _to_config_error(exc, {name: value}) from None


# ---------------------------------------------------------------------- errors

def _to_config_error(exc: ValidationError, data: dict[str, Any]) -> ConfigError:
    known = list(TrainingConfig.model_fields)
    errors = []
    found = exc.errors()
    # A huge request can hold thousands of problems: the first ones say enough, and listing (and
    # spelling out) each would cost more than checking them.
    for err in found[:MAX_REPORTED]:
        loc = [short_text(str(p)) for p in err.get("loc", ())]
        field = loc[0] if loc else "<config>"
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
            errors.append({"field": field, "value": shown_value(value), "message": f"unknown field{hint}"})
            continue
        if field in TrainingConfig.model_fields:
            value = data.get(field, value)
        where = field + "".join(f"[{p}]" for p in loc[1:])
        allowed = _allowed(field)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        limit = (err.get("ctx") or {}).get("max_length")
        if err["type"] in _TOO_LONG and limit is not None:
            unit = "characters" if err["type"] == "string_too_long" else "items"
            msg = f"too long: at most {limit} {unit} (the size limit of this field); shorten it"
        text = f"got {preview(value)}: {msg}"
        # Our own validators' messages already say what is wrong and what to do.
        if allowed and allowed not in text and err["type"] not in ("value_error", *_TOO_LONG):
            text += f" (allowed: {allowed})"
        errors.append({"field": where, "value": shown_value(value), "message": text})
    if len(found) > MAX_REPORTED:
        rest = len(found) - MAX_REPORTED
        errors.append({"field": "<config>", "value": None,
                       "message": f"and {rest} more problem{'s' if rest > 1 else ''} like these; fix the ones above first"})
    return ConfigError(errors)


_TOO_LONG = ("string_too_long", "too_long")


# What a field without choices or bounds accepts, for error messages.
_TYPE_HINTS = {"list[int]": "a list of integers, e.g. [64, 32]", "list[str]": "a list of column names",
               "bool": "true or false", "str": "a string"}


def _allowed(name: str) -> str:
    spec = FIELD_SPECS.get(name) if "FIELD_SPECS" in globals() else None
    if spec is None:
        return ""
    if spec.choices:
        return " | ".join(repr(c) for c in spec.choices)
    if spec.type in _TYPE_HINTS:
        return _TYPE_HINTS[spec.type] + (" or null" if spec.optional else "")
    lo = f"{'>' if spec.exclusive_min else '>='} {spec.minimum}" if spec.minimum is not None else ""
    hi = f"{'<' if spec.exclusive_max else '<='} {spec.maximum}" if spec.maximum is not None else ""
    bounds = " and ".join(b for b in (lo, hi) if b)
    return f"{spec.type} {bounds}" if bounds else ""


# ---------------------------------------------------------------------- introspection

@dataclass(frozen=True)
class FieldSpec:
    """What a UI or API needs to know about one config field."""

    name: str
    type: str            # "int" | "float" | "bool" | "str" | "choice" | "list[int]" | "list[str]" | "list[choice]"
    default: Any
    help: str
    group: str
    choices: tuple[Any, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    exclusive_min: bool = False
    exclusive_max: bool = False
    optional: bool = False
    scheduler: Optional[str] = None   # set for a scheduler's own parameters


def _field_spec(name: str) -> FieldSpec:
    info = TrainingConfig.model_fields[name]
    ann = info.annotation
    text = str(ann)
    optional = type(None) in typing.get_args(ann)
    choices: tuple[Any, ...] = ()
    if typing.get_origin(ann) is list and typing.get_origin(typing.get_args(ann)[0]) is Literal:
        choices = typing.get_args(typing.get_args(ann)[0])
        kind = "list[choice]"
    elif "Literal" in text:
        choices = tuple(ann.__args__) if not optional else tuple(a for a in ann.__args__[0].__args__)
        kind = "choice"
    elif typing.get_origin(ann) is list:
        item = typing.get_args(ann)[0]
        base = typing.get_args(item)[0] if typing.get_origin(item) is Annotated else item
        kind = f"list[{base.__name__}]"
    elif "bool" in text:
        kind = "bool"
    elif "int" in text:
        kind = "int"
    elif "float" in text:
        kind = "float"
    else:
        kind = "str"
    lo = hi = None
    ex_lo = ex_hi = False
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, ex_lo = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, ex_hi = m.lt, True
    extra = info.json_schema_extra or {}
    # A field accepting several JSON types (devices) names the one its controls edit.
    kind = extra.get("kind", kind)
    default = info.get_default(call_default_factory=True)
    return FieldSpec(name=name, type=kind, default=default, help=extra.get("help", ""),
                     group=extra.get("group", "other"), choices=choices, minimum=lo, maximum=hi,
                     exclusive_min=ex_lo, exclusive_max=ex_hi, optional=optional,
                     scheduler=extra.get("scheduler"))


FIELD_SPECS: dict[str, FieldSpec] = {n: _field_spec(n) for n in TrainingConfig.model_fields}


def config_fields() -> list[FieldSpec]:
    """Every config field with its type, default, range, choices and help, in schema order."""
    return list(FIELD_SPECS.values())


def as_config(config: Union[TrainingConfig, dict[str, Any]]) -> TrainingConfig:
    """``config`` as a TrainingConfig (a dict is validated); ConfigError for anything else."""
    if isinstance(config, dict):
        return TrainingConfig.from_dict(config)
    if not isinstance(config, TrainingConfig):
        raise ConfigError.single("config", type(config).__name__, "expected a TrainingConfig or a dict")
    return config


def draw_seed(config: TrainingConfig) -> int:
    """The config's seed, or a fresh one for the run to record (so it can be reproduced)."""
    if config.seed is not None:
        return config.seed
    return int(np.random.SeedSequence().entropy % 2**32)
