"""Config controls generated from the trainer's schema (``trainer.config_fields()``).

One input widget per config field with an error label beside it, grouped in tabs. Nothing here
knows a field's range or default: those come from the schema, and validation is the schema's own
(``TrainingConfig``) plus the column check against the DataFrame.
"""
from __future__ import annotations

import importlib.util
from html import escape
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import ipywidgets as W
import pandas as pd

import trainer
from trainer.config import SCHEDULER_PARAMS, SEQUENCE_MODELS, ConfigError, FieldSpec, parse_devices
from trainer.data import resolve_columns

GROUP_TITLES = {"data": "Data", "model": "Model", "training": "Training",
                "early_stopping": "Early stopping", "scheduler": "LR schedule", "output": "Output",
                "tracking": "Tracking", "run": "Run"}
_LABEL_STYLE = {"description_width": "160px"}
_INPUT_LAYOUT = {"width": "380px"}
# Where a backend's framework lives; find_spec answers without importing it (TF takes seconds).
_FRAMEWORKS = {"torch": "torch", "tensorflow": "tensorflow"}


@dataclass
class Validation:
    """The outcome of checking the controls: a config when valid, else messages by field."""

    config: Optional[trainer.TrainingConfig]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.config is not None and not self.errors


class _TextCodec:
    """Parses a Text widget's string into a config value (lists, optional numbers and strings)."""

    def __init__(self, spec: FieldSpec):
        self.spec = spec

    def to_text(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return str(value)

    def parse(self, text: str) -> Any:
        """The config value for ``text``; raises ValueError with a message for the user."""
        text = text.strip()
        kind = self.spec.type
        if kind == "list[int]":
            parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"got {text!r}: enter whole numbers separated by commas, e.g. 128, 64") from None
        if kind == "list[str]":
            return [p.strip() for p in text.split(",") if p.strip()]
        if self.spec.name == "devices":
            return parse_devices(text)     # "2", "0, 1" or "auto": a count, GPU indices or auto
        if text == "" and self.spec.optional:
            return None
        if kind in ("int", "float"):
            convert, what = (int, "a whole number") if kind == "int" else (float, "a number")
            try:
                return convert(text)
            except ValueError:
                hint = " or leave it empty" if self.spec.optional else ""
                raise ValueError(f"got {text!r}: enter {what}{hint}") from None
        return text


def _backend_options(spec: FieldSpec) -> list[tuple[str, str]]:
    out = []
    for name in spec.choices:
        module = _FRAMEWORKS.get(name)
        installed = module is None or importlib.util.find_spec(module) is not None
        out.append((name if installed else f"{name} (not installed)", name))
    return out


def _column_options(columns: list[Any]) -> list[tuple[str, Any]]:
    return [(str(c), c) for c in columns]


