"""Short messages for the panel from the detailed ones of ``ConfigError`` entries.

The HTTP API and ``panel.errors`` keep the detailed text ("got 0: Input should be greater than or
equal to 1 (allowed: ...)"); beside a control there is room for "must be at least 1".
"""
from __future__ import annotations

import re
from typing import Any, Optional

from trainer.config import FIELD_SPECS

_GOT = re.compile(r"^got .*?: (?=[A-Za-z])", re.S)
_ALLOWED = re.compile(r"\s*\(allowed: [^)]*\)\s*$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def _num(value: Optional[float]) -> str:
    if value is None:
        return "?"
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:g}"


def _bound_message(field: str, text: str) -> Optional[str]:
    spec = FIELD_SPECS.get(field)
    lo, hi = (spec.minimum, spec.maximum) if spec is not None else (None, None)
    for phrase, template in (("greater than or equal to", "must be at least {}"),
                             ("greater than", "must be more than {}"),
                             ("less than or equal to", "must be at most {}"),
                             ("less than", "must be less than {}")):
        if f"should be {phrase}" in text:
            bound = lo if "greater" in phrase else hi
            if bound is None:
                found = _NUMBER.search(text.split(phrase, 1)[1])
                bound = float(found.group()) if found else None
            return template.format(_num(bound))
    return None


_TYPES = {"valid integer": "enter a whole number", "valid number": "enter a number",
          "valid boolean": "must be on or off", "valid string": "enter text", "valid list": "enter a list"}


def short_message(field: str, message: str, value: Any = None) -> str:
    """A few words for beside the control: what is wrong and what would fix it."""
    text = _ALLOWED.sub("", message.strip())
    bound = _bound_message(field, text)
    if bound:
        return bound
    for key, short in _TYPES.items():
        if f"Input should be a {key}" in text:
            return short
    choices = re.search(r"Input should be ('.*')$", text)
    if choices:
        return "choose one of " + choices.group(1).replace("'", "")
    items = re.search(r"List should have at (least|most) (\d+) items?", text)
    if items:
        return f"enter at {items.group(1)} {items.group(2)} value{'s' if items.group(2) != '1' else ''}"
    text = _GOT.sub("", text)
    return text[:1].lower() + text[1:] if text else "invalid value"
