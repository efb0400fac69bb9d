"""Checkpoint files: everything needed to continue a run exactly, written atomically.

A checkpoint is one zip file (stored, not compressed) holding ``state.json`` (the loop's state:
position, history, early-stopping and schedule state, seed, config, preprocessing, a fingerprint of
the prepared data) and the backend's own members (model, optimiser and RNG state). Zip gives every
member a CRC, so a truncated or corrupt file is detected on load; a file is written to a temporary
name, synced and renamed, so a process killed at any moment leaves the earlier checkpoints intact.

Files under ``<output_path>/checkpoints/``:

- ``ckpt-EEEEEE-BBBBBB.zip``: ``E`` epochs done and ``B`` batches done in the next one; the newest
  ``keep`` are kept.
- ``best-EEEEEE.zip``: the weights at the end of best epoch ``E``, written when an epoch improves.
  A best file is kept while any kept checkpoint may still need it (its best epoch is ``E`` or later).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import warnings
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .atomic import atomic_write_bytes, json_default
from .config import ConfigError

log = logging.getLogger("trainer")

FORMAT_VERSION = 1
DIRNAME = "checkpoints"
_NAME = re.compile(r"ckpt-(\d{6,})-(\d{6,})\.zip$")
_BEST = re.compile(r"best-(\d{6,})\.zip$")
_PARTIAL = re.compile(r"\.(ckpt-\d{6,}-\d{6,}|best-\d{6,})\.zip\..+\.tmp$")


class CheckpointError(RuntimeError):
    """No usable checkpoint: none written, every one unreadable, or the run cannot continue."""


class ResumeMismatch(CheckpointError):
    """The config or data given for resuming differs from the checkpoint's; ``differences`` lists
    each as ``{"field", "checkpoint", "given", "message"}``."""

    def __init__(self, what: str, differences: list[dict[str, Any]], hint: str = ""):
        self.differences = differences
        lines = "\n".join(f"  - {d['field']}: {d['message']}" for d in differences)
        super().__init__(f"cannot resume: the {what} differs from the checkpoint's:\n{lines}"
                         + (f"\n{hint}" if hint else ""))


class OutputPathInUse(ConfigError, CheckpointError):
    """``output_path`` holds another run's checkpoints or saved files, which a new run would replace.

    ``run`` is what its newest checkpoint (or, without one, its saved files) says (see
    :func:`describe_run`); ``resumable`` is whether it has checkpoints to continue from. Both a
    ConfigError naming ``output_path`` (so forms show it beside that field) and a CheckpointError."""

    def __init__(self, output_path: str | Path, run: Optional[dict[str, Any]], resumable: bool = True):
        self.output_path = str(output_path)
        self.run = run
        self.resumable = resumable
        if resumable:
            message = (f"holds the checkpoints of another run ({run_summary(run)}); a new run would delete them. "
                       f"To continue that run: Trainer.from_checkpoint({self.output_path!r}, df); to replace it: "
                       f"Trainer(config, df, overwrite=True); or choose another output_path")
        else:
            message = (f"holds the saved files of another run ({run_summary(run) if run else 'its history is unreadable'}: "
                       f"{', '.join(saved_run_files(output_path))}); a new run would replace them. To replace "
                       f"that run: Trainer(config, df, overwrite=True); or choose another output_path")
        super().__init__([{"field": "output_path", "value": self.output_path, "message": message}])
        self.args = (f"output_path {self.output_path!r} {message}",)


@dataclass
class Checkpoint:
    """One checkpoint read back and verified."""

    path: Path
    state: dict[str, Any]            # the loop's state (JSON)
    members: dict[str, bytes]        # the backend's files

    @property
    def position(self) -> tuple[int, int]:
        """(epochs done, batches done in the next epoch)."""
        return int(self.state["epoch"]), int(self.state["batch"])

    @property
    def best_epoch(self) -> Optional[int]:
        return self.state["early_stopping"].get("best_epoch")


def checkpoint_dir(output_path: str | Path) -> Path:
    return Path(output_path).expanduser() / DIRNAME


def has_checkpoints(output_path: str | Path | None) -> bool:
    """Whether ``output_path`` holds checkpoints a run could resume from (not verified)."""
    if not output_path:
        return False
    try:
        return bool(list_checkpoints(checkpoint_dir(output_path)))
    except OSError:
        return False


def describe_run(output_path: str | Path) -> Optional[dict[str, Any]]:
    """What the newest readable checkpoint in ``output_path`` says about its run: ``epoch`` and
    ``batch`` done, ``epochs`` planned and ``final_state`` (None: the run never ended, it was killed or
    is still training); None when there is no readable checkpoint. Reads only its state member."""
    for path in reversed(list_checkpoints(checkpoint_dir(output_path))):
        try:
            with zipfile.ZipFile(path) as zf:
                state = json.loads(zf.read("state.json"))
            return {"epoch": int(state["epoch"]), "batch": int(state["batch"]),
                    "epochs": int(state["config"]["epochs"]), "final_state": state.get("final_state")}
        except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError, EOFError):
            continue
    return None


def run_summary(run: Optional[dict[str, Any]]) -> str:
    """``describe_run``'s answer in words, e.g. "stopped after epoch 7 of 1000"."""
    if run is None:
        return "no readable checkpoint"
    state, epoch, batch = run["final_state"] or "interrupted or still training", run["epoch"], run["batch"]
    done = [f"epoch {epoch} of {run['epochs']}"] if epoch else []
    done += [f"{batch} batches of epoch {epoch + 1}"] if batch else []
    return f"{state} after {' and '.join(done)}" if done else f"{state} before its first checkpointed batch"


