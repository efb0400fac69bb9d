"""Credentials out of everything a run writes or shows: ``scheme://user:password@host`` becomes
``scheme://***@host``.

The real value stays only where it connects (the config a run holds in memory); saved configs,
checkpoints, tracking params, server answers and records pass through :func:`redacted_config` or
:func:`redact_text`.
"""
from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
# scheme://user-info@ : the user-info ends at the last '@' before the host's '/', '?' or '#'. The
# scheme's length is bounded so that a long text costs linear time.
_USER_INFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]{0,31}://)(?P<info>[^/?#@\s]*(?:@[^/?#@\s]*)*)@")


def redact_text(text: str) -> str:
    """``text`` with the user-info of every URI in it replaced by ``***``."""
    if "@" not in text or "://" not in text:
        return text
    return _USER_INFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def is_redacted(uri: str) -> bool:
    """True when ``uri``'s credentials were replaced by :func:`redact_text`."""
    match = _USER_INFO.search(uri)
    return match is not None and match.group("info") == REDACTED


def redacted(value: Any) -> Any:
    """``value`` (a string, or lists and dicts of them) with every URI's user-info redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    return value


def redacted_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict fit to save or show: credentials in its URIs replaced by ``***``."""
    return {k: redacted(v) for k, v in config.items()}
