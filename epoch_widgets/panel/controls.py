"""Config controls generated from the trainer's schema (``trainer.config_fields()``).

One input per config field, labelled for people, with a hint beside it: the field's help, or
what is wrong with the value, or a warning. Fields are grouped in tabs of one fixed height, the
rarely used ones under "Advanced" (opening it scrolls the tab; nothing shrinks). Nothing here
knows a field's range or default: those come from the schema, and validation is the schema's own
plus the column check against the DataFrame.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from html import escape
from typing import Any, Callable, Optional

import ipywidgets as W
import pandas as pd

import trainer
from trainer.config import SCHEDULER_PARAMS, SEQUENCE_MODELS, ConfigError, FieldSpec
from trainer.data import resolve_columns

from .. import theme
from . import fields
from .messages import short_message
from .number_text import NumberText

GROUP_TITLES = {"data": "Data", "model": "Model", "training": "Training",
                "early_stopping": "Early stopping", "scheduler": "LR schedule", "output": "Output",
                "tracking": "Tracking", "run": "Run"}
CONTROLS_HEIGHT = "270px"       # every tab the same height: switching tabs moves nothing below
# Wide enough for the longest label ("Checkpoint every N seconds") without an ellipsis.
_LABEL_STYLE = {"description_width": "200px"}
_INPUT_LAYOUT = {"width": "420px", "flex": "0 0 auto"}
# Where a backend's framework lives; find_spec answers without importing it (TF takes seconds).
_FRAMEWORKS = {"torch": "torch", "tensorflow": "tensorflow"}
_HINT_STYLE = ("font-size:var(--jp-ui-font-size0, 11px);line-height:1.3;display:-webkit-box;"
               "-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden;white-space:normal")
_KIND_COLORS = {"error": theme.ERROR, "warning": theme.WARN, "info": theme.FG_MUTED}
# A tab's page has a fixed height; its rows must keep their own height and let the page scroll
# (flex items shrink by default: an opened Advanced section crushed the rows above it to ~8 px).
_KEEP_HEIGHT = "0 0 auto"


@dataclass
class Validation:
    """The outcome of checking the controls: a config when valid, else messages by field."""

    config: Optional[trainer.TrainingConfig]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.config is not None and not self.errors


def _backend_options(spec: FieldSpec) -> list[tuple[str, str]]:
    out = []
    for name in spec.choices:
        module = _FRAMEWORKS.get(name)
        installed = module is None or importlib.util.find_spec(module) is not None
        out.append((name if installed else f"{name} (not installed)", name))
    return out


def _column_options(columns: list[Any]) -> list[tuple[str, Any]]:
    return [(str(c), c) for c in columns]


def _schema_check(values: dict[str, Any], errors: dict[str, str]) -> Optional[trainer.TrainingConfig]:
    """The config ``values`` make, or None with the schema's problems added to ``errors`` by field."""
    try:
        return trainer.TrainingConfig(**values)
    except ConfigError as exc:
        for e in exc.errors:
            errors.setdefault(e["field"].split("[")[0], e["message"])
        return None


