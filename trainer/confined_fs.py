"""A read-only pyarrow filesystem whose every open goes through :func:`trainer.confined.open_confined`.

``pyarrow.dataset`` (and Ray Data's ``read_parquet``) open files themselves, by path, following
links. For the HTTP API's tasks the files must be opened inside the server's root with no
symbolic link followed at the moment of opening (a file checked by the server may be swapped for
a link before the worker reads it), so their readers get ``confined_filesystem(root)``: a
``pyarrow.fs.PyFileSystem`` that answers ``get_file_info`` with ``lstat`` and opens with
``open_confined``. It pickles (Ray ships it to the read tasks of the cluster). Needs pyarrow
(the ``parquet`` extra).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Union

import pyarrow as pa
import pyarrow.fs as pafs

from .confined import ConfinementError, open_confined


class ConfinedHandler(pafs.FileSystemHandler):
    """``pyarrow.fs.FileSystemHandler`` for reading the files inside ``root`` (see the module docstring).

    Paths are absolute inside ``root`` or relative to it; writing is refused."""

    def __init__(self, root: Union[str, "os.PathLike[str]"]):
        self.root = str(Path(root).resolve())

    def __reduce__(self) -> tuple[Any, ...]:
        return ConfinedHandler, (self.root,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfinedHandler) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def get_type_name(self) -> str:
        return "epoch-widgets-confined"

    def normalize_path(self, path: str) -> str:
        return path

    def equals(self, other: Any) -> bool:
        return self == other

    def _absolute(self, path: str) -> str:
        full = os.path.normpath(os.path.join(self.root, path))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise ConfinementError("the file is not inside the allowed folder")
        return full

    def _info(self, path: str) -> Any:
        try:
            info = os.lstat(self._absolute(path))
        except FileNotFoundError:
            return pafs.FileInfo(path, pafs.FileType.NotFound)
        if stat.S_ISLNK(info.st_mode):
            raise ConfinementError(f"{os.path.basename(path)!r} is a symbolic link; it is not followed here")
        if stat.S_ISDIR(info.st_mode):
            return pafs.FileInfo(path, pafs.FileType.Directory, mtime_ns=info.st_mtime_ns)
        kind = pafs.FileType.File if stat.S_ISREG(info.st_mode) else pafs.FileType.Unknown
        return pafs.FileInfo(path, kind, size=info.st_size, mtime_ns=info.st_mtime_ns)

    def get_file_info(self, paths: list[str]) -> list[Any]:
        return [self._info(p) for p in paths]

    def get_file_info_selector(self, selector: Any) -> list[Any]:
        # Datasets here are built from explicit file lists (trainer.data.table_files), never by discovery.
        raise ConfinementError("listing folders is not supported here; name the files (trainer.data.table_files)")

    def open_input_file(self, path: str) -> Any:
        return pa.PythonFile(open_confined(self.root, self._absolute(path)), mode="r")

    def open_input_stream(self, path: str) -> Any:
        return self.open_input_file(path)

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfinementError("this filesystem only reads")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def confined_filesystem(root: Union[str, "os.PathLike[str]"]) -> Any:
    """A ``pyarrow.fs.PyFileSystem`` reading files inside ``root`` without following any link below it."""
    return pafs.PyFileSystem(ConfinedHandler(root))
