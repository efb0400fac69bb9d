"""A CSV/TSV file read as a stream of Arrow record batches of a fixed block size, so a file's
blocks are the same rows on every read (what the epoch plan and a resumed run rely on)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from ..config import ConfigError
from .table_files import open_file
from .values import hidden

# Bytes of text per block: the same on every read, so block k is always the same rows.
BLOCK_BYTES = 8 << 20
_ARROW_COMPRESSION = {None: None, "gzip": "gzip", "bz2": "bz2", "zstd": "zstd"}


@contextmanager
def open_text(path: Any, f: Path, kind: str, compression: Optional[str], root: Optional[str] = None
              ) -> Iterator[Any]:
    """A ``pyarrow.csv`` streaming reader over ``f``; ConfigError on field ``data_path``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if compression not in _ARROW_COMPRESSION:
        raise ConfigError.single("data_path", str(path), f"{f.name!r} is {compression}-compressed, which cannot be "
                                                         f"streamed; recompress it with gzip, or convert it to Parquet")
    stream = pa.input_stream(open_file(f, root, path), compression=_ARROW_COMPRESSION[compression])
    try:
        reader = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                                parse_options=pacsv.ParseOptions(delimiter="," if kind == "csv" else "\t"))
    except Exception as exc:
        stream.close()
        raise ConfigError.single("data_path", str(path), f"could not read {f.name!r} as a {kind.upper()} file "
                                                         f"({type(exc).__name__}); check that the file is one") from None
    try:
        yield reader
    finally:
        stream.close()


def text_batches(path: Any, f: Path, kind: str, compression: Optional[str], columns: list[str],
                 root: Optional[str] = None) -> Iterator[Any]:
    """The file's record batches (only ``columns``), in file order."""
    with open_text(path, f, kind, compression, root) as reader:
        names = reader.schema.names
        keep = [names.index(c) for c in columns]
        rows = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except Exception as exc:
                # pyarrow infers the types from the first block; a later block that does not
                # parse as them (a float in an integer column, text in a number column) ends here.
                detail = "" if hidden() else f" ({str(exc)[:200]})"
                raise ConfigError.single("data_path", str(path), f"{f.name!r} cannot be read past row {rows}"
                                         f"{detail}; a column's values change type there. Make the column's "
                                         f"type the same throughout (e.g. write 1.0, not 1), or convert the file to "
                                         f"Parquet") from None
            rows += batch.num_rows
            yield batch.select(keep)
