"""Which files a ``data_path`` names: one table file, a folder of Parquet files, or a glob of them.

A folder means every ``.parquet``/``.pq`` file below it, at any depth (names starting with ``.`` or
``_`` skipped, as Spark and pyarrow skip ``_SUCCESS``, ``_metadata`` and ``.crc`` files); a glob
(``*``, ``?``, ``[...]``, and ``**`` for any number of folders) must match Parquet files only. The
files come sorted by their path, so their rows have one order everywhere (the split is by row
position).

With ``root`` (the HTTP API) the path must lie inside that folder and no symbolic link below it is
followed: a link that a folder or glob would take in is refused by name, and error messages name
paths relative to ``root`` only. Without ``root`` (the user's own files) links are followed.
"""
from __future__ import annotations

import os
import stat
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from ..config import ConfigError
from ..confined import ConfinementError, open_confined
from .tables import PARQUET_SUFFIXES, SUPPORTED_TEXT, read_table, table_format

if TYPE_CHECKING:
    import pandas as pd

    from .table_info import TableInfo

PathLike = Union[str, "os.PathLike[str]"]
GLOB_CHARS = frozenset("*?[")
SKIPPED_PREFIXES = (".", "_")


def is_glob(path: PathLike) -> bool:
    """Whether ``path`` is a pattern (holds ``*``, ``?`` or ``[``) rather than a name."""
    return any(c in GLOB_CHARS for c in str(path))


def is_parquet(path: PathLike) -> bool:
    return str(path).lower().endswith(PARQUET_SUFFIXES)


def _problem(shown: str, message: str) -> ConfigError:
    return ConfigError.single("data_path", shown, message)


def table_files(path: PathLike, root: Optional[PathLike] = None) -> list[Path]:
    """The files ``path`` names (see the module docstring): ``[path]`` for one table file, the
    Parquet files of a folder or glob in path order. Raises ConfigError on ``data_path`` saying
    what is wrong and what would fix it (nothing there, no Parquet file, a non-Parquet match, a
    link with ``root``)."""
    p, base, shown = _located(path, root)
    parts = p.parts
    magic = next((i for i, part in enumerate(parts) if is_glob(part)), None)
    literal = Path(*parts[:magic]) if magic is not None else p
    if base is not None:
        _refuse_links_on_the_way(base, literal, shown)
    if magic is not None:
        files = _walk(literal, list(parts[magic:]), base, shown, lambda name: True)
        return _only_parquet(files, shown, base, f"no file matches {shown!r}; check the pattern, e.g. "
                                                 f"'data/part-*.parquet'")
    try:
        info = os.stat(p) if base is None else os.lstat(p)
    except FileNotFoundError:
        raise _problem(shown, f"no file at {shown!r} (the path does not exist); give the path of an existing "
                              f"{SUPPORTED_TEXT} file, a folder of Parquet files, or a glob such as "
                              f"'data/part-*.parquet'") from None
    except OSError as exc:
        raise _problem(shown, f"cannot use {shown!r}: {exc.strerror or type(exc).__name__}") from None
    if stat.S_ISDIR(info.st_mode):
        files = _walk(p, ["**", "*"], base, shown, is_parquet)
        return _only_parquet(files, shown, base, f"the folder {shown!r} holds no Parquet file (.parquet or .pq)")
    if not stat.S_ISREG(info.st_mode):
        raise _problem(shown, f"{shown!r} is no regular file or folder; name a table file or a folder of them")
    if table_format(p) is None:
        raise _problem(shown, f"unsupported file type {p.name!r}; use a {SUPPORTED_TEXT} file, a folder of Parquet "
                              f"files or a glob of them")
    return [p]


def _located(path: PathLike, root: Optional[PathLike]) -> tuple[Path, Optional[Path], str]:
    """``path`` as a path to open (inside ``root`` when given), the resolved root, the path as shown."""
    text = os.fspath(path)
    base = Path(root).resolve() if root is not None else None
    shown = _shown(text, base)
    return (Path(text).expanduser() if base is None else _inside(base, text, shown)), base, shown


def _shown(text: str, base: Optional[Path]) -> str:
    """``text`` as messages may quote it: relative to ``root`` when there is one."""
    if base is not None and PurePath(text).is_absolute() and PurePath(text).is_relative_to(base):
        return str(PurePath(text).relative_to(base)) or "."
    return text


def _inside(base: Path, text: str, shown: str) -> Path:
    pure = PurePath(text)
    if pure.is_absolute():
        if not pure.is_relative_to(base):
            raise _problem(shown, "the path is not inside the allowed folder; give a path inside it")
        pure = pure.relative_to(base)
    if ".." in pure.parts:
        raise _problem(shown, "the path must stay inside the allowed folder: leave out '..'")
    return base / pure


def _refuse_links_on_the_way(base: Path, literal: Path, shown: str) -> None:
    current = base
    for part in literal.relative_to(base).parts:
        current = current / part
        if current.is_symlink():
            raise _problem(shown, f"{str(current.relative_to(base))!r} is a symbolic link; it is not followed here: "
                                  f"name the files themselves, inside the server's root directory")


