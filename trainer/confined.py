"""Opening a file inside a folder so that no symbolic link can lead the open outside it.

A path checked in one process and opened later (by a worker, on resume) can be swapped for a
symbolic link in between. :func:`open_confined` therefore walks the path one component at a time
from a handle on the folder, opening each with ``O_NOFOLLOW``: a component that is a link, at
open time, is refused instead of followed. :func:`confined_path` checks a name written in a file
(``metadata.json``) before that: relative, no ``..``, and not leading outside through a link.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath
from typing import BinaryIO, Union

PathLike = Union[str, os.PathLike]
# O_NOFOLLOW and O_DIRECTORY exist on Linux and macOS; elsewhere (Windows) the walk still checks
# each component with lstat before opening it.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)     # a FIFO planted in place of the file must not hang the open
_DIR_FDS = os.open in os.supports_dir_fd


class ConfinementError(PermissionError):
    """A path that would leave its folder (absolute, ``..``, a symbolic link) or is no regular file."""


def confined_path(root: PathLike, name: object, what: str = "path") -> Path:
    """The resolved path of ``name`` (relative to ``root``); ConfinementError if it is absolute,
    holds ``..``, or leads outside ``root`` through a symbolic link."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ConfinementError(f"{what} {name!r} is not a file name inside the folder")
    pure = PurePath(name)
    if pure.is_absolute() or pure.drive or ".." in pure.parts:
        raise ConfinementError(f"{what} {name!r} must name a file inside the folder, without '..' and not "
                               f"as an absolute path")
    base = Path(root).resolve()
    resolved = (base / pure).resolve()
    if not resolved.is_relative_to(base):
        raise ConfinementError(f"{what} {name!r} is a symbolic link that leads outside the folder")
    return resolved


def open_confined(root: PathLike, path: PathLike) -> BinaryIO:
    """Open ``path`` (inside ``root``, absolute or relative to it) for reading in binary mode,
    following no symbolic link below ``root``.

    Raises ConfinementError when the path leaves ``root`` as written, when any of its components
    below ``root`` is a symbolic link at the moment of opening, or when it is no regular file;
    FileNotFoundError when it does not exist. ``root`` itself may be or contain links: it is the
    caller's own choice of folder."""
    base = Path(root).resolve()
    target = Path(path)
    if target.is_absolute():
        if not target.is_relative_to(base):
            raise ConfinementError("the file is not inside the allowed folder")
        target = target.relative_to(base)
    parts = [p for p in target.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ConfinementError("the path must name a file inside the allowed folder, without '..'")
    if not _DIR_FDS:
        return _open_by_lstat(base, parts)
    fd = os.open(base, os.O_RDONLY | _DIRECTORY)
    try:
        for i, part in enumerate(parts):
            flags = os.O_RDONLY | _NOFOLLOW | (_NONBLOCK if i == len(parts) - 1 else _DIRECTORY)
            dir_fd, fd = fd, -1          # _step closes dir_fd, whatever happens
            fd = _step(dir_fd, part, flags)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfinementError("the path does not name a regular file")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return handle


def _step(dir_fd: int, name: str, flags: int) -> int:
    """Open ``name`` in ``dir_fd`` and close ``dir_fd``; a link there is refused, not followed."""
    try:
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        except OSError as exc:
            # ELOOP: the final component is a link; ENOTDIR: a folder component is a link (with
            # O_DIRECTORY|O_NOFOLLOW) or a file. Tell them apart with lstat, which follows nothing.
            try:
                is_link = stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
            except OSError:
                is_link = False
            if is_link:
                raise ConfinementError(f"{name!r} is a symbolic link; it is not followed here") from None
            if isinstance(exc, NotADirectoryError):
                raise ConfinementError(f"{name!r} is not a folder") from None
            raise
    finally:
        os.close(dir_fd)


def _open_by_lstat(base: Path, parts: list[str]) -> BinaryIO:
    current = base
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise ConfinementError(f"{part!r} is a symbolic link; it is not followed here")
    if not current.is_file():
        raise ConfinementError("the path does not name a regular file")
    return open(current, "rb")
