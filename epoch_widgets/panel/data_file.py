"""The panel's data when it is given as a file (``data_path``) rather than a DataFrame: read with
the trainer's one table reader (CSV, TSV, Parquet, compressed), once per path."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from trainer import ConfigError
from trainer.data.tables import read_table


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
            except ConfigError as exc:
                self.error = "; ".join(e["message"] for e in exc.errors)
        return True
