"""What a table file holds, told from its metadata: the files of a Parquet folder or glob, the
schema, the row count. Nothing here reads the table's rows (a CSV/TSV file's first block is read
for its column types, since a text file has no other schema).

A table is one of: a Parquet file; a folder of Parquet files (every ``*.parquet``/``*.pq`` in it,
sorted by name, as Spark and DuckDB write them); a glob such as ``data/part-*.parquet``; a CSV or
TSV file (optionally compressed). Every problem is a :class:`~trainer.config.ConfigError` on
``data_path`` naming the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ..config import ConfigError
from .table_files import open_file
from .table_files import table_files as confined_table_files
from .tables import PARQUET_SUFFIXES, SUPPORTED_TEXT, table_format

GLOB_CHARS = "*?["
STREAMED_COMPRESSIONS = (None, "gzip", "bz2", "zstd")     # what pyarrow's CSV reader decompresses


@dataclass(frozen=True)
class TableInfo:
    """A table's files, its columns and their types, its row count (None for CSV/TSV: known
    after the first pass)."""

    files: list[str]
    kind: str                                   # "parquet" | "csv" | "tsv"
    schema: dict[str, str]                      # column -> Arrow type name
    rows: Optional[int]
    compression: Optional[str] = None
    row_groups: list[int] = field(default_factory=list)   # per Parquet file
    arrow_schema: Any = field(default=None, repr=False, compare=False)
    root: Optional[str] = None                  # with the HTTP API: every file is opened inside it (no link followed)

    @property
    def size_bytes(self) -> int:
        return sum(Path(f).stat().st_size for f in self.files)


def _problem(path: Any, message: str) -> ConfigError:
    return ConfigError.single("data_path", str(path), message)


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise _problem("", f"streaming a table needs pyarrow ({exc}): pip install pyarrow "
                           f"(or the package's 'parquet' extra)") from None
    return pq


def is_streamable(path: Union[str, Path]) -> bool:
    """Whether ``path`` names a table :func:`describe_table` reads (a file of a known type, a
    folder or a glob), judged from the name and, for a folder, its existence."""
    text = str(path)
    return (any(ch in text for ch in GLOB_CHARS) or Path(text).expanduser().is_dir()
            or table_format(text) is not None)


def table_files(path: Union[str, Path]) -> tuple[list[Path], str, Optional[str]]:
    """``(files, kind, compression)`` for a file, a folder of Parquet files or a glob (listed by
    :func:`trainer.data.table_files.table_files`)."""
    files = confined_table_files(path)
    fmt = table_format(files[0]) if len(files) == 1 else None
    return (files, *fmt) if fmt is not None else (files, "parquet", None)


def describe_table(path: Union[str, Path], root: Union[str, Path, None] = None) -> TableInfo:
    """The files, schema and row count of the table at ``path``, from metadata only. With
    ``root`` (the HTTP API) the files are listed and opened inside that folder, no link followed
    (:mod:`trainer.data.table_files`)."""
    if root is not None:
        files = confined_table_files(path, root)
        kind, compression = table_format(files[0]) if len(files) == 1 else ("parquet", None)
        root = str(Path(root).resolve())
    else:
        files, kind, compression = table_files(path)
    if kind == "parquet":
        return _describe_parquet(path, files, root)
    return _describe_text(path, files[0], kind, compression, root)


def _describe_parquet(path: Any, files: list[Path], root: Optional[str] = None) -> TableInfo:
    pq = _pyarrow()
    schema, rows, groups = None, 0, []
    for f in files:
        if f.stat().st_size == 0:
            raise _problem(path, f"{f.name!r} is empty (0 bytes); write the table into it or remove it")
        source = open_file(f, root, path)
        try:
            meta = pq.ParquetFile(source).metadata
        except Exception as exc:
            raise _problem(path, f"could not read {f.name!r} as a Parquet file ({type(exc).__name__}); check that "
                                 f"the file is one") from None
        finally:
            if root is not None:
                source.close()
        file_schema = meta.schema.to_arrow_schema()
        if schema is None:
            schema, first = file_schema, f
        elif not file_schema.equals(schema):
            raise _problem(path, f"{f.name!r} has another schema than {first.name!r} "
                                 f"({_schema_difference(schema, file_schema)}); every file of a table must have "
                                 f"the same columns and types: rewrite the odd file or leave it out")
        rows += meta.num_rows
        groups.append(meta.num_row_groups)
    if rows == 0:
        raise _problem(path, "the table has no rows; write data into it")
    return TableInfo([str(f) for f in files], "parquet", {n.name: str(n.type) for n in schema}, rows,
                     None, groups, schema, root)


def _schema_difference(a: Any, b: Any) -> str:
    a_cols, b_cols = dict(zip(a.names, a.types)), dict(zip(b.names, b.types))
    missing = [c for c in a_cols if c not in b_cols]
    if missing:
        return f"no column {missing[0]!r}"
    extra = [c for c in b_cols if c not in a_cols]
    if extra:
        return f"an extra column {extra[0]!r}"
    odd = next((c for c in a_cols if a_cols[c] != b_cols[c]), None)
    if odd is not None:
        return f"column {odd!r} is {b_cols[odd]}, not {a_cols[odd]}"
    return "the columns are in another order"


def _describe_text(path: Any, f: Path, kind: str, compression: Optional[str], root: Optional[str] = None
                   ) -> TableInfo:
    from .text_reader import open_text

    if f.stat().st_size == 0:
        raise _problem(path, f"{f.name!r} is empty (no header row, no data); write the table into it")
    if compression not in STREAMED_COMPRESSIONS:
        # A zip archive cannot be streamed (read_table still reads it whole): types from its first rows.
        import pyarrow as pa
        from .tables import read_head

        schema = pa.Schema.from_pandas(read_head(path, f, kind, compression, root=root), preserve_index=False)
        return TableInfo([str(f)], kind, {n.name: str(n.type) for n in schema}, None, compression, [], schema, root)
    with open_text(path, f, kind, compression, root) as reader:
        schema = reader.schema
    return TableInfo([str(f)], kind, {n.name: str(n.type) for n in schema}, None, compression, [], schema, root)


NUMERIC_OR_TEXT = ("int", "uint", "float", "double", "halffloat", "bool", "string", "large_string", "dictionary",
                   "null", "decimal")


def check_columns(info: TableInfo, columns: list[str], role: dict[str, str]) -> None:
    """Refuse columns that are not in the table or hold neither numbers nor text (``role``:
    column -> config field to name)."""
    errors = []
    for c in columns:
        field_name = role.get(c, "feature_columns")
        if c not in info.schema:
            errors.append({"field": field_name, "value": c,
                           "message": f"column {c!r} is not in the table; it has {list(info.schema)[:20]}"})
        elif not info.schema[c].startswith(NUMERIC_OR_TEXT):
            errors.append({"field": field_name, "value": c,
                           "message": f"column {c!r} holds {info.schema[c]}, neither numbers nor text; drop it "
                                      f"from feature_columns or convert it when writing the file"})
    if errors:
        raise ConfigError(errors)

