"""TensorBoard: event files under ``output_path/tensorboard/``, one scalar per history key and epoch
(``step`` = epoch), and the config as hyperparameters with the best metrics (the HParams tab).

Written with the ``tensorboard`` package's own record writer and protos. Its ``EventFileWriter``
(which ``torch.utils.tensorboard`` uses too) goes through ``tensorboard.compat.tf``, which imports
all of TensorFlow when it is installed; a torch run should not pay seconds and hundreds of MB for
that, so the event file is opened here and framed by ``RecordWriter`` (length, CRCs) instead.

A resumed run appends a new event file to the same folder and writes only the epochs the folder
does not hold yet, so every step appears once. A fresh run in a folder that holds an earlier run's
event files replaces them (as it replaces that run's checkpoints and artifacts).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from .base import BackgroundLogger, RunEnd, RunStart

log = logging.getLogger("trainer")

FOLDER = "tensorboard"
EVENT_FILE_GLOB = "events.out.tfevents.*"
# The tag whose steps tell which epochs a folder already holds (every history entry has it).
_PROBE_TAG = "val_loss"
# The HParams plugin knows success, failure and running; a stopped run ended by request, not in error.
_STATUS = {"completed": "STATUS_SUCCESS", "early_stopped": "STATUS_SUCCESS", "stopped": "STATUS_SUCCESS",
           "failed": "STATUS_FAILURE"}
BEST_KEYS = ("loss", "accuracy", "mae", "epoch")


def tensorboard_dir(output_path: Path) -> Path:
    return Path(output_path) / FOLDER


def hparam_values(config: dict[str, Any]) -> dict[str, Any]:
    """The config as hyperparameters: numbers, booleans and strings; lists as JSON text; None left out."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return out


