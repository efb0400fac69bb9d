"""Where a task's data comes from and where its model goes, kept inside the server's folders.

``data_path`` (a table file, a folder of Parquet files or a glob of them) is resolved inside the
server's root directory and ``output_path`` inside the models directory. A relative path is taken relative to that folder, and an absolute path that lies inside
it is used as is. For ``output_path`` a leading ``/models`` stands for the models directory, so
The documented example ``/models/deep_learning_model`` is ``<models_dir>/deep_learning_model``. Anything else
that would leave the folder (another absolute path, ``..``, a symbolic link pointing out) is refused.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any, Optional

from trainer import ConfigError
from trainer.redaction import redact_text
from trainer.data.table_files import is_glob, table_files
from trainer.data.tables import SUPPORTED_SUFFIXES, SUPPORTED_TEXT

from .errors import BadRequest

MODELS_MOUNT = PurePath("/models")   # how the documented example names the models directory
# Linux's limits (NAME_MAX, PATH_MAX): longer names fail in the file system with "File name too long".
NAME_MAX = 255
PATH_MAX = 4096


def _problem(field: str, value: object, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", [{"field": field, "value": value, "message": message}])


def _inside(base: Path, value: object, field: str, folder: str, mount: PurePath | None = None) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _problem(field, value, f"give a path inside the {folder} as a non-empty string")
    if "\0" in value:
        raise _problem(field, value, "the path contains a NUL character")
    too_long = [part for part in PurePath(value).parts if len(os.fsencode(part)) > NAME_MAX]
    if too_long or len(os.fsencode(value)) > PATH_MAX:
        raise _problem(field, value, f"the path is too long: each folder or file name may have at most {NAME_MAX} "
                                     f"bytes, the whole path {PATH_MAX}")
    base = base.resolve()
    raw = PurePath(value)
    try:
        if mount is not None and raw.is_absolute() and raw.is_relative_to(mount) \
                and not Path(raw).resolve().is_relative_to(base):
            raw = raw.relative_to(mount)
        resolved = (base / raw).resolve()
    except (OSError, RuntimeError) as exc:        # e.g. a symbolic link loop
        raise _problem(field, value, f"cannot use this path: {_os_reason(exc)}") from None
    if not resolved.is_relative_to(base):
        hint = " (or starting with /models/)" if mount is not None else ""
        raise _problem(field, value, f"the path leads outside the {folder}; give a path inside it, "
                                     f"relative to it{hint}, without '..' or links that point out")
    return resolved


def resolve_data_path(value: object, root_dir: Path) -> Path:
    """The data for ``data_path`` inside ``root_dir``: a table file trainer.data.tables reads, a folder of
    Parquet files or a glob of them (``trainer.data.table_files``: no symbolic link below the root taken in)."""
    if value is None:
        raise _problem("data_path", None, "required: name the CSV or Parquet file (or a folder or glob of Parquet "
                                          "files) to train on, relative to the server's root directory")
    path = _inside(Path(root_dir), value, "data_path", "server's root directory")
    if not is_glob(path) and not _query(path, "data_path", value, Path.exists):
        if not path.name.lower().endswith(SUPPORTED_SUFFIXES):
            raise _problem("data_path", value, f"unsupported file type {path.name!r}; use a {SUPPORTED_TEXT} file, "
                                               f"a folder of Parquet files or a glob of them")
        shown = path.relative_to(Path(root_dir).resolve())
        raise _problem("data_path", value, f"no such file or folder {str(shown)!r} in the server's root directory")
    check_data_files(path, root_dir, value)
    return path


def check_data_files(path: Path, root_dir: Path, value: object) -> None:
    """BadRequest on ``data_path`` unless ``path`` names readable table files inside ``root_dir`` now."""
    try:
        table_files(path, root=root_dir)
    except ConfigError as exc:
        raise _problem("data_path", value, exc.errors[0]["message"]) from None


def resolve_output_path(value: object, models_dir: Path) -> Path:
    """The folder for ``output_path`` inside ``models_dir`` (created when the run saves)."""
    path = _inside(Path(models_dir), value, "output_path", "models directory", mount=MODELS_MOUNT)
    if path == Path(models_dir).resolve():
        raise _problem("output_path", value, "name a folder inside the models directory, not the directory itself")
    if _query(path, "output_path", value, Path.exists) and not _query(path, "output_path", value, Path.is_dir):
        raise _problem("output_path", value, "a file with that name exists; choose a folder name")
    return path


def _os_reason(exc: BaseException) -> str:
    # strerror only: str(OSError) names the absolute path, which answers must not show.
    return getattr(exc, "strerror", None) or type(exc).__name__


def _query(path: Path, field: str, value: object, test: Any) -> bool:
    try:
        return bool(test(path))
    except OSError as exc:
        raise _problem(field, value, f"cannot use this path: {_os_reason(exc)}") from None


def shown_output_dir(output_dir: Optional[Path], models_dir: Path) -> Optional[str]:
    """``output_dir`` as clients name it: ``/models/<folder>``."""
    if output_dir is None:
        return None
    return str(MODELS_MOUNT / Path(output_dir).relative_to(Path(models_dir).resolve()))


class PathRedactor:
    """Replaces the server's own absolute folders in text meant for clients: the models directory
    becomes ``/models``, the root directory a relative path, the task records ``<tasks_dir>``;
    credentials in URIs become ``***``."""

    def __init__(self, root_dir: Path, models_dir: Path, tasks_dir: Path):
        names = {str(Path(models_dir).resolve()): str(MODELS_MOUNT), str(Path(tasks_dir).resolve()): "<tasks_dir>"}
        root = str(Path(root_dir).resolve())
        if root != "/":
            names[root + "/"] = ""
            names[root] = "."
        # Longest first, and only whole path components ("/srv/models2" is not "/srv/models").
        ordered = sorted(names, key=len, reverse=True)
        self._names = names
        self._pattern = re.compile("|".join(re.escape(n) + (r"" if n.endswith("/") else r"(?![\w.\-])")
                                            for n in ordered))

    def text(self, value: str) -> str:
        """``value`` without the server's folders and without credentials in URIs."""
        if "/" not in value:
            return value
        return redact_text(self._pattern.sub(lambda m: self._names[m.group(0)], value))
