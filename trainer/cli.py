"""Headless training from the command line, with a console progress display.

    epoch-train --demo                                   # generated data, 20 epochs
    epoch-train --data data.csv --config config.json --set epochs=50 --set model_type=lstm
    epoch-train --data data.csv --resume models/run1          # continue from its last checkpoint
    epoch-train --data parts/ --set streaming=true --set target_column=label   # a folder of Parquet files, streamed
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from .checkpoints import CheckpointError
from .config import ConfigError, TrainingConfig
from .events import Callback
from .handle import RunHandle
from .metrics import score_name
from .run import Trainer
from .data.table_info import is_streamable
from .data.tables import read_table


class ConsoleProgress(Callback):
    """One line per epoch plus an in-place batch counter when the output is a terminal."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def _print(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def on_train_begin(self, run: RunHandle, data: dict) -> None:
        self._print(f"Training {run.config.model_type} ({run.data.task}, backend {run.config.backend} on "
                    f"{run.device_name}) for {data['total_epochs']} epochs\n")

    def on_batch_end(self, run: RunHandle, data: dict) -> None:
        if self.tty:
            self._print(f"\r  epoch {data['epoch']}: batch {data['batch']}/{data['num_batches']} "
                        f"loss {data['loss']:.4f}")

    def on_epoch_end(self, run: RunHandle, data: dict) -> None:
        m = data["metrics"]
        key = score_name(run.run_state.task)
        fmt = ".3f" if key == "accuracy" else ".4g"
        score = f"{key[:3]} {m[f'train_{key}']:{fmt}}/{m[f'val_{key}']:{fmt}}"
        mark = " *" if data["improved"] else ""
        self._print(("\r" if self.tty else "") +
                    f"epoch {m['epoch']:>4}/{run.total_epochs}  loss {m['train_loss']:.4f}/{m['val_loss']:.4f}  "
                    f"{score}  lr {m['learning_rate']:.3g}  {m['time_per_epoch']:.2f}s{mark}\n")

    def on_train_end(self, run: RunHandle, data: dict) -> None:
        self._print(f"{data['state']}: {data['reason']}\nbest: {data['best_metrics']}\n")


def parse_value(text: str) -> Any:
    """A --set value: JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _demo(kind: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    from . import datasets
    if kind == "regression":
        return datasets.make_regression(4000), {"target_column": "target", "learning_rate_scheduler": "cosine", "T_max": 20}
    if kind == "timeseries":
        return datasets.make_time_series(3000), {"target_column": "direction", "feature_columns": ["signal", "driver"],
                                                "model_type": "lstm", "sequence_length": 20}
    return datasets.make_classification(4000), {"target_column": "label", "learning_rate_scheduler": "plateau"}


class UsageError(Exception):
    """A bad file or argument: printed as one line, exit status 2."""


def read_config_file(path: str) -> dict[str, Any]:
    """A JSON config file as a dict; UsageError saying why not."""
    p = Path(path).expanduser()
    try:
        settings = json.loads(p.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read config file {str(p)!r}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"config file {str(p)!r} is not valid JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise UsageError(f"config file {str(p)!r} must hold a JSON object, got {type(settings).__name__}")
    return settings


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="epoch-train", description="Train a model epoch by epoch, headless.")
    ap.add_argument("--demo", nargs="?", const="classification", choices=["classification", "regression", "timeseries"],
                    help="train on generated data")
    ap.add_argument("--data", help="CSV, TSV (optionally compressed, e.g. .csv.gz) or Parquet file, a folder of Parquet "
                                   "files or a glob of them; streamed when it would not fit memory_budget_mb "
                                   "(--set streaming=true|false decides)")
    ap.add_argument("--config", help="JSON file with the training config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config field (JSON value)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the checkpoints of another run in output_path (refused otherwise)")
    ap.add_argument("--resume", metavar="OUTPUT_PATH",
                    help="continue the run checkpointed at OUTPUT_PATH on the same data (--set may change epochs)")
    args = ap.parse_args(argv)

    settings: dict[str, Any] = {"epochs": 20, "seed": 0}
    try:
        if args.demo:
            df, demo_settings = _demo(args.demo)
            settings.update(demo_settings)
        if args.config:
            settings.update(read_config_file(args.config))
        overrides: dict[str, Any] = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                ap.error(f"--set expects KEY=VALUE, got {item!r}")
            overrides[key] = parse_value(value)
        settings.update(overrides)
        data_path = args.data or settings.get("data_path")
        if not args.demo:
            if not data_path:
                ap.error("give --demo, or --data FILE (or data_path in the config)")
            # A table file goes to the run as its path: read whole, or streamed (the streaming setting).
            df = data_path if is_streamable(data_path) else read_table(data_path)
        if args.resume:
            run = Trainer.from_checkpoint(args.resume, df, callbacks=[ConsoleProgress()], **overrides)
        else:
            run = Trainer(TrainingConfig.from_dict(settings), df, callbacks=[ConsoleProgress()],
                          overwrite=args.overwrite)
    except (UsageError, ConfigError, CheckpointError) as exc:
        print(f"epoch-train: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    run.fit()
    print(f"{time.perf_counter() - started:.1f}s" + (f"; artifacts in {run.artifacts_path}" if run.artifacts_path else ""))
    for problem in run.observer_errors:      # a logger that failed (the run went on without it)
        print(f"epoch-train: warning: {problem}", file=sys.stderr)
    return 0 if run.state.value != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