# What a run saves at its output_path (trainer/artifacts.py and the backends' savers); a folder
# holding any of the first six holds a run (a stray evaluation.json or table alone does not make one).
SAVED_RUN_FILES = ("metadata.json", "config.json", "history.json", "model.pt", "model.keras", "model.weights.h5",
                   "model_module.pt", "preprocessing.json", "history.csv", "evaluation.json")
_RUN_MARKERS = SAVED_RUN_FILES[:6]


def saved_run_files(output_path: str | Path | None, names: tuple[str, ...] = _RUN_MARKERS) -> list[str]:
    """The files of a saved run in ``output_path`` that say a run was saved there (``names``: of
    :data:`SAVED_RUN_FILES`), in that order."""
    if not output_path:
        return []
    folder = Path(output_path).expanduser()
    return [name for name in names if (folder / name).exists()]


def remove_saved_run(output_path: str | Path) -> int:
    """Remove the saved files of an earlier run from ``output_path`` (a run replacing it, allowed
    by ``overwrite``); return how many there were."""
    folder = Path(output_path).expanduser()
    names = saved_run_files(folder, SAVED_RUN_FILES)
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return len(names)


def clear_earlier_run(writer: "CheckpointWriter", output_path: str | Path) -> int:
    """Remove an earlier run's checkpoints (``writer``'s directory) and saved files from
    ``output_path``, for a fresh run allowed to replace it: a folder never mixes two runs' files."""
    removed = writer.start_fresh() + remove_saved_run(output_path)
    if removed:
        log.info("output_path %s: replaced %d checkpoint and saved file(s) of an earlier run (overwrite=True)",
                 output_path, removed)
    return removed


def holds_run(output_path: str | Path | None) -> bool:
    """Whether ``output_path`` holds another run a new one would replace: checkpoints or saved files."""
    return has_checkpoints(output_path) or bool(saved_run_files(output_path))