def _walk(top: Path, pattern: list[str], base: Optional[Path], shown: str, keep: Callable[[str], bool]
          ) -> list[Path]:
    """The files below ``top`` whose relative path matches ``pattern`` (parts; ``**`` any folders)
    and whose name ``keep`` accepts."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, rel: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _problem(shown, f"cannot list {_rel(folder, base)!r}: {exc.strerror or type(exc).__name__}") from None
        for entry in entries:
            names = (*rel, entry.name)
            if _skipped(entry.name, pattern, len(rel)):
                continue
            is_dir = entry.is_dir()
            wanted = _may_lead(names, pattern) if is_dir else keep(entry.name) and _matches(names, pattern)
            if not wanted:
                continue
            if base is not None and entry.is_symlink():
                raise _link(entry.path, base, shown)
            if is_dir:
                key = (entry.stat().st_dev, entry.stat().st_ino)
                if key not in seen:         # a link loop (followed without root) is walked once
                    seen.add(key)
                    visit(Path(entry.path), names)
            elif entry.is_file():
                found.append(Path(entry.path))

    visit(top, ())
    return found


def _skipped(name: str, pattern: list[str], depth: int) -> bool:
    # A pattern part that itself starts with "." or "_" asks for such names.
    part = pattern[depth] if depth < len(pattern) else ""
    return name.startswith(SKIPPED_PREFIXES) and not part.startswith(SKIPPED_PREFIXES)


def _matches(names: tuple[str, ...], pattern: list[str]) -> bool:
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_matches(names[i:], pattern[1:]) for i in range(len(names) + 1))
    return bool(names) and fnmatchcase(names[0], pattern[0]) and _matches(names[1:], pattern[1:])


def _may_lead(names: tuple[str, ...], pattern: list[str]) -> bool:
    """Whether a path below the folder ``names`` could match ``pattern``."""
    if not names:
        return bool(pattern)
    if not pattern:
        return False
    if pattern[0] == "**":
        return True
    return fnmatchcase(names[0], pattern[0]) and _may_lead(names[1:], pattern[1:])


def _rel(path: Union[str, Path], base: Optional[Path]) -> str:
    return str(Path(path).relative_to(base)) if base is not None else str(path)


def _link(path: str, base: Path, shown: str) -> ConfigError:
    return _problem(shown, f"{_rel(path, base)!r} is a symbolic link; it is not followed here: put the file itself "
                           f"inside the server's root directory, or leave it out of {shown!r}")


def _only_parquet(files: list[Path], shown: str, base: Optional[Path], none_found: str) -> list[Path]:
    if not files:
        raise _problem(shown, f"{none_found}; a folder or glob names Parquet files (or one CSV or TSV file)")
    if len(files) == 1 and table_format(files[0]) is not None:
        return files
    other = next((f for f in files if not is_parquet(f)), None)
    if other is not None:
        raise _problem(shown, f"{shown!r} takes in {_rel(other, base)!r}, which is no Parquet file; a glob must "
                              f"match Parquet files only, or one CSV or TSV file")
    return files


def open_file(f: PathLike, root: Optional[str], shown: object) -> Any:
    """``f`` as pyarrow should open it: its path, or with ``root`` a file opened inside that folder
    with no symbolic link followed at this moment (:func:`trainer.confined.open_confined`)."""
    if root is None:
        return str(f)
    try:
        return open_confined(root, f)
    except ConfinementError as exc:
        raise _problem(str(shown), f"cannot read {Path(f).name!r}: {exc}; name files inside the server's root "
                                   f"directory") from None
    except FileNotFoundError:
        raise _problem(str(shown), f"{Path(f).name!r} is no longer there (moved or deleted); put it back") from None
    except OSError as exc:
        raise _problem(str(shown), f"cannot open {Path(f).name!r}: {exc.strerror or type(exc).__name__}") from None


def read_info(info: "TableInfo") -> "pd.DataFrame":
    """The whole table ``info`` describes, as a DataFrame (the in-memory path): one text file with
    :func:`~.tables.read_table`, Parquet files concatenated in path order; inside ``info.root``
    when it has one."""
    if info.kind != "parquet":
        return read_table(info.files[0], root=info.root)
    import pyarrow.dataset as pa_ds

    from ..confined_fs import confined_filesystem

    shown = info.files[0] if len(info.files) == 1 else str(Path(info.files[0]).parent)
    filesystem = confined_filesystem(info.root) if info.root is not None else None
    try:
        return pa_ds.dataset(info.files, filesystem=filesystem, format="parquet").to_table().to_pandas()
    except ConfinementError as exc:
        raise _problem(shown, f"cannot read the table: {exc}; name files inside the server's root directory") from None
    except MemoryError:
        raise
    except Exception as exc:
        # Only the exception's type for files read for someone else: pyarrow's message may quote values.
        detail = f": {str(exc)[:300]}" if info.root is None else ""
        raise _problem(shown, f"could not read the table's Parquet files ({type(exc).__name__}{detail}); check "
                              f"that every file is one, with the same columns and types") from None
