"""When a run in this process writes checkpoints, and what goes into one.

A checkpoint holds the run's :class:`~trainer.state.RunState` (``to_dict``), the backend's state
(weights, optimiser, RNG streams), the config, the fitted preprocessing and a fingerprint of the
prepared data, so :func:`trainer.resume.plan_resume` can continue the run exactly. Files and their
format are ``trainer.checkpoints``' business.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from .checkpoints import (Checkpoint, CheckpointError, CheckpointWriter, checkpoint_dir, prepared_fingerprint,
                          clear_earlier_run, refuse_foreign_checkpoints)

if TYPE_CHECKING:
    from .handle import RunHandle

log = logging.getLogger("trainer")


class RunCheckpoints:
    """One run's checkpoint cadence (``checkpoint_every_*``) and writes. ``write`` runs off the
    event loop, between slices of batches."""

    def __init__(self, run: "RunHandle", writer: CheckpointWriter):
        self.run = run
        self.writer = writer
        config = run.config
        self.every_epochs = config.checkpoint_every_epochs
        self.every_batches = config.checkpoint_every_batches
        self.every_seconds = config.checkpoint_every_seconds
        self.last_path: Optional[Path] = None
        self.written = 0
        self._last_time = time.monotonic()
        self._fingerprint: Optional[str] = None

    @classmethod
    def open(cls, run: "RunHandle", resumed_from: Optional[Checkpoint], overwrite: bool) -> Optional["RunCheckpoints"]:
        """The run's checkpointing, or None without ``output_path`` or with ``checkpoints=False``.
        A resumed run continues its checkpoints; a fresh one replaces an earlier run's only when
        built with ``overwrite=True`` (refused otherwise, also if they appeared since it was built)."""
        config = run.config
        if not config.output_path:
            return None
        writer = CheckpointWriter(checkpoint_dir(config.output_path), config.checkpoint_keep)
        if resumed_from is not None:
            if not config.checkpoints:
                return None
            writer.continue_from(resumed_from)
            return cls(run, writer)
        refuse_foreign_checkpoints(config.output_path, overwrite)
        clear_earlier_run(writer, config.output_path)    # also without checkpoints of its own
        return cls(run, writer) if config.checkpoints else None

    # ------------------------------------------------------------------ cadence
    def slice_end(self, batch: int, num_batches: int) -> int:
        """Where the next slice must end so a batch-cadence checkpoint lands on its batch."""
        if self.every_batches is None:
            return num_batches
        return min(num_batches, (batch // self.every_batches + 1) * self.every_batches)

    def due_mid_epoch(self, batch: int, num_batches: int) -> bool:
        if not 0 < batch < num_batches:
            return False
        return bool(self.every_batches and batch % self.every_batches == 0) or self._time_due()

    def due_epoch_end(self, epoch: int) -> bool:
        return epoch % self.every_epochs == 0 or self._time_due()

    def _time_due(self) -> bool:
        return self.every_seconds is not None and time.monotonic() - self._last_time >= self.every_seconds

    # ------------------------------------------------------------------ files
    def write_best(self, snapshot: Any) -> Path:
        """The weights of the epoch that just improved, kept apart from the rotation."""
        run = self.run
        state = {"kind": "best", "epoch": run.current_epoch, "metrics": run.history[-1], "seed": run.seed,
                 "config": run.config.to_saved_dict()}
        with self._failing_clearly():
            return self.writer.write_best(run.current_epoch, state, {"weights": run.backend.encode_weights(snapshot)})

    def write(self, final_state: Optional[str] = None, reason: Optional[str] = None,
              epoch_totals: Optional[dict[str, Any]] = None, epoch_elapsed: float = 0.0) -> Path:
        """A checkpoint at the run's position; mid-epoch (when batches of the next epoch are done)
        it holds that epoch's partial metric sums and active seconds too."""
        run = self.run
        state = {**run.run_state.to_dict(epoch_totals, epoch_elapsed), **self._context(), "final_state": final_state, "reason": reason,
                 "written_at": time.time()}
        with self._failing_clearly():
            members = run.backend.checkpoint_state()
            self.last_path = self.writer.write(state["epoch"], state["batch"], run.run_state.best_epoch, state, members)
        self.written += 1
        self._last_time = time.monotonic()
        return self.last_path

    def _context(self) -> dict[str, Any]:
        """What a resume checks the config and the DataFrame against."""
        run = self.run
        data = run.data
        if self._fingerprint is None:
            self._fingerprint = prepared_fingerprint(data)
        return {"backend": run.config.backend, "config": run.config.to_saved_dict(),
                "preprocessing": data.preprocessor.to_dict(),
                "data": {"rows": data.n_rows, "train": data.n_train, "validation": data.n_val,
                         "sha256": self._fingerprint},
                "custom_model": bool(getattr(run.backend, "custom_model", False))}

    @contextlib.contextmanager
    def _failing_clearly(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise CheckpointError(f"could not write a checkpoint to {str(self.writer.directory)!r} ({exc}); "
                                  f"free disk space or fix the folder's permissions, then resume from the "
                                  f"last checkpoint; or train with checkpoints=False") from exc
