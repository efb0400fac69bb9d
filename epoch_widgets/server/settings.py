"""What the task registry needs from the server's configuration (see app.py for the meanings)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional


@dataclass
class Settings:
    """The server's configuration as the registry reads it."""

    root_dir: Path
    models_dir: Path
    tasks_dir: Path
    keepalive_interval: float = 10.0
    start_timeout: float = 120.0
    command_timeout: float = 45.0
    stop_timeout: float = 60.0
    shutdown_timeout: float = 10.0
    max_running_tasks: int = 8
    mlflow_tracking_uri: Optional[str] = None
    save_interval: float = 1.0
    python: str = sys.executable
    # What runs a worker generation: None for a local worker process (``process.WorkerProcess``),
    # or a factory with its interface (``ray_worker.RayWorker.factory()``).
    worker_factory: Optional[Callable[..., Any]] = None