def logged_steps(folder: Path, tag: str = _PROBE_TAG) -> set[int]:
    """Steps of ``tag`` in the event files of ``folder`` (read with tensorboard's own reader)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

    steps: set[int] = set()
    for path in sorted(folder.glob(EVENT_FILE_GLOB)):
        reader = PyRecordReader_New(str(path), 0, "", None)
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                break
            except errors.DataLossError:     # a file cut short by a crash: keep what precedes the cut
                log.warning("%s ends in a damaged record (a crash while writing?); the rest is skipped", path)
                break
            event = event_pb2.Event.FromString(reader.record())
            if any(v.tag == tag for v in event.summary.value):
                steps.add(int(event.step))
    return steps


class TensorBoardLogger(BackgroundLogger):
    """Writes each epoch's history entry as TensorBoard scalars; see the module docstring."""

    title = "TensorBoard"

    def __init__(self, output_path: Path):
        super().__init__()
        self.directory = tensorboard_dir(output_path)
        self._file: Any = None
        self._writer: Any = None
        self._logged: set[int] = set()
        self._started_at = time.time()
        self._trial = Path(output_path).name

    def __repr__(self) -> str:
        return f"<TensorBoard logger {str(self.directory)!r}>"

    # ------------------------------------------------------------------ writing
    def open(self, start: RunStart) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        self._started_at = start.started_at
        if not start.resumed and self.directory.is_dir():
            old = list(self.directory.glob(EVENT_FILE_GLOB))
            if old:
                log.warning("%s held %d event file(s) of an earlier run; this new run replaces them",
                            self.directory, len(old))
                for path in old:
                    path.unlink()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._logged = logged_steps(self.directory) if start.resumed else set()
        # The name EventFileWriter gives its files. TensorBoard reads them in name order, so a
        # resumed run's file must sort after the earlier ones, also when both began in one second.
        stamp = max([int(time.time())] + [_stamp(p) + 1 for p in self.directory.glob(EVENT_FILE_GLOB)])
        name = f"events.out.tfevents.{stamp:010d}.{socket.gethostname()}.{os.getpid()}.{id(self) & 0xFFFF}"
        self._file = open(self.directory / name, "wb")
        self._writer = RecordWriter(self._file)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self._write_hparams(start.config)
        for entry in start.history:        # epochs the folder lacks (tensorboard added on resume)
            self._write_epoch(entry)
        self._writer.flush()

    def log_epoch(self, entry: dict[str, Any]) -> None:
        self.log_epochs([entry])

    def log_epochs(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            self._write_epoch(entry)
        self._writer.flush()       # flushed per write, so TensorBoard shows each epoch while training

    def log_config_change(self, change: dict[str, Any]) -> None:
        """A text summary ``config_change`` at the change's epoch (TensorBoard's Text tab)."""
        import numpy as np
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.text import metadata
        from tensorboard.util import tensor_util

        summary = summary_pb2.Summary()      # what the text plugin's text_pb builds, without its TensorFlow import
        summary.value.add(tag="config_change", metadata=metadata.create_summary_metadata(display_name=None, description=None),
                          tensor=tensor_util.make_tensor_proto(describe_change(change), dtype=np.object_))
        self._write(self._event_pb2.Event(wall_time=change["time"], step=int(change["epoch"]), summary=summary))
        self._writer.flush()

    def close(self, end: RunEnd) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        if end.best_metrics:
            values = [summary_pb2.Summary.Value(tag=f"best/{key}", simple_value=float(value))
                      for key, value in end.best_metrics.items() if _is_number(value)]
            self._write(self._event_pb2.Event(wall_time=time.time(), step=end.epochs_done,
                                              summary=summary_pb2.Summary(value=values)))
        # The session's end, as hparams_pb writes its start (tensorboard's own session_end_pb lives
        # in a module that imports TensorFlow).
        info = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(
            status=getattr(api_pb2, _STATUS.get(end.state, "STATUS_UNKNOWN")), end_time_secs=time.time()))
        summary = summary_pb2.Summary()
        summary.value.add(tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(info),
                          tensor=metadata.NULL_TENSOR)
        self._write(self._event_pb2.Event(wall_time=time.time(), step=0, summary=summary))
        self._writer.close()

    def abort(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    # ------------------------------------------------------------------ events
    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())

    def _write_epoch(self, entry: dict[str, Any]) -> None:
        from tensorboard.compat.proto import summary_pb2

        epoch = int(entry["epoch"])
        if epoch in self._logged:
            return
        values = [summary_pb2.Summary.Value(tag=key, simple_value=float(value))
                  for key, value in entry.items() if key != "epoch" and _is_number(value)]
        self._write(self._event_pb2.Event(wall_time=time.time(), step=epoch, summary=summary_pb2.Summary(value=values)))
        self._logged.add(epoch)

    def _write_hparams(self, config: dict[str, Any]) -> None:
        from tensorboard.plugins.hparams import summary_v2 as hp

        values = hparam_values(config)
        # The HParams tab shows these beside the config; a run fills those of its task.
        metrics = [hp.Metric(f"best/{key}", display_name=f"best {key}") for key in BEST_KEYS]
        experiment = hp.hparams_config_pb(hparams=[hp.HParam(name) for name in values], metrics=metrics,
                                          time_created_secs=self._started_at)
        session = hp.hparams_pb(values, trial_id=self._trial, start_time_secs=self._started_at)
        for summary in (experiment, session):
            self._write(self._event_pb2.Event(wall_time=time.time(), step=0, summary=summary))


def describe_change(change: dict[str, Any]) -> str:
    """A steered change in words: where it applied and each field's old and new value."""
    fields = "; ".join(f"{k}: {v['old']!r} -> {v['new']!r}" for k, v in change["changes"].items())
    return f"epoch {change['epoch']}, after batch {change['batch']} (step {change['step']}): {fields}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stamp(path: Path) -> int:
    """The seconds field of an event file's name (0 when it has none)."""
    field = path.name.split(".")[3:4]
    return int(field[0]) if field and field[0].isdigit() else 0
