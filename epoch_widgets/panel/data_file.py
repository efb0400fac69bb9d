"""The panel's data when it is given as a file (``data_path``) rather than a DataFrame: a CSV/TSV
file, a Parquet file, or a folder or glob of Parquet files.

The table is first described from its metadata (``trainer.data.table_info.describe_table``: its
files, columns and types, row count), which the panel shows under the data controls. It is read
whole only when the run will hold it in memory (``streaming`` false, or ``"auto"`` and it fits
``memory_budget_mb``); otherwise the panel checks the columns against the schema alone and the
run streams the file itself.
"""
from __future__ import annotations

from html import escape
from typing import Any, Optional, Union

import ipywidgets as W
import pandas as pd

from trainer import ConfigError, TrainingConfig
from trainer.data import resolve_columns
from trainer.data.inputs import MIB, in_memory_bytes
from trainer.data.table_files import read_info
from trainer.data.table_info import TableInfo, check_columns, describe_table

from .. import theme

KINDS = {"parquet": "Parquet", "csv": "CSV", "tsv": "TSV"}
SHOWN_COLUMNS = 24          # columns named in the description; the rest are counted


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def describe_info(info: TableInfo, how: str) -> str:
    """A line of HTML: the table's kind, files, rows and columns, ``how`` a run reads it, and its
    columns with their types."""
    kind = KINDS.get(info.kind, info.kind)
    if info.compression:
        kind = f"{info.compression}-compressed {kind}"
    rows = _plural(info.rows, "row") if info.rows is not None else "rows counted when a run reads it"
    parts = [f"<b>{escape(kind)}</b>", *([_plural(len(info.files), "file")] if len(info.files) > 1 else []),
             rows, _plural(len(info.schema), "column")]
    columns = [f"{escape(name)} <span style='color:{theme.FG_MUTED}'>{escape(dtype)}</span>"
               for name, dtype in list(info.schema.items())[:SHOWN_COLUMNS]]
    more = len(info.schema) - SHOWN_COLUMNS
    if more > 0:
        columns.append(f"and {more:,} more")
    return (f"<div class='ew-table-info' style='font-size:12px;line-height:1.5'>{', '.join(parts)}; {escape(how)}"
            f"<br><span style='color:{theme.FG}'>{', '.join(columns)}</span></div>")


class DataFile:
    """The table at the current data_path (see the module docstring). ``info`` is its description,
    ``data`` the DataFrame when it is read whole, ``error`` why there is neither; ``view`` shows
    the description."""

    def __init__(self) -> None:
        self.path: Optional[str] = None
        self.info: Optional[TableInfo] = None
        self.data: Optional[pd.DataFrame] = None
        self.error = ""
        self.view = W.HTML(layout=W.Layout(display="none"))

    @property
    def streamed(self) -> bool:
        """Whether a run streams the table (the panel then holds no DataFrame of it)."""
        return self.info is not None and self.data is None

    def columns_frame(self) -> Optional[pd.DataFrame]:
        """What the columns are checked against: the DataFrame, or an empty one with the schema's types."""
        if self.data is not None or self.info is None:
            return self.data
        if self.info.arrow_schema is not None:
            return self.info.arrow_schema.empty_table().to_pandas()
        return pd.DataFrame(columns=list(self.info.schema))

    def column_errors(self, config: Optional[TrainingConfig]) -> dict[str, str]:
        """For a streamed table, the chosen columns the schema shows a run could not use (neither
        numbers nor text), by field; the DataFrame's own checks cover a table read whole."""
        frame = self.columns_frame()
        if config is None or not self.streamed or self.info is None or frame is None:
            return {}
        try:
            features, target = resolve_columns(config, frame)
            check_columns(self.info, [*features, target], {target: "target_column"})
        except ConfigError as exc:
            return {e["field"]: e["message"] for e in exc.errors}
        return {}

    def run_data(self) -> Union[pd.DataFrame, str, None]:
        """What a run is built from: the DataFrame, or the path for a run that streams it."""
        return self.data if self.data is not None else (self.path if self.info is not None else None)

    def load_from(self, controls: Any) -> bool:
        """:meth:`load` with the controls' data_path, streaming and memory_budget_mb."""
        budget = controls["memory_budget_mb"].value
        return self.load(controls["data_path"].value, controls["streaming"].value,
                         budget if isinstance(budget, int) and budget > 0 else 1024)

    def load(self, text: str, streaming: object = "auto", budget_mb: int = 1024) -> bool:
        """Describe the table at ``text`` (once per path) and read it whole when the run will hold
        it in memory, given ``streaming`` and ``budget_mb``; True when the data changed."""
        text = text.strip()
        changed = text != (self.path or "")
        if changed:
            self.path = text or None
            self.info, self.data, self.error = None, None, ""
            if text:
                try:
                    self.info = describe_table(text)
                except ConfigError as exc:
                    self.error = _message(exc)
        if self.info is not None:
            whole = streaming is False or (streaming == "auto" and in_memory_bytes(self.info) <= budget_mb * MIB)
            if whole and self.data is None and not self.error:
                try:
                    self.data = read_info(self.info)
                except ConfigError as exc:
                    self.error = _message(exc)
                changed = True
            elif not whole and self.data is not None:
                self.data, changed = None, True      # the run streams it: the panel holds no copy
        self._show(streaming, budget_mb)
        return changed

    def _show(self, streaming: object, budget_mb: int) -> None:
        if self.info is None:
            self.view.layout.display = "none"
            return
        if self.data is not None:
            how = "read into memory"
        elif streaming is True:
            how = "streamed in blocks (streaming is on)"
        else:
            need = in_memory_bytes(self.info) / MIB
            how = (f"streamed in blocks: reading it whole would take about {need:,.0f} MiB, more than the memory "
                   f"budget of {budget_mb:,} MiB")
        value = describe_info(self.info, how)
        if self.view.value != value:
            self.view.value = value
        self.view.layout.display = None


def _message(exc: ConfigError) -> str:
    return "; ".join(e["message"] for e in exc.errors)
