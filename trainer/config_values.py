"""What the config schema checks beyond types and ranges, at a cost linear in the input: the size
limits of its strings and lists, duplicates, device lists, and how much of a huge value an error
repeats.

The limits keep any config (an HTTP request's above all) a moment's work to check; pydantic puts
them in the JSON Schema as ``maxLength`` / ``maxItems`` (docs/security.md, "Request limits").
"""
from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Union

from pydantic import StringConstraints

MAX_NAME = 1000             # characters of the run's name
MAX_COLUMN_NAME = 1024      # characters of one column name
MAX_COLUMNS = 10_000        # feature columns
MAX_PATH = 4096             # characters of data_path / output_path (Linux's PATH_MAX)
MAX_URI = 2048              # characters of mlflow_tracking_uri
MAX_DEVICES = 4096          # GPU indices in devices
MAX_DEVICES_TEXT = 32_768   # characters of devices given as text ('0,1,...')
MAX_REPORTED = 20           # problems one ConfigError lists in full
MAX_SHOWN = 200             # characters of a value repeated in an error message

ColumnName = Annotated[str, StringConstraints(max_length=MAX_COLUMN_NAME)]

_DEVICES_HELP = "give a device count (e.g. 2), a list of GPU indices (e.g. [0, 1] or '0,1'), or 'auto'"


def parse_devices(value: Any) -> Union[int, list[int], str]:
    """``devices`` as a count, a list of distinct GPU indices or "auto"; strings ("2", "0,1",
    "[0, 1]", "auto") are accepted too, as typed in a text box or on a command line."""
    if isinstance(value, str):
        if len(value) > MAX_DEVICES_TEXT:
            raise ValueError(f"at most {MAX_DEVICES_TEXT} characters; {_DEVICES_HELP}")
        text = value.strip().strip("[]").strip()
        if text.lower() == "auto":
            return "auto"
        parts = [p.strip() for p in text.split(",")]
        if not all(p.isdigit() and len(p) <= 9 for p in parts):
            raise ValueError(_DEVICES_HELP)
        value = int(parts[0]) if "," not in text and not value.strip().startswith("[") else [int(p) for p in parts]
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise ValueError(_DEVICES_HELP)
    if isinstance(value, int):
        if not 1 <= value <= 4096:
            raise ValueError(f"a device count must be at least 1; {_DEVICES_HELP}")
        return value
    indices = list(value)
    if not indices or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in indices):
        raise ValueError(f"a device list holds GPU indices 0, 1, ...; {_DEVICES_HELP}")
    if len(indices) > MAX_DEVICES:
        raise ValueError(f"at most {MAX_DEVICES} GPU indices, got {len(indices)}")
    twice = listed_twice(indices)
    if twice:
        raise ValueError(f"GPU indices listed twice: {twice[:MAX_REPORTED]}")
    return indices


def listed_twice(values: list[Any]) -> list[Any]:
    """The values that occur more than once, sorted (linear in the list's length)."""
    return sorted(v for v, n in Counter(values).items() if n > 1)


def short_text(text: str) -> str:
    """``text``, cut to :data:`MAX_SHOWN` characters (saying how long it was)."""
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


def preview(value: Any) -> str:
    """The repr of ``value``, cut short (without building the whole repr of a huge list)."""
    if isinstance(value, (list, tuple)) and len(value) > MAX_SHOWN:
        return short_text(repr(value[:MAX_SHOWN]))[:MAX_SHOWN] + f"... ({len(value)} items)"
    return short_text(repr(value))


def shown_value(value: Any) -> Any:
    """``value`` as an error repeats it: itself when short, else the start of its repr."""
    if isinstance(value, (str, list, dict, tuple)) and len(value) > MAX_SHOWN:
        return preview(value)
    return value
