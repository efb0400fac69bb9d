"""A data-file picker for a panel given no DataFrame (the Voilà app, ``notebooks/app.ipynb``): the
tables in a folder (files, and folders of Parquet files), a generated sample, or a file uploaded
from the browser. The choice goes into
the panel's ``data_path`` control; reading the file stays ``data_file``'s job.
"""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import ipywidgets as W

from trainer.datasets import make_classification
from trainer.data.table_files import SKIPPED_PREFIXES, is_parquet
from trainer.data.tables import SUPPORTED_SUFFIXES, table_format

if TYPE_CHECKING:
    from .training_panel import TrainingPanel

SAMPLE = "sample"           # the option value of the generated sample
SAMPLE_TARGET = "label"


class DataPicker:
    """``view``: a dropdown of the tables in ``folder`` (and a generated sample of ``sample_rows``
    rows), and an upload button; choosing one loads it into ``panel``."""

    def __init__(self, panel: "TrainingPanel", folder: Union[str, Path] = ".", sample_rows: int = 40_000):
        if panel.data_given:
            raise ValueError("the panel was given a DataFrame; a data-file picker is for a panel without one")
        self.panel = panel
        self.folder = Path(folder).expanduser()
        self.sample_rows = sample_rows
        self._scratch: Optional[Path] = None       # where the sample and uploads are written
        self.choice = W.Dropdown(description="Data file", options=self._options(), value=None,
                                 style={"description_width": "80px"}, layout=W.Layout(width="420px"),
                                 tooltip=f"CSV, TSV or Parquet files in {self.folder.resolve()}, or a sample")
        self.upload = W.FileUpload(accept=",".join(SUPPORTED_SUFFIXES), multiple=False, description="Upload",
                                   tooltip="Train on a file from this computer (CSV, TSV or Parquet)")
        self.view = W.HBox([self.choice, self.upload], layout=W.Layout(align_items="center", flex_flow="row wrap"))
        self.choice.observe(lambda change: self._chosen(change["new"]), "value")
        self.upload.observe(lambda change: self._uploaded(change["new"]), "value")

    def _options(self, extra: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, Optional[str]]]:
        entries = sorted(self.folder.iterdir()) if self.folder.is_dir() else []
        files = [p for p in entries if p.is_file() and table_format(p) is not None]
        # A folder of Parquet files (as Spark or DuckDB write a table) is one table.
        folders = [p for p in entries if p.is_dir() and not p.name.startswith(SKIPPED_PREFIXES)
                   and any(is_parquet(f) for f in p.iterdir())]
        return ([("(choose a data file)", None)] + [(p.name, str(p)) for p in files]
                + [(f"{p.name}/ (Parquet files)", str(p)) for p in folders] + list(extra)
                + [(f"sample: 2 classes, {self.sample_rows:,} rows (generated)", SAMPLE)])

    def _chosen(self, value: Optional[str]) -> None:
        if value is None:
            return
        # The dropdown may change on a subshell thread: the panel changes on its loop's thread.
        self.panel.actions.from_ui(lambda: self.load(value))

    def load(self, value: str) -> None:
        """Put the file ``value`` (or ``"sample"``) into the panel's data_path and read it."""
        panel = self.panel
        target = None
        if value == SAMPLE:
            path = self._dir() / f"sample-{self.sample_rows}.csv"
            if not path.exists():
                make_classification(rows=self.sample_rows, seed=0).to_csv(path, index=False)
            value, target = str(path), SAMPLE_TARGET
        panel.controls.set_value("data_path", value)
        panel.load_data_path()
        if target is not None:
            panel.controls.set_value("target_column", target)

    def _uploaded(self, files: Any) -> None:
        if not files:
            return
        item = files[0]
        name = Path(str(item["name"])).name
        path = self._dir() / name
        path.write_bytes(bytes(item["content"]))
        option = (f"{name} (uploaded)", str(path))
        self.choice.options = self._options((option,))
        self.choice.value = str(path)

    def _dir(self) -> Path:
        # Outside the served folder: a sample or an upload must not land in the user's files.
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="epoch-widgets-data-"))
            # Removed with the picker (or at the kernel's exit): an app session leaves no files behind.
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
        return self._scratch

