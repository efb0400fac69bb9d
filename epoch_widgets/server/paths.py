"""Where a task's data comes from and where its model goes, kept inside the server's folders.

``data_path`` is resolved inside the server's root directory and ``output_path`` inside the models
directory. A relative path is taken relative to that folder, and an absolute path that lies inside
it is used as is. For ``output_path`` a leading ``/models`` stands for the models directory, so
SPEC.md's ``/models/deep_learning_model`` is ``<models_dir>/deep_learning_model``. Anything else
that would leave the folder (another absolute path, ``..``, a symbolic link pointing out) is refused.
"""
from __future__ import annotations

from pathlib import Path, PurePath

from trainer.tables import SUPPORTED_SUFFIXES, SUPPORTED_TEXT

from .errors import BadRequest

MODELS_MOUNT = PurePath("/models")   # how SPEC.md's example names the models directory


def _problem(field: str, value: object, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", [{"field": field, "value": value, "message": message}])


def _inside(base: Path, value: object, field: str, folder: str, mount: PurePath | None = None) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _problem(field, value, f"give a path inside the {folder} as a non-empty string")
    if "\0" in value:
        raise _problem(field, value, "the path contains a NUL character")
    base = base.resolve()
    raw = PurePath(value)
    if mount is not None and raw.is_absolute() and raw.is_relative_to(mount) \
            and not Path(raw).resolve().is_relative_to(base):
        raw = raw.relative_to(mount)
    resolved = (base / raw).resolve()
    if not resolved.is_relative_to(base):
        hint = " (or starting with /models/)" if mount is not None else ""
        raise _problem(field, value, f"the path leads outside the {folder}; give a path inside it, "
                                     f"relative to it{hint}, without '..' or links that point out")
    return resolved


def resolve_data_path(value: object, root_dir: Path) -> Path:
    """The data file for ``data_path``: an existing file inside ``root_dir`` that trainer.tables reads."""
    if value is None:
        raise _problem("data_path", None, "required: name the CSV or Parquet file to train on, "
                                          "relative to the server's root directory")
    path = _inside(Path(root_dir), value, "data_path", "server's root directory")
    if not path.name.lower().endswith(SUPPORTED_SUFFIXES):
        raise _problem("data_path", value, f"unsupported file type {path.name!r}; use a {SUPPORTED_TEXT} file")
    if not path.is_file():
        shown = path.relative_to(Path(root_dir).resolve())
        raise _problem("data_path", value, f"no such file {str(shown)!r} in the server's root directory")
    return path


def resolve_output_path(value: object, models_dir: Path) -> Path:
    """The folder for ``output_path`` inside ``models_dir`` (created when the run saves)."""
    path = _inside(Path(models_dir), value, "output_path", "models directory", mount=MODELS_MOUNT)
    if path == Path(models_dir).resolve():
        raise _problem("output_path", value, "name a folder inside the models directory, not the directory itself")
    if path.exists() and not path.is_dir():
        raise _problem("output_path", value, "a file with that name exists; choose a folder name")
    return path
