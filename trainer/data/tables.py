"""Reading a table file into a DataFrame: the one reader behind ``data_path`` everywhere.

The command line, ``python -m trainer.distributed``, the panel's ``data_path`` box and the HTTP
API's workers all read files here, so they accept the same files and fail with the same
:class:`~trainer.config.ConfigError` on field ``data_path``. CSV and TSV files may be compressed
(``.csv.gz``, ``.tsv.bz2``, ...); Parquet needs pyarrow (the ``parquet`` extra).
"""
from __future__ import annotations

import importlib.util
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

import pandas as pd

from ..config import ConfigError
from ..confined import ConfinementError, open_confined

# pandas' names for what a suffix compresses with; .zst needs the zstandard package.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}
TEXT_FORMATS = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")


def _zstd_available() -> bool:
    return importlib.util.find_spec("zstandard") is not None


def _supported() -> tuple[str, ...]:
    compressions = [s for s in COMPRESSIONS if s != ".zst" or _zstd_available()]
    return (*TEXT_FORMATS, *PARQUET_SUFFIXES,
            *(text + c for text in TEXT_FORMATS for c in compressions))


#: File-name endings :func:`read_table` reads (lower case; compare with ``name.lower().endswith``).
SUPPORTED_SUFFIXES: tuple[str, ...] = _supported()
SUPPORTED_TEXT = (".csv or .tsv (optionally compressed: " + ", ".join(
    c for c in COMPRESSIONS if c != ".zst" or _zstd_available()) + "), .parquet or .pq")


def table_format(path: Union[str, Path]) -> Optional[tuple[str, Optional[str]]]:
    """``(kind, compression)`` from the file name: kind ``"csv"``, ``"tsv"`` or ``"parquet"``,
    compression a pandas name or None; None for a name :func:`read_table` does not read."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in TEXT_FORMATS:
        return last[1:], compression
    if last in PARQUET_SUFFIXES and compression is None:
        return "parquet", None
    return None


def _problem(path: Union[str, Path], message: str) -> ConfigError:
    return ConfigError.single("data_path", str(path), message)


def read_table(path: Union[str, Path], root: Union[str, Path, None] = None) -> pd.DataFrame:
    """The table in ``path`` (CSV, TSV, Parquet, compressed CSV/TSV) as a DataFrame.

    With ``root`` (the HTTP API's workers), ``path`` must lie inside that folder and is opened
    with :func:`trainer.confined.open_confined`: a symbolic link anywhere below ``root`` is
    refused at the moment of opening, and the message quotes nothing from the file.

    Raises :class:`ConfigError` on field ``data_path`` naming the problem and the fix: a
    missing file, an unsupported file type, content that cannot be read, pyarrow missing.
    """
    p = Path(path).expanduser()
    fmt = table_format(p)
    if fmt is None:
        if p.name.lower().endswith(tuple(t + ".zst" for t in TEXT_FORMATS)):
            raise _problem(path, f"reading {p.name!r} (zstd-compressed) needs the zstandard package: "
                                 f"pip install zstandard, or compress it with gzip instead")
        raise _problem(path, f"unsupported file type {p.name!r}; use a {SUPPORTED_TEXT} file")
    source: Any = p
    if root is not None:
        source = _open_inside(root, p, path)
    elif not p.exists():
        raise _problem(path, f"no file at {str(path)!r} (the path does not exist); give the path of an "
                             f"existing {SUPPORTED_TEXT} file")
    elif not p.is_file():
        raise _problem(path, f"{str(path)!r} is a folder, not a file; name a file inside it")
    kind, compression = fmt
    try:
        with source if root is not None else nullcontext(source) as src:
            if kind == "parquet":
                return pd.read_parquet(src)
            if compression == "zstd" and not _zstd_available():
                raise ImportError("zstandard")
            return pd.read_csv(src, sep=TEXT_FORMATS["." + kind], compression=compression)
    except ImportError as exc:
        if kind == "parquet":
            raise _problem(path, f"reading Parquet needs pyarrow ({exc}): pip install pyarrow "
                                 f"(or the package's 'parquet' extra), or use a CSV file") from None
        raise _problem(path, f"reading {p.name!r} (zstd-compressed) needs the zstandard package: "
                             f"pip install zstandard, or compress it with gzip instead") from None
    except pd.errors.EmptyDataError:
        raise _problem(path, f"{p.name!r} is empty (no header row, no data); write the table into it") from None
    except MemoryError:
        raise
    except Exception as exc:
        # Broken compression, a binary file named .csv, bad encoding, a damaged Parquet file: each
        # library raises its own exception type, and all of them mean the same to the user.
        what = {"csv": "CSV", "tsv": "tab-separated (TSV)", "parquet": "Parquet"}[kind]
        what = f"a {compression}-compressed {what}" if compression else f"a {what}"
        # A decoder's message may quote the file's bytes: only the parser's (line and field
        # counts) is shown for a file opened for someone else.
        detail = str(exc)[:300] if root is None or isinstance(exc, pd.errors.ParserError) else ""
        raise _problem(path, f"could not read {p.name!r} as {what} file "
                             f"({type(exc).__name__}{': ' + detail if detail else ''}); "
                             f"check that the file is one") from None


def read_head(path: Any, f: Path, kind: str, compression: Optional[str], rows: int = 1000,
              root: Union[str, Path, None] = None) -> pd.DataFrame:
    """The first ``rows`` rows of a CSV/TSV file (for its columns and types); with ``root`` the file
    is opened inside it, like :func:`read_table` does."""
    try:
        source = _open_inside(root, f, path) if root is not None else nullcontext(f)
        with source as src:
            return pd.read_csv(src, sep=TEXT_FORMATS["." + kind], compression=compression, nrows=rows)
    except ConfigError:
        raise
    except Exception as exc:
        raise _problem(path, f"could not read {f.name!r} as a {kind.upper()} file ({type(exc).__name__}); "
                             f"check that the file is one") from None


def _open_inside(root: Union[str, Path], p: Path, path: Union[str, Path]) -> BinaryIO:
    try:
        return open_confined(root, p)
    except ConfinementError as exc:
        raise _problem(path, f"cannot read {p.name!r}: {exc}; name the file itself, inside the server's root "
                             f"directory") from None
    except FileNotFoundError:
        raise _problem(path, f"no file {p.name!r} there (it was moved or deleted); give the path of an "
                             f"existing {SUPPORTED_TEXT} file") from None
    except OSError as exc:
        raise _problem(path, f"cannot open {p.name!r}: {exc.strerror or type(exc).__name__}") from None
