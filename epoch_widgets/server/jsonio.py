"""JSON in and out of the API: request bodies are checked, answers are always standard JSON.

Python's json module accepts and writes ``NaN``/``Infinity``, which standard JSON (and JavaScript's
``JSON.parse``) does not have: a request that holds one (or a number too large for a float) is
refused naming the field, and a non-finite number in an answer (a failed run's loss) becomes null.
Bodies nested deeper than any config needs are refused before they can exhaust the recursion limit,
and bodies larger than :data:`MAX_BODY_BYTES` before they are parsed.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional

from .errors import BadRequest, BodyTooLarge

MAX_DEPTH = 32          # a config nests two levels; anything far deeper is not a config
# A config with 10,000 feature columns of ordinary names fits many times over; larger bodies only
# cost the server time to read and check (docs/security.md, "Request limits").
MAX_BODY_BYTES = 1024 * 1024


def _problem(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", [{"field": field, "value": None, "message": message}])


def parse_body(raw: bytes) -> Any:
    """The request body as JSON: 400 naming the problem (and the field, where there is one), 413
    for a body over :data:`MAX_BODY_BYTES`."""
    check_size(raw)
    if not raw or not raw.strip():
        raise _problem("<config>", "the request body is empty; send the training config as a JSON object")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _problem("<config>", f"the request body is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}",
                         [{"field": "<config>", "value": None, "message": f"not valid JSON: {exc}"}]) from None
    _check(body)
    return body


def check_size(raw: bytes) -> None:
    """413 for a body over :data:`MAX_BODY_BYTES`, saying the limit."""
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the request body has {len(raw):,} bytes, more than the {MAX_BODY_BYTES:,} bytes this API "
                           f"accepts; a training config is far smaller (at most 10,000 feature_columns)",
                           [{"field": "<config>", "value": None, "message": f"at most {MAX_BODY_BYTES:,} bytes"}])


def _check(body: Any) -> None:
    # Iterative, so no depth can make the check itself overflow.
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _problem(where or "<config>", f"nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(value, float) and not math.isfinite(value):
            raise _problem(where or "<config>",
                           f"got {value}: give a finite number (NaN and infinities are not JSON numbers, "
                           f"and numbers beyond about 1.8e308 overflow to infinity)")
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))


def dumps(obj: Any, redact: Optional[Callable[[str], str]] = None) -> str:
    """Standard JSON: non-finite numbers become null, every string passes through ``redact``."""
    return json.dumps(_clean(obj, redact), allow_nan=False)


def _clean(value: Any, redact: Optional[Callable[[str], str]], depth: int = 0) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return redact(value) if redact is not None else value
    if isinstance(value, (bool, int)) or value is None:
        return value
    if depth > 2 * MAX_DEPTH:           # only an echoed request value could be this deep (it is not)
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v, redact, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, redact, depth + 1) for v in value]
    if hasattr(value, "item"):          # numpy scalars
        return _clean(value.item(), redact, depth)
    return _clean(str(value), redact, depth)
