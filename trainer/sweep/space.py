"""The search space of a sweep: distributions over ``TrainingConfig`` fields, checked up front.

``{"learning_rate": log_uniform(1e-4, 1e-1), "batch_size": choice([32, 64])}`` names fields of the
config schema; :func:`check_space` refuses a field that does not exist, one that cannot vary (where
or how a run is stored, tracked or placed, and what data it reads), a distribution that does not
fit the field's type and a range or value outside the field's limits, each as a ``ConfigError``
naming the field. :func:`optuna_distributions` turns the space into Optuna's distributions;
``choice`` values that Optuna cannot store (lists such as ``hidden_units``) are stored as their
JSON text and decoded by :func:`decode_params`.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Union

from ..config import FIELD_SPECS, ConfigError, FieldSpec, TrainingConfig

# Fields a sweep may not vary: they say where a run's data, files and trackers are, or where it is
# computed, not how the model learns, and trials must stay comparable (same data, same split).
FIXED = frozenset({"name", "algorithm_type", "feature_columns", "target_column", "task", "validation_split",
                   "missing_values", "data_path", "backend", "device", "devices", "mixed_precision", "cuda_graphs",
                   "seed", "output_path", "checkpoints", "checkpoint_every_epochs", "checkpoint_every_batches",
                   "checkpoint_every_seconds", "checkpoint_keep", "loggers", "mlflow_tracking_uri"})
PRIMITIVES = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Uniform:
    """A number drawn evenly between ``low`` and ``high`` (both included); ``log``: evenly in log space."""

    low: float
    high: float
    log: bool = False

    def __repr__(self) -> str:
        return f"{'log_uniform' if self.log else 'uniform'}({self.low!r}, {self.high!r})"


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[Any, ...]

    def __repr__(self) -> str:
        return f"choice({list(self.values)!r})"


Distribution = Union[Uniform, Choice]


def uniform(low: float, high: float) -> Uniform:
    """A number between ``low`` and ``high``: a float, or an integer for an integer field."""
    return Uniform(low, high, False)


def log_uniform(low: float, high: float) -> Uniform:
    """A number between ``low`` and ``high`` (both > 0), evenly spread in log space (learning rates)."""
    return Uniform(low, high, True)


def choice(values: Any) -> Choice:
    """One of ``values`` (a list), e.g. ``choice([[64, 32], [128, 64]])`` for ``hidden_units``."""
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise ConfigError.single("choice", values, "choice() takes a list of values, e.g. choice([32, 64, 128])")
    return Choice(tuple(values))


def variable_fields() -> list[FieldSpec]:
    """The config fields a sweep may vary (every field but :data:`FIXED`), in schema order, with
    their types, limits and choices: what a form offers to vary."""
    return [spec for name, spec in FIELD_SPECS.items() if name not in FIXED]


def check_space(config: TrainingConfig, space: Any) -> dict[str, Distribution]:
    """``space`` checked against the schema and ``config`` (see the module docstring); every
    problem found is listed in one ConfigError."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError.single("space", _shown(space), "give the fields to vary as a dict, e.g. "
                                 "{'learning_rate': log_uniform(1e-4, 1e-1), 'batch_size': choice([32, 64])}")
    errors: list[dict[str, Any]] = []
    for name, dist in space.items():
        problem = _problem(config, name, dist)
        if problem:
            errors.append({"field": str(name), "value": _shown(dist), "message": problem})
    if errors:
        raise ConfigError(errors)
    return dict(space)


def _problem(config: TrainingConfig, name: Any, dist: Any) -> str:
    spec = FIELD_SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(name), list(FIELD_SPECS), n=1, cutoff=0.6)
        return "unknown field" + (f"; did you mean {close[0]!r}?" if close else "; see trainer.config_fields()")
    if name in FIXED:
        return (f"{name} cannot vary in a sweep: it says where the run's data or files are or how it is computed, "
                f"and every trial must use the same; set it in the config instead")
    if isinstance(dist, Choice):
        return _choice_problem(config, spec, dist)
    if isinstance(dist, Uniform):
        return _range_problem(spec, dist)
    return f"expected uniform(low, high), log_uniform(low, high) or choice([...]), got {_shown(dist)}"


def _choice_problem(config: TrainingConfig, spec: FieldSpec, dist: Choice) -> str:
    if not dist.values:
        return "choice([]) has no values; list at least one"
    texts = [_encode(v) for v in dist.values]
    if len(set(texts)) != len(texts):
        return "a value is listed twice in choice([...]); list each once"
    for value in dist.values:
        try:
            config.replace(**{spec.name: value})
        except ConfigError as exc:
            return f"the value {value!r} does not fit: {exc.errors[0]['message']}"
    return ""