class ConfigControls:
    """Widgets for every config field; ``values()`` reads them, ``validate()`` checks them."""

    def __init__(self, columns: list[Any], on_change: Callable[[], None]):
        self.specs: dict[str, FieldSpec] = {s.name: s for s in trainer.config_fields()}
        self.inputs: dict[str, W.Widget] = {}
        self.hints: dict[str, W.HTML] = {}
        self.rows: dict[str, W.HBox] = {}
        self._codecs: dict[str, fields.TextCodec] = {}
        self._fixed: dict[str, Any] = {}        # fields with one allowed value, shown as text
        self._columns = list(columns)
        self._locked: set[str] = set()
        self._errors: dict[str, str] = {}
        self._notes: dict[str, tuple[str, str]] = {}       # field -> (text, "warning" | "info")
        for spec in self.specs.values():
            widget = self._make_input(spec)
            self.inputs[spec.name] = widget
            self.hints[spec.name] = W.HTML("", layout=W.Layout(flex="1 1 0%", min_width="0", margin="0 0 0 8px"))
            self.rows[spec.name] = W.HBox([widget, self.hints[spec.name]],
                                          layout=W.Layout(width="100%", align_items="center", flex=_KEEP_HEIGHT))
        self._refresh_feature_options()
        self.view = self._build_tabs()
        self._update_visibility()
        self._update_notes()
        self.show_errors({})
        for name, widget in self.inputs.items():
            widget.observe(lambda change, name=name: self._changed(name, on_change), "value")

    def __getitem__(self, name: str) -> W.Widget:
        return self.inputs[name]

    # ------------------------------------------------------------------ building
    def _make_input(self, spec: FieldSpec) -> W.Widget:
        tooltip = f"{spec.help} (config field: {spec.name})" if spec.help else spec.name
        common = {"description": fields.label(spec.name), "tooltip": tooltip, "style": _LABEL_STYLE,
                  "layout": dict(_INPUT_LAYOUT)}
        if spec.name == "feature_columns":
            return W.SelectMultiple(options=[], value=(), rows=5, **common)
        if spec.name == "target_column":
            return W.Dropdown(options=[("(choose a column)", None)] + _column_options(self._columns),
                              value=None, **common)
        if spec.name == "backend":
            return W.Dropdown(options=_backend_options(spec), value=spec.default, **common)
        if spec.name == "device":
            return W.Combobox(options=["auto", "cpu", "cuda"], value=spec.default, ensure_option=False,
                              **common)
        if spec.type == "choice" and len(spec.choices) == 1:
            # Nothing to choose (algorithm_type): said as text rather than offered as a control.
            self._fixed[spec.name] = spec.choices[0]
            return W.HTML(value=escape(str(spec.choices[0])), **common)
        if spec.type == "list[choice]":       # loggers: any of a few names
            return W.SelectMultiple(options=[(str(c), c) for c in spec.choices], value=tuple(spec.default),
                                    rows=len(spec.choices), **common)
        if spec.type == "choice":
            return W.Dropdown(options=[(str(c), c) for c in spec.choices], value=spec.default, **common)
        if spec.type == "bool":
            return W.Checkbox(value=spec.default, indent=True, **common)
        if spec.type in ("int", "float") and not spec.optional:
            return NumberText(spec.type, value=spec.default, **common)
        codec = self._codecs[spec.name] = fields.TextCodec(spec)
        placeholder = "(none)" if spec.optional else ""
        if spec.type == "list[int]":
            placeholder = "e.g. 128, 64"
        return W.Text(value=codec.to_text(spec.default), placeholder=placeholder, **common)

    def _build_tabs(self) -> W.Tab:
        groups: dict[str, tuple[list[W.Widget], list[W.Widget]]] = {}
        for spec in self.specs.values():
            basic, advanced = groups.setdefault(spec.group, ([], []))
            (advanced if fields.is_advanced(spec.name) else basic).append(self.rows[spec.name])
        order = [g for g in GROUP_TITLES if g in groups] + [g for g in groups if g not in GROUP_TITLES]
        self.group_order = order
        self.advanced: dict[str, W.Accordion] = {}
        pages = []
        for g in order:
            basic, advanced = groups[g]
            children = list(basic)
            if advanced:
                self.advanced[g] = W.Accordion([W.VBox(advanced)], titles=("Advanced",), selected_index=None,
                                               layout=W.Layout(flex=_KEEP_HEIGHT))
                children.append(self.advanced[g])
            pages.append(W.VBox(children, layout=W.Layout(height=CONTROLS_HEIGHT, overflow="hidden auto",
                                                          padding="4px 2px")))
        tabs = W.Tab(children=pages, layout=W.Layout(width="100%"))
        tabs.titles = tuple(self._group_title(g) for g in order)
        return tabs

    def add_to_group(self, group: str, widget: W.Widget) -> None:
        """Show ``widget`` in ``group``'s tab, after its controls and before its Advanced section."""
        page = self.view.children[self.group_order.index(group)]
        children = list(page.children)
        at = children.index(self.advanced[group]) if group in self.advanced else len(children)
        widget.layout.flex = _KEEP_HEIGHT
        page.children = (*children[:at], widget, *children[at:])

    @staticmethod
    def _group_title(group: str) -> str:
        return GROUP_TITLES.get(group, group.replace("_", " ").capitalize())

    # ------------------------------------------------------------------ reading and writing
    def values(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(config values, parse errors by field) as the controls hold them now."""
        out: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, widget in self.inputs.items():
            codec = self._codecs.get(name)
            if name in self._fixed:
                out[name] = self._fixed[name]
                continue
            if isinstance(widget, NumberText) and widget.problem():
                errors[name] = widget.problem()         # an emptied box: said, not put back silently
                continue
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
        target = self.inputs["target_column"].value
        if name == "feature_columns" and target is not None and target in (value or ()):
            raise ConfigError.single(name, value, f"the target column {target!r} cannot also be a feature; "
                                                  "remove it")
        widget = self.inputs[name]
        codec = self._codecs.get(name)
        if isinstance(widget, NumberText) and (isinstance(value, str) or value is None):
            raise ConfigError.single(name, value, self._cannot_hold(name, value, TypeError(value)))
        if name in self._fixed:
            if value != self._fixed[name]:
                raise ConfigError.single(name, value, self._cannot_hold(name, value, ValueError(value)))
            return
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

    def show_config(self, config: trainer.TrainingConfig, skip: set[str]) -> None:
        """Put a config's values into the controls (a resumed run's); the target first, since it
        decides which columns are features."""
        values = config.to_dict()
        for name in ["target_column"] + [n for n in values if n != "target_column"]:
            if name in skip:
                continue
            try:
                self.set_value(name, values[name])
            except ConfigError:
                pass        # a column the controls do not offer: the run still has it

    def set_columns(self, columns: list[Any]) -> None:
        """Offer ``columns`` for features and target, keeping the choices that still exist."""
        self._columns = list(columns)
        target = self.inputs["target_column"]
        keep_target = target.value if target.value in self._columns else None
        target.options = [("(choose a column)", None)] + _column_options(self._columns)
        target.value = keep_target
        self._refresh_feature_options()
        self._update_notes()

    def _refresh_feature_options(self) -> None:
        """Features are every column but the target; picking a feature as target drops it there."""
        features, target = self.inputs["feature_columns"], self.inputs["target_column"].value
        options = [c for c in self._columns if c != target]
        dropped = target is not None and target in features.value
        keep = tuple(c for c in features.value if c in options)
        if [v for _l, v in features.options] != options:
            features.options = _column_options(options)
        if features.value != keep:
            features.value = keep
        self._notes.pop("feature_columns", None)
        if dropped:
            self._notes["feature_columns"] = (f"{target!r} is the target now, so it is no longer a feature",
                                              "warning")

    def set_enabled(self, enabled: bool, unlocked: frozenset[str] = frozenset()) -> None:
        """All controls on or off; ``unlocked`` stay on either way (a live run's changeable ones)."""
        for name, widget in self.inputs.items():
            disabled = (not enabled and name not in unlocked) or name in self._locked
            if name not in self._fixed and widget.disabled != disabled:
                widget.disabled = disabled

    def lock(self, name: str, note: str) -> None:
        """Keep a control disabled for good, saying why (data_path when a DataFrame was given)."""
        self._locked.add(name)
        widget = self.inputs[name]
        widget.disabled = True
        if hasattr(widget, "placeholder"):
            widget.placeholder = note

    # ------------------------------------------------------------------ checking
    def validate(self, data: Optional[pd.DataFrame]) -> Validation:
        """Check the controls with the schema, then the columns against ``data``: every problem at once."""
        values, errors = self.values()
        values = {k: v for k, v in values.items() if k not in errors}
        config = _schema_check(values, errors)
        # The columns are checked even when a field is wrong, on the fields the schema accepts (the
        # others at their defaults): a missing target shows beside the bad field, not after its fix.
        columns_config = config or _schema_check({k: v for k, v in values.items() if k not in errors}, {})
        if errors:
            config = None
        if data is None:
            errors.setdefault("data", "no data: pass data=DataFrame to TrainingPanel or set data_path")
        elif columns_config is not None:
            try:
                resolve_columns(columns_config, data)
            except ConfigError as exc:
                for e in exc.errors:
                    errors.setdefault(e["field"], e["message"])
        return Validation(config, errors)

    def show_errors(self, errors: dict[str, str]) -> None:
        """Show each field's problem (short) beside its control; the others show their help."""
        self._errors = dict(errors)
        for name in self.hints:
            self._render_hint(name)
        titles = []
        for g, page in zip(self.group_order, self.view.children):
            bad = any(self.specs[n].group == g for n in errors if n in self.specs)
            titles.append(self._group_title(g) + (" \u26a0" if bad else ""))
        if tuple(titles) != tuple(self.view.titles):
            self.view.titles = tuple(titles)

    def hint_text(self, name: str) -> str:
        """What the hint beside ``name`` says now (plain text)."""
        if name in self._errors:
            return short_message(name, self._errors[name])
        if name in self._notes:
            return self._notes[name][0]
        return fields.help_text(name)

    def _render_hint(self, name: str) -> None:
        if name in self._errors:
            kind, text, title = "error", short_message(name, self._errors[name]), self._errors[name]
        elif name in self._notes:
            text, kind = self._notes[name]
            title = text
        else:
            kind, text = "info", fields.help_text(name)
            title = f"{text} (config field: {name})"
        html = (f"<div style='{_HINT_STYLE};color:{_KIND_COLORS[kind]}' title='{escape(title, quote=True)}' "
                f"class='ew-hint ew-hint-{kind}'>{escape(text)}</div>") if text else ""
        if self.hints[name].value != html:
            self.hints[name].value = html

    def hidden_fields(self) -> set[str]:
        return {name for name, row in self.rows.items() if row.layout.display == "none"}

    # ------------------------------------------------------------------ reactions
    def _changed(self, name: str, on_change: Callable[[], None]) -> None:
        if name == "target_column":
            self._refresh_feature_options()
        elif name == "feature_columns":
            self._notes.pop("feature_columns", None)
        self._update_visibility()
        self._update_notes()
        on_change()

    def _update_notes(self) -> None:
        """Hints that depend on values: what empty features mean, a cosine period off the epochs, the
        default run name."""
        features = self.inputs["feature_columns"]
        if self._notes.get("feature_columns", ("", ""))[1] != "warning":
            n = len(features.options)
            if not n:
                self._notes.pop("feature_columns", None)
            elif not features.value:
                self._notes["feature_columns"] = (f"none selected = all {n} columns except the target "
                                                  "(Ctrl/Shift-click to pick)", "info")
            else:
                self._notes["feature_columns"] = (f"{len(features.value)} of {n} columns", "info")
        self._notes.pop("T_max", None)
        epochs, t_max = self.inputs["epochs"].value, self.inputs["T_max"].value
        numbers = isinstance(epochs, int) and isinstance(t_max, int)
        if (self.inputs["learning_rate_scheduler"].value == "cosine" and numbers and epochs >= 1 and t_max >= 1
                and t_max != epochs):
            if t_max > epochs:
                text = f"longer than the {epochs} epochs: the rate never gets down to its minimum"
            else:
                text = f"shorter than the {epochs} epochs: the rate rises again after epoch {t_max}"
            self._notes["T_max"] = (text + "; set it to the epochs for one smooth decay", "warning")
        self._notes.pop("name", None)
        if self.inputs["name"].value == fields.DEFAULT_NAME:
            self._notes["name"] = ("left as it is, a run is named after its Save-to folder, or else by its "
                                   "model and start time", "info")
        for name in ("feature_columns", "T_max", "name"):
            self._render_hint(name)

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
