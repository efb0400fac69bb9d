"""A run's files without a shared filesystem: the actor's output folder mirrored on the driver's side.

A Ray actor trains with ``output_path`` in a temporary folder on its node. :class:`FolderMirror`
notices what changed there (files written or rewritten, files deleted) and turns it into ``file``
and ``file_removed`` messages (``trainer.protocol``) that the actor sends before the event that
follows, so whoever hears of an epoch already holds its checkpoint; :func:`apply_file_message`
writes them atomically into the driver's own output folder. :func:`resume_files` reads what a new
actor needs to continue a run from that folder.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Optional

from .. import protocol
from ..atomic import atomic_write_bytes
from ..checkpoints import DIRNAME
from ..loggers.mlflow_logger import RECORD_FILE

# What a file looked like when it was last sent: a rewrite (atomic: a new inode) or an append changes it.
Signature = tuple[int, int, int]
_TAIL = 64      # bytes kept of each file sent, to tell an append from a rewrite in place


def _in_progress(name: str) -> bool:
    """A temporary file of an atomic write (``.name.XXXX.tmp``, see ``trainer.atomic``): the
    finished file follows under its own name."""
    return name.startswith(".") and name.endswith(".tmp")


def _json_text(text: str) -> bytes:
    return json.dumps(text)[1:-1].encode()


class FolderMirror:
    """What changed in ``root`` since the last look, as protocol messages. ``rename`` (the folder's
    own path, the path the driver knows it by) is applied to the top-level JSON files, which name
    the folder they were written in (``config.json``'s output_path)."""

    def __init__(self, root: Path, rename: Optional[tuple[str, str]] = None, known: Iterable[str] = ()):
        self.root = Path(root)
        self._rename = (_json_text(rename[0]), _json_text(rename[1])) if rename else None
        current = self._scan()
        # Files the driver already has (sent for a resume): only a change to them goes back.
        self._sent: dict[str, Signature] = {rel: current[rel] for rel in known if rel in current}
        self._tails: dict[str, bytes] = {}      # the last bytes sent of each file (an append continues them)

    def _scan(self) -> dict[str, Signature]:
        found: dict[str, Signature] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            base = Path(folder)
            for name in sorted(files):
                if _in_progress(name):
                    continue
                try:
                    st = (base / name).stat()
                except OSError:          # removed meanwhile
                    continue
                found[(base / name).relative_to(self.root).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return found

    def changes(self) -> list[protocol.Message]:
        """``file`` messages for new and changed files (checkpoints first: an artifact names them),
        then ``file_removed`` for the files that went. A file that only grew (the same inode: a
        TensorBoard event file being appended to) sends the bytes added since the last look."""
        current = self._scan()
        out: list[protocol.Message] = []
        for rel in sorted(current, key=lambda r: (not r.startswith(DIRNAME + "/"), r)):
            before, now = self._sent.get(rel), current[rel]
            if before == now:
                continue
            renamed = self._rename is not None and "/" not in rel and rel.endswith(".json")
            offset = before[1] if before is not None and before[0] == now[0] and before[1] <= now[1] \
                and not renamed else 0
            try:
                offset, data = self._read(rel, offset)
            except OSError:              # removed between the scan and the read: its removal follows
                current.pop(rel)
                continue
            # What was read is what the driver has: the size of the next look's offset.
            current[rel] = (now[0], offset + len(data), now[2])
            self._tails[rel] = (self._tails.get(rel, b"") + data)[-_TAIL:] if offset else data[-_TAIL:]
            if renamed:
                data = data.replace(*self._rename)
            if offset and not data:      # touched, not grown
                continue
            out.append(protocol.file_appended(rel, offset, data) if offset else protocol.file_written(rel, data))
        out += [protocol.file_removed(rel) for rel in sorted(self._sent.keys() - current.keys())]
        self._sent = current
        self._tails = {rel: tail for rel, tail in self._tails.items() if rel in current}
        return out

    def _read(self, rel: str, offset: int) -> tuple[int, bytes]:
        """(offset, the bytes of ``rel`` from there): from ``offset`` when the bytes just before it
        are still those sent last (an append), else the whole file (rewritten in place)."""
        with open(self.root / rel, "rb") as fh:
            tail = self._tails.get(rel, b"")
            if offset and tail:
                fh.seek(offset - len(tail))
                if fh.read(len(tail)) == tail:
                    return offset, fh.read()
            fh.seek(0)
            return 0, fh.read()


def _target(root: Path, rel: Any) -> Path:
    path = PurePosixPath(rel) if isinstance(rel, str) else None
    if path is None or not rel or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"a file message names {rel!r}, which is not a path inside the output folder")
    return Path(root) / path


def apply_file_message(root: Path, message: protocol.Message) -> None:
    """Write (atomically), extend (a ``file`` message with an ``offset``) or delete the file a ``file`` /
    ``file_removed`` message names under ``root``."""
    target = _target(root, message.get("path"))
    offset = message.get("offset")
    if message["kind"] != protocol.FILE:
        target.unlink(missing_ok=True)
    elif offset:
        # An append to a file the driver holds up to ``offset`` (a log that only grows). O_NOFOLLOW:
        # a link planted in the output folder must not send the bytes elsewhere.
        fd = os.open(target, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ValueError(f"{target.name} is not a regular file here, so the bytes that came cannot extend it")
        with os.fdopen(fd, "wb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size != offset:
                raise ValueError(f"{target.name} holds {size} bytes here, and the bytes that came continue "
                                 f"it from byte {offset}")
            fh.write(message["data"])
    else:
        atomic_write_bytes(target, message["data"])


def resume_files(output_path: Path) -> dict[str, bytes]:
    """What a new actor needs to continue the run saved in ``output_path``: its checkpoints (every
    kept one, so an unreadable newest one falls back as it does locally) and the MLflow run's record
    (so the run goes on logging to the same MLflow run)."""
    root = Path(output_path)
    wanted = [p for p in sorted((root / DIRNAME).glob("*")) if p.is_file() and not _in_progress(p.name)]
    if (root / RECORD_FILE).is_file():
        wanted.append(root / RECORD_FILE)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in wanted}


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Put ``files`` (relative path -> content) under ``root``, as the actor does before a resume."""
    for rel, data in files.items():
        atomic_write_bytes(_target(root, rel), data)
