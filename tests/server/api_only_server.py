"""``python -m epoch_widgets.server`` started as a user starts it, for the tests of what it serves."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from epoch_widgets.server.launch import BackgroundServer
from trainer import datasets


@contextmanager
def api_only_server(tmp_path: Path, config_files: dict[str, str], seed: int = 2,
                    env: dict[str, str] | None = None) -> Iterator[BackgroundServer]:
    """The API-only server over a root holding ``data.csv``, reading its Jupyter configuration from
    a folder of ``config_files`` (name -> text) and nothing of this machine's; stopped afterwards."""
    root = tmp_path / "root"
    root.mkdir()
    datasets.make_classification(300, seed=seed).to_csv(root / "data.csv", index=False)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name, text in config_files.items():
        (config_dir / name).write_text(text)
    full_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
                "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), **(env or {})}
    server = BackgroundServer(root, tasks_dir=tmp_path / "tasks", log_file=tmp_path / "server.log", env=full_env)
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()