def _range_problem(spec: FieldSpec, dist: Uniform) -> str:
    kind = "log_uniform" if dist.log else "uniform"
    if spec.type not in ("int", "float"):
        return f"{spec.name} is not a number ({spec.type}): vary it with choice([...])"
    for end in (dist.low, dist.high):
        if isinstance(end, bool) or not isinstance(end, (int, float)) or not math.isfinite(end):
            return f"{kind}() takes two finite numbers, got {end!r}"
        if spec.type == "int" and float(end) != int(end):
            return f"{spec.name} is an integer field: give {kind}() integer ends, got {end!r}"
    if not dist.low < dist.high:
        return f"{kind}({dist.low!r}, {dist.high!r}): low must be below high"
    if dist.log and dist.low <= 0:
        return f"log_uniform() needs low > 0, got {dist.low!r}"
    limits = _limits(spec)
    if spec.minimum is not None and (dist.low < spec.minimum or dist.low == spec.minimum and spec.exclusive_min):
        return f"the range {dist.low!r}..{dist.high!r} goes below the field's limit (allowed: {limits})"
    if spec.maximum is not None and (dist.high > spec.maximum or dist.high == spec.maximum and spec.exclusive_max):
        return f"the range {dist.low!r}..{dist.high!r} goes above the field's limit (allowed: {limits})"
    return ""


def _limits(spec: FieldSpec) -> str:
    lo = f"{'>' if spec.exclusive_min else '>='} {spec.minimum}" if spec.minimum is not None else ""
    hi = f"{'<' if spec.exclusive_max else '<='} {spec.maximum}" if spec.maximum is not None else ""
    return " and ".join(b for b in (lo, hi) if b)


def optuna_distributions(space: Mapping[str, Distribution]) -> dict[str, Any]:
    """The space as Optuna distributions (integer fields as IntDistribution)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, Choice):
            out[name] = CategoricalDistribution([_encode(v) for v in dist.values])
        elif FIELD_SPECS[name].type == "int":
            out[name] = IntDistribution(int(dist.low), int(dist.high), log=dist.log)
        else:
            out[name] = FloatDistribution(float(dist.low), float(dist.high), log=dist.log)
    return out


def grid_values(space: Mapping[str, Distribution]) -> dict[str, list[Any]]:
    """The stored values of each field for a grid search; ConfigError for a field without a finite grid."""
    bad = [name for name, dist in space.items() if not isinstance(dist, Choice)]
    if bad:
        raise ConfigError([{"field": name, "value": repr(space[name]),
                            "message": "sampler='grid' tries every combination, so each field needs choice([...]) "
                                       "values; give a list, or use sampler='tpe' or 'random' for ranges"}
                           for name in bad])
    return {name: [_encode(v) for v in dist.values] for name, dist in space.items()}  # type: ignore[union-attr]


def decode_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's stored parameter values as config values (JSON text back to lists)."""
    return {name: _decode(value) if FIELD_SPECS[name].type.startswith("list") else value
            for name, value in params.items()}


def _encode(value: Any) -> Any:
    return value if isinstance(value, PRIMITIVES) else json.dumps(value)


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def space_to_dict(space: Mapping[str, Distribution]) -> dict[str, dict[str, Any]]:
    """The space as JSON values: ``{"distribution": "uniform" | "log_uniform", "low", "high"}`` or
    ``{"distribution": "choice", "values": [...]}`` per field."""
    out: dict[str, dict[str, Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, Choice):
            out[name] = {"distribution": "choice", "values": list(dist.values)}
        else:
            out[name] = {"distribution": "log_uniform" if dist.log else "uniform", "low": dist.low, "high": dist.high}
    return out


def space_from_dict(data: Any) -> dict[str, Distribution]:
    """The space that :func:`space_to_dict` wrote (e.g. a JSON request's); ConfigError naming each
    malformed entry. Check it against a config with :func:`check_space`."""
    if not isinstance(data, Mapping) or not data:
        raise ConfigError.single("space", _shown(data), 'give an object of fields, e.g. {"learning_rate": '
                                 '{"distribution": "log_uniform", "low": 0.0001, "high": 0.1}}')
    out: dict[str, Distribution] = {}
    errors = []
    for name, entry in data.items():
        kind = entry.get("distribution") if isinstance(entry, Mapping) else None
        try:
            if kind == "choice" and isinstance(entry.get("values"), list) and set(entry) == {"distribution", "values"}:
                out[name] = Choice(tuple(entry["values"]))
            elif kind in ("uniform", "log_uniform") and set(entry) == {"distribution", "low", "high"}:
                out[name] = Uniform(entry["low"], entry["high"], kind == "log_uniform")
            else:
                raise ValueError
        except (ValueError, TypeError, AttributeError):
            errors.append({"field": str(name), "value": _shown(entry), "message":
                           'expected {"distribution": "uniform" | "log_uniform", "low": number, "high": number} '
                           'or {"distribution": "choice", "values": [...]}'})
    if errors:
        raise ConfigError(errors)
    return out