def describe_saved_run(output_path: str | Path) -> Optional[dict[str, Any]]:
    """:func:`describe_run`'s answer from a run's saved ``history.json`` and ``config.json`` (a run
    without checkpoints); None when they are unreadable."""
    folder = Path(output_path).expanduser()
    try:
        saved = json.loads((folder / "history.json").read_text())
        epochs = json.loads((folder / "config.json").read_text())["epochs"]
        return {"epoch": len(saved.get("history") or []), "batch": 0, "epochs": int(epochs),
                "final_state": saved.get("state")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def refuse_foreign_checkpoints(output_path: str | Path | None, overwrite: bool = False) -> None:
    """Raise OutputPathInUse when ``output_path`` holds another run's checkpoints or saved files,
    which a new run would replace, unless ``overwrite``."""
    if overwrite or not output_path:
        return
    if has_checkpoints(output_path):
        raise OutputPathInUse(output_path, describe_run(output_path))
    if saved_run_files(output_path):
        raise OutputPathInUse(output_path, describe_saved_run(output_path), resumable=False)


def saved_config(output_path: str | Path) -> dict[str, Any]:
    """The config of the run checkpointed in ``output_path`` (from its newest readable checkpoint)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return dict(load_latest(checkpoint_dir(output_path)).state["config"])


def data_fingerprint(x: np.ndarray, y: np.ndarray, train_index: np.ndarray, val_index: np.ndarray) -> str:
    """SHA-256 of the prepared arrays and the split: equal only for the same data, encoded alike."""
    h = hashlib.sha256()
    for a in (x, y, train_index, val_index):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def prepared_fingerprint(data: Any) -> str:
    """:func:`data_fingerprint` of prepared data; streamed data's own (its values, hashed in the first pass)."""
    if getattr(data, "streamed", False):
        return "stream:" + data.fingerprint
    return data_fingerprint(data.x, data.y, data.train_index, data.val_index)


# ---------------------------------------------------------------------- one file

def encode(state: dict[str, Any], members: dict[str, bytes]) -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(f"backend/{name}", data)
        # state.json goes last: a file cut short anywhere lacks it, its directory, or a valid CRC.
        text = json.dumps({"format_version": FORMAT_VERSION, **state}, allow_nan=True, default=json_default)
        zf.writestr("state.json", text)
    return buf.getvalue()


def decode(path: Path) -> Checkpoint:
    """Read and verify one checkpoint; CheckpointError if it is unreadable or corrupt."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise CheckpointError(f"{path.name}: member {bad} fails its CRC check")
            state = json.loads(zf.read("state.json"))
            members = {n[len("backend/"):]: zf.read(n) for n in zf.namelist() if n.startswith("backend/")}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path.name} is unreadable ({type(exc).__name__}: {exc})") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path.name} has format {state.get('format_version')!r}; "
                              f"this version of the trainer reads format {FORMAT_VERSION}")
    return Checkpoint(path, state, members)


# ---------------------------------------------------------------------- a directory

def _scan(directory: Path, pattern: re.Pattern[str]) -> list[tuple[tuple[int, ...], Path]]:
    if not directory.is_dir():
        return []
    found = [(tuple(int(g) for g in m.groups()), p) for p in directory.iterdir() if (m := pattern.match(p.name))]
    return sorted(found)


def list_checkpoints(directory: Path) -> list[Path]:
    """Rotating checkpoints, oldest first."""
    return [p for _, p in _scan(directory, _NAME)]


def best_path(directory: Path, epoch: int) -> Path:
    return directory / f"best-{epoch:06d}.zip"


def load_latest(directory: Path, accept: Optional[Callable[[Checkpoint], None]] = None) -> Checkpoint:
    """The newest checkpoint that reads back intact (and that ``accept`` does not refuse by raising
    CheckpointError), with a RuntimeWarning for each newer one skipped."""
    candidates = list_checkpoints(directory)
    if not candidates:
        raise CheckpointError(f"no checkpoints in {str(directory)!r}: was the run started with this "
                              f"output_path and checkpoints=True, and did it finish an epoch?")
    problems = []
    for path in reversed(candidates):
        try:
            ckpt = decode(path)
            if accept is not None:
                accept(ckpt)
        except ResumeMismatch:
            raise
        except CheckpointError as exc:
            problems.append(str(exc))
            warnings.warn(f"skipping checkpoint {exc}; falling back to an older one", RuntimeWarning, stacklevel=2)
            continue
        return ckpt
    raise CheckpointError(f"every checkpoint in {str(directory)!r} is unusable: " + "; ".join(problems))


def load_best(directory: Path, epoch: int) -> Checkpoint:
    """The best-weights file of ``epoch``; CheckpointError if it is missing or corrupt."""
    path = best_path(directory, epoch)
    if not path.exists():
        raise CheckpointError(f"{path.name} (the weights of best epoch {epoch}) is missing")
    return decode(path)


class CheckpointWriter:
    """Writes one run's checkpoints into ``directory``, rotating to the newest ``keep``."""

    def __init__(self, directory: Path, keep: int):
        self.directory = Path(directory)
        self.keep = keep
        self._best_epochs: dict[Path, Optional[int]] = {}   # kept checkpoint -> its best epoch

    def start_fresh(self) -> int:
        """Remove the checkpoints of an earlier run in this directory; return how many there were."""
        self._remove_partial_writes()
        old = [p for _, p in _scan(self.directory, _NAME) + _scan(self.directory, _BEST)]
        for path in old:
            path.unlink(missing_ok=True)
        return len(old)

    def continue_from(self, ckpt: Checkpoint) -> None:
        """Prepare to continue after ``ckpt``: files from later positions (unusable, or written after
        it by the run that died) go, and the kept checkpoints' best epochs are noted for pruning."""
        self._remove_partial_writes()
        position = ckpt.position
        for key, path in _scan(self.directory, _NAME):
            if key > position:
                path.unlink(missing_ok=True)
        for (epoch,), path in _scan(self.directory, _BEST):
            if epoch > position[0]:
                path.unlink(missing_ok=True)
        for path in list_checkpoints(self.directory):
            if path == ckpt.path:
                self._best_epochs[path] = ckpt.best_epoch
                continue
            try:
                self._best_epochs[path] = decode(path).best_epoch
            except CheckpointError:
                path.unlink(missing_ok=True)       # older and unreadable: of no use to anyone

    def write(self, epoch: int, batch: int, best_epoch: Optional[int], state: dict[str, Any],
              members: dict[str, bytes]) -> Path:
        """Write the checkpoint at (``epoch`` done, ``batch`` into the next) and rotate."""
        path = self.directory / f"ckpt-{epoch:06d}-{batch:06d}.zip"
        atomic_write_bytes(path, encode(state, members))
        self._best_epochs[path] = best_epoch
        kept = list_checkpoints(self.directory)
        for old in kept[:-self.keep]:
            old.unlink(missing_ok=True)
            self._best_epochs.pop(old, None)
        self._prune_best(kept[-self.keep:])
        return path

    def write_best(self, epoch: int, state: dict[str, Any], members: dict[str, bytes]) -> Path:
        path = best_path(self.directory, epoch)
        atomic_write_bytes(path, encode(state, members))
        return path

    def _remove_partial_writes(self) -> None:
        # Temporary files of writes that a killed process never renamed (see atomic.py).
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if _PARTIAL.match(path.name):
                    path.unlink(missing_ok=True)

    def _prune_best(self, kept: list[Path]) -> None:
        # Best epochs only grow along a run, so no kept checkpoint needs a file older than the
        # smallest best epoch among them (a checkpoint before any improvement needs none).
        needed = [e for e in (self._best_epochs.get(p) for p in kept) if e is not None]
        if not needed:
            return
        oldest = min(needed)
        for (epoch,), path in _scan(self.directory, _BEST):
            if epoch < oldest:
                path.unlink(missing_ok=True)


def describe_differences(saved: dict[str, Any], given: dict[str, Any], keys: Optional[list[str]] = None,
                         saved_name: str = "checkpoint", given_name: str = "given") -> list[dict[str, Any]]:
    """Each key whose value differs between two flat dicts, as ``{"field", "checkpoint", "given",
    "message"}``."""
    out = []
    for key in keys if keys is not None else sorted(set(saved) | set(given)):
        a, b = saved.get(key), given.get(key)
        if a != b:
            out.append({"field": key, "checkpoint": a, "given": b,
                        "message": f"{saved_name} has {_short(a)}, {given_name} {_short(b)}"})
    return out


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...]"
