"""Re-run tutorial notebooks top to bottom and store their outputs, as the test suite expects them.

    .venv/bin/python scripts/refresh_notebook.py notebooks/05_http_api.ipynb [more.ipynb ...]

nbval (tests/notebooks) compares every cell's output with the stored one, so a change that alters
what a notebook prints needs its outputs stored again. Each notebook runs in a copy inside a
temporary folder (what it writes never lands in the repository), in a fresh kernel, and is saved
without widget state (stale after a run, and large).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def refresh(path: Path, timeout: int = 600) -> None:
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="refresh-notebook-") as tmp:
        for item in path.parent.iterdir():        # helper files beside the notebooks come along
            if item.suffix == ".py":
                shutil.copy(item, tmp)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": tmp}}).execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    print(f"refreshed {path}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in sys.argv[1:]:
        refresh(Path(name))