class ConfigControls:
    """Widgets for every config field; ``values()`` reads them, ``validate()`` checks them."""

    def __init__(self, columns: list[Any], on_change: Callable[[], None]):
        self.specs: dict[str, FieldSpec] = {s.name: s for s in trainer.config_fields()}
        self.inputs: dict[str, W.Widget] = {}
        self.error_labels: dict[str, W.HTML] = {}
        self.rows: dict[str, W.HBox] = {}
        self._codecs: dict[str, _TextCodec] = {}
        self._columns = list(columns)
        self._locked: set[str] = set()
        for spec in self.specs.values():
            widget = self._make_input(spec)
            self.inputs[spec.name] = widget
            self.error_labels[spec.name] = W.HTML("", layout={"margin": "0 0 0 8px"})
            self.rows[spec.name] = W.HBox([widget, self.error_labels[spec.name]])
        groups: dict[str, list[W.Widget]] = {}
        for spec in self.specs.values():
            groups.setdefault(spec.group, []).append(self.rows[spec.name])
        order = [g for g in GROUP_TITLES if g in groups] + [g for g in groups if g not in GROUP_TITLES]
        self.view = W.Tab(children=[W.VBox(groups[g]) for g in order])
        self.view.titles = tuple(GROUP_TITLES.get(g, g.replace("_", " ").capitalize()) for g in order)
        self._update_visibility()
        for widget in self.inputs.values():
            widget.observe(lambda _change: self._changed(on_change), "value")

    def __getitem__(self, name: str) -> W.Widget:
        return self.inputs[name]

    # ------------------------------------------------------------------ building
    def _make_input(self, spec: FieldSpec) -> W.Widget:
        common = {"description": spec.name, "tooltip": spec.help, "style": _LABEL_STYLE,
                  "layout": dict(_INPUT_LAYOUT)}
        if spec.name == "feature_columns":
            return W.SelectMultiple(options=_column_options(self._columns), value=(), rows=6, **common)
        if spec.name == "target_column":
            return W.Dropdown(options=[("(choose a column)", None)] + _column_options(self._columns),
                              value=None, **common)
        if spec.name == "backend":
            return W.Dropdown(options=_backend_options(spec), value=spec.default, **common)
        if spec.name == "device":
            return W.Combobox(options=["auto", "cpu", "cuda"], value=spec.default, ensure_option=False,
                              **common)
        if spec.type == "list[choice]":       # loggers: any of a few names
            return W.SelectMultiple(options=[(str(c), c) for c in spec.choices], value=tuple(spec.default),
                                    rows=len(spec.choices), **common)
        if spec.type == "choice":
            return W.Dropdown(options=[(str(c), c) for c in spec.choices], value=spec.default, **common)
        if spec.type == "bool":
            return W.Checkbox(value=spec.default, indent=False, **common)
        if spec.type == "int" and not spec.optional:
            return W.IntText(value=spec.default, **common)
        if spec.type == "float" and not spec.optional:
            return W.FloatText(value=spec.default, **common)
        codec = self._codecs[spec.name] = _TextCodec(spec)
        placeholder = "(none)" if spec.optional else ""
        if spec.type == "list[int]":
            placeholder = "e.g. 128, 64"
        return W.Text(value=codec.to_text(spec.default), placeholder=placeholder, **common)

    # ------------------------------------------------------------------ reading and writing
    def values(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(config values, parse errors by field) as the controls hold them now."""
        out: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, widget in self.inputs.items():
            codec = self._codecs.get(name)
            if codec is None:
                value = widget.value
                out[name] = list(value) if isinstance(value, tuple) else value
                continue
            try:
                out[name] = codec.parse(widget.value)
            except ValueError as exc:
                errors[name] = str(exc)
        return out, errors

    def set_value(self, name: str, value: Any) -> None:
        """Put a config value into its control; ConfigError when the control cannot hold it."""
        if name not in self.inputs:
            trainer.TrainingConfig(**{name: value})   # raises the schema's "unknown field; did you mean"
            raise ConfigError.single(name, value, "unknown field")
        widget = self.inputs[name]
        codec = self._codecs.get(name)
        try:
            if codec is not None:
                widget.value = codec.to_text(value)
            elif isinstance(widget, W.SelectMultiple):
                widget.value = tuple(value)
            else:
                widget.value = value
        except Exception as exc:
            raise ConfigError.single(name, value, self._cannot_hold(name, value, exc)) from None

    def _cannot_hold(self, name: str, value: Any, exc: Exception) -> str:
        if name in ("feature_columns", "target_column"):
            if not self._columns:
                return "there is no data to pick columns from yet; pass data=DataFrame or set data_path"
            missing = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if v not in self._columns]
            return f"columns {missing} are not in the data, which has {self._columns[:20]}"
        spec = self.specs[name]
        try:
            trainer.TrainingConfig(**{name: value})
        except ConfigError as err:
            return err.errors[0]["message"]
        allowed = f"one of {list(spec.choices)}" if spec.choices else f"a {spec.type}"
        return f"got {value!r}: expected {allowed} ({exc})"

    def set_columns(self, columns: list[Any]) -> None:
        """Offer ``columns`` for features and target, keeping the choices that still exist."""
        self._columns = list(columns)
        features, target = self.inputs["feature_columns"], self.inputs["target_column"]
        keep = tuple(c for c in features.value if c in self._columns)
        keep_target = target.value if target.value in self._columns else None
        features.options = _column_options(self._columns)
        features.value = keep
        target.options = [("(choose a column)", None)] + _column_options(self._columns)
        target.value = keep_target

    def set_enabled(self, enabled: bool) -> None:
        for name, widget in self.inputs.items():
            widget.disabled = not enabled or name in self._locked

    def lock(self, name: str, note: str) -> None:
        """Keep a control disabled for good, saying why (data_path when a DataFrame was given)."""
        self._locked.add(name)
        widget = self.inputs[name]
        widget.disabled = True
        if hasattr(widget, "placeholder"):
            widget.placeholder = note

    # ------------------------------------------------------------------ checking
    def validate(self, data: Optional[pd.DataFrame]) -> Validation:
        """Check the controls with the schema, then the columns against ``data``."""
        values, errors = self.values()
        if errors:
            # Still run the schema on the parsable fields so every problem shows at once.
            values = {k: v for k, v in values.items() if k not in errors}
        try:
            config = trainer.TrainingConfig(**values)
        except ConfigError as exc:
            for e in exc.errors:
                errors.setdefault(e["field"].split("[")[0], e["message"])
            return Validation(None, errors)
        if errors:
            return Validation(None, errors)
        if data is None:
            return Validation(config, {"data": "no data: pass data=DataFrame to TrainingPanel or set data_path"})
        try:
            resolve_columns(config, data)
        except ConfigError as exc:
            for e in exc.errors:
                errors.setdefault(e["field"], e["message"])
            return Validation(config, errors)
        return Validation(config, {})

    def show_errors(self, errors: dict[str, str]) -> None:
        """Write each field's message beside its control and clear the others."""
        for name, label in self.error_labels.items():
            text = errors.get(name, "")
            html = f"<span style='color:#c62828'>{escape(text)}</span>" if text else ""
            if label.value != html:
                label.value = html

    def hidden_fields(self) -> set[str]:
        return {name for name, row in self.rows.items() if row.layout.display == "none"}

    # ------------------------------------------------------------------ visibility
    def _changed(self, on_change: Callable[[], None]) -> None:
        self._update_visibility()
        on_change()

    def _update_visibility(self) -> None:
        """Show only the chosen scheduler's own parameters, and sequence_length for sequence models."""
        chosen = self.inputs["learning_rate_scheduler"].value
        own = set(SCHEDULER_PARAMS.get(chosen, ()))
        for name, spec in self.specs.items():
            shown = True
            if spec.scheduler is not None:
                shown = name in own
            elif name == "sequence_length":
                shown = self.inputs["model_type"].value in SEQUENCE_MODELS
            display = None if shown else "none"
            if self.rows[name].layout.display != display:
                self.rows[name].layout.display = display

