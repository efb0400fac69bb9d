"""The Jupyter server extension application: configuration, handlers, and worker cleanup.

Loaded automatically into ``jupyter server`` / JupyterLab (jupyter-config/ enables it), or run on
its own with ``python -m epoch_widgets.server`` (see ``__main__.py``). Settings are traitlets, e.g.
``--EpochTrainingApp.models_dir=/srv/models``.
"""
from __future__ import annotations

from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Integer, Unicode, default

from .handlers import handlers
from .registry import TaskRegistry
from .tasks import Settings


class EpochTrainingApp(ExtensionApp):
    """Serves the epoch-training HTTP API (docs/api.md) with Server-Sent Events."""

    name = "epoch_widgets"
    description = "HTTP API and Server-Sent Events for epoch-by-epoch training"
    # When launched on its own it is an API server: no other extensions, no browser.
    load_other_extensions = False

    models_dir = Unicode(
        "", config=True,
        help="Folder that output_path is resolved in (relative paths are taken from the server's "
             "root_dir). Default: <root_dir>/models.")
    tasks_dir = Unicode(
        "", config=True,
        help="Folder for the task records (config, state, history, errors). "
             "Default: <jupyter data dir>/epoch_widgets/tasks.")
    keepalive_interval = Float(10.0, min=0.01, config=True,
                               help="Seconds between ': keepalive' comments on an idle event stream.")
    start_timeout = Float(120.0, min=1.0, config=True,
                          help="Seconds a new task's worker may take to load the data and build the model.")
    command_timeout = Float(45.0, min=1.0, config=True,
                            help="Seconds to wait for a worker to answer pause, resume or stop.")
    stop_timeout = Float(60.0, min=1.0, config=True,
                         help="Seconds after a stop request before a worker that has not ended is killed.")
    shutdown_timeout = Float(10.0, min=0.0, config=True,
                             help="Seconds the workers get to stop and save when the server shuts down.")
    max_running_tasks = Integer(8, min=1, config=True, help="Most tasks training at the same time.")

    @default("open_browser")
    def _default_open_browser(self) -> bool:
        return bool(self.serverapp.config["ServerApp"].get("open_browser", False))

    def _resolved_settings(self) -> Settings:
        root = Path(self.serverapp.root_dir).expanduser().resolve()
        models = Path(self.models_dir).expanduser() if self.models_dir else Path("models")
        tasks = (Path(self.tasks_dir).expanduser() if self.tasks_dir
                 else Path(jupyter_data_dir()) / "epoch_widgets" / "tasks")
        return Settings(root_dir=root, models_dir=(root / models).resolve(), tasks_dir=tasks.resolve(),
                        keepalive_interval=self.keepalive_interval, start_timeout=self.start_timeout,
                        command_timeout=self.command_timeout, stop_timeout=self.stop_timeout,
                        shutdown_timeout=self.shutdown_timeout, max_running_tasks=self.max_running_tasks)

    def initialize_settings(self) -> None:
        settings = self._resolved_settings()
        self.registry = TaskRegistry(settings)
        self.log.info("epoch-training API: models in %s, task records in %s (%d known tasks)",
                      settings.models_dir, settings.tasks_dir, len(self.registry.tasks))

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers(self.registry))

    async def stop_extension(self) -> None:
        """Stop the workers and record their tasks as interrupted."""
        registry = getattr(self, "registry", None)
        if registry is not None:
            await registry.shutdown()
