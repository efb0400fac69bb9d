"""How config fields look to a person: labels, help, which are advanced, and text parsing for list
and optional fields. All of it comes from the schema's field metadata (``trainer.config``'s
``json_schema_extra``: ``label``, ``help``, ``advanced``)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from trainer.config import FIELD_SPECS, FieldSpec, TrainingConfig, parse_devices
from trainer.run_records import DEFAULT_NAME


def meta(name: str) -> dict[str, Any]:
    info = TrainingConfig.model_fields.get(name)
    extra = info.json_schema_extra if info is not None else None
    return extra if isinstance(extra, dict) else {}


def label(name: str) -> str:
    """The field's human label (``T_max`` -> "Half period (epochs)")."""
    return meta(name).get("label") or name.replace("_", " ").capitalize()


def help_text(name: str) -> str:
    return meta(name).get("help", "")


def is_advanced(name: str) -> bool:
    return bool(meta(name).get("advanced"))




def with_run_name(config: TrainingConfig, started: Optional[float] = None) -> TrainingConfig:
    """``config``, or when it keeps the schema's default name (the same for every run) a copy named
    after its output folder, or without one by its model and start time ("mlp 2026-12-07 16:43:12"),
    as the Runs tab labels saved runs. Exports and the Runs tab use the name."""
    if config.name != DEFAULT_NAME:
        return config
    folder = Path(config.output_path).name if config.output_path else ""
    if folder:
        return config.replace(name=folder)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return config.replace(name=f"{config.model_type} {stamp}")


class TextCodec:
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
        """The config value for ``text``; raises ValueError with a short message for the user."""
        text = text.strip()
        kind = self.spec.type
        if kind == "list[int]":
            parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError("enter whole numbers separated by commas, e.g. 128, 64") from None
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
                hint = ", or leave it empty" if self.spec.optional else ""
                raise ValueError(f"enter {what}{hint}") from None
        return text
