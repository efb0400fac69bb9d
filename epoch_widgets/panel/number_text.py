"""A number field that keeps what was typed. ipywidgets' IntText and FloatText put the last number
back when their box is emptied or holds no number, silently, in the browser alone: the kernel never
hears of it. ``NumberText`` is a Text box whose ``value`` is the number typed, or the text itself
when it is no number (an emptied box: ``""``), so the panel can say what is wrong and keep Start
disabled until it is fixed.
"""
from __future__ import annotations

from typing import Any, Union

import ipywidgets as W
from traitlets import Any as AnyTrait
from traitlets import TraitError, validate


def _to_json(value: Union[int, float, str], _widget: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _from_json(text: str, widget: "NumberText") -> Union[int, float, str]:
    """The number ``text`` holds for ``widget``'s kind, or ``text`` when it holds none."""
    try:
        return int(text) if widget.kind == "int" else float(text)
    except (TypeError, ValueError):
        return text


class NumberText(W.Text):
    """A Text box for an ``"int"`` or ``"float"`` field: ``value`` is a number, or the text typed
    when that is not one (see :func:`problem`)."""

    # Any, checked below: a Union of Int and Float would turn 1.0 into 1 (traitlets' Int takes whole floats).
    value = AnyTrait(help="The number, or the text when it is none").tag(sync=True, to_json=_to_json,
                                                                        from_json=_from_json)

    def __init__(self, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        value = kwargs.get("value")
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            kwargs["value"] = float(value)      # validators do not run on __init__'s values
        super().__init__(**kwargs)

    @validate("value")
    def _number_or_text(self, proposal: Any) -> Union[int, float, str]:
        value = proposal["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TraitError(f"expected a number or its text, got {value!r}")
        if getattr(self, "kind", None) == "float" and isinstance(value, int):
            return float(value)
        return value

    def problem(self) -> str:
        """What is wrong with the box ('' when it holds a number)."""
        if not isinstance(self.value, str):
            return ""
        what = "a whole number" if self.kind == "int" else "a number"
        return f"empty: enter {what}" if not self.value.strip() else f"enter {what}"
