"""Predicting a table file bigger than memory: its blocks are read in file order, transformed with
the saved preprocessor and predicted one at a time; windows (cnn, lstm, gru) carry the last
``sequence_length - 1`` rows of a block over to the next, so the predictions equal
``model.predict(whole_table)``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Union

import numpy as np
import pandas as pd

from .data.sources import open_source
from .data.table_info import describe_table

if TYPE_CHECKING:
    from .artifacts import TrainedModel


def predicted_blocks(model: "TrainedModel", path: Union[str, Path]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rows, predictions)`` block by block; a window's prediction is named by its last row."""
    source = open_source(describe_table(path))
    columns = model.feature_columns
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise ValueError(f"the table lacks feature columns {missing}; the model was trained on {columns}")
    window = model.preprocessor.sequence_length or 1
    carry: Optional[pd.DataFrame] = None
    row = 0
    for _, df in source.scan(columns):
        frame = df if carry is None else pd.concat([carry, df], ignore_index=True)
        first = row - (0 if carry is None else len(carry))      # the table row of frame's first row
        row += len(df)
        carry = frame.iloc[-(window - 1):] if window > 1 else None
        if len(frame) < window:
            continue
        yield np.arange(first + window - 1, first + len(frame)), model.predict(frame)


def predict_table(model: "TrainedModel", path: Union[str, Path], out_path: Union[str, Path, None] = None) -> Any:
    """Predictions for every row (or window) of the table at ``path``: an array, or with
    ``out_path`` a Parquet file of columns ``row`` and ``prediction`` written block by block (the
    path is returned)."""
    if out_path is None:
        parts = [p for _, p in predicted_blocks(model, path)]
        return np.concatenate(parts) if parts else np.empty(0)
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_path).expanduser()
    tmp = out.with_name(out.name + ".partial")
    writer = None
    try:
        for rows, predictions in predicted_blocks(model, path):
            table = pa.table({"row": rows, "prediction": predictions})
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"{Path(str(path)).name!r} has fewer rows than one window of {model.preprocessor.sequence_length}")
    tmp.replace(out)         # a reader never sees half a file
    return out
