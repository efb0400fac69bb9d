"""The panel's data when it is given as a file (``data_path``) rather than a DataFrame.

``read_table`` is the small loader the panel uses until ``trainer`` has a shared one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd


def read_table(path: str) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; ValueError with the reason and the fix."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"no file at {path!r}; give the path of a .csv or .parquet file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt", ".tsv"):
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
    except Exception as exc:
        raise ValueError(f"could not read {path!r}: {type(exc).__name__}: {exc}") from None
    raise ValueError(f"{path!r} is neither CSV nor Parquet; use a .csv or .parquet file")


class DataFile:
    """The table at the current data_path, read once per path; ``error`` says why there is none."""

    def __init__(self) -> None:
        self.path: Optional[str] = None
        self.data: Optional[pd.DataFrame] = None
        self.error = ""

    def load(self, text: str) -> bool:
        """Read ``text`` unless it is the path already read; True when the data changed."""
        text = text.strip()
        if text == (self.path or ""):
            return False
        self.path = text or None
        self.data, self.error = None, ""
        if text:
            try:
                self.data = read_table(text)
            except ValueError as exc:
                self.error = str(exc)
        return True
