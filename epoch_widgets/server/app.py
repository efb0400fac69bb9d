"""The Jupyter server extension application: configuration, handlers, and worker cleanup.

Loaded automatically into ``jupyter server`` / JupyterLab (jupyter-config/ enables it), or run on
its own with ``python -m epoch_widgets.server`` (see ``__main__.py``). Settings are traitlets, e.g.
``--EpochTrainingApp.models_dir=/srv/models``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Enum, Float, Integer, Unicode, default

from .api_only import ApiOnlyServerApp
from .handlers import handlers
from .registry import TaskRegistry
from .settings import Settings
from .sweeps import SweepRegistry


class EpochTrainingApp(ExtensionApp):
    """Serves the epoch-training HTTP API (docs/api.md) with Server-Sent Events."""

    name = "epoch_widgets"
    description = "HTTP API and Server-Sent Events for epoch-by-epoch training"
    # When launched on its own it is an API server: no other extensions, none of Jupyter's services
    # (kernels, contents, files, ...), no browser. Loaded into a user's server, neither applies.
    load_other_extensions = False
    serverapp_class = ApiOnlyServerApp

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
    executor = Enum(["local", "ray"], "local", config=True,
                    help="Where tasks train: 'local' (a worker process per task on this machine) or 'ray' "
                         "(a Ray actor per task on a Ray cluster; needs the ray extra).")
    ray_address = Unicode(None, allow_none=True, config=True,
                          help="With executor='ray': the cluster to join ('auto': the one `ray start` started "
                               "on this machine; 'ray://host:10001'; 'host:6379'). Unset: start a local Ray "
                               "instance (or join RAY_ADDRESS).")
    ray_connect_timeout = Float(60.0, min=1.0, config=True,
                                help="Seconds the server waits at start for the Ray cluster to answer.")
    ray_cpus_per_task = Integer(1, min=1, config=True,
                                help="CPUs Ray reserves for each task (a task on GPUs also reserves its devices).")
    mlflow_tracking_uri = Unicode(
        None, allow_none=True, config=True,
        help="Where the mlflow logger of every task writes (a tracking server such as http://mlflow:5000, or a "
             "store such as sqlite:////srv/mlflow.db). Requests cannot choose it. Unset: MLFLOW_TRACKING_URI of "
             "the server's environment, else a local store beside each task's output_path in the models directory.")

    @default("open_browser")
    def _default_open_browser(self) -> bool:
        return bool(self.serverapp.config["ServerApp"].get("open_browser", False))

    def _worker_factory(self) -> Optional[Callable[..., Any]]:
        """None for local worker processes; with Ray, connect now, so an unreachable cluster is
        an error at start (naming the address and what to do) and never a hang per request."""
        if self.executor != "ray":
            return None
        from trainer.ray_executor.cluster import ClusterUnavailable, connect

        from .ray_worker import RayWorker

        try:
            self._owns_ray = connect(self.ray_address or None, self.ray_connect_timeout)
        except ClusterUnavailable as exc:
            self.log.critical("epoch-training API: executor='ray', but %s", exc)
            raise
        import ray

        self.log.info("epoch-training API: tasks train on Ray (%s; %s)", self.ray_address or "a local instance",
                      ", ".join(f"{v:g} {k}" for k, v in sorted(ray.cluster_resources().items())
                                if k in ("CPU", "GPU")))
        return RayWorker.factory(self.ray_cpus_per_task)

    def _resolved_settings(self) -> Settings:
        root = Path(self.serverapp.root_dir).expanduser().resolve()
        models = Path(self.models_dir).expanduser() if self.models_dir else Path("models")
        tasks = (Path(self.tasks_dir).expanduser() if self.tasks_dir
                 else Path(jupyter_data_dir()) / "epoch_widgets" / "tasks")
        return Settings(root_dir=root, models_dir=(root / models).resolve(), tasks_dir=tasks.resolve(),
                        keepalive_interval=self.keepalive_interval, start_timeout=self.start_timeout,
                        command_timeout=self.command_timeout, stop_timeout=self.stop_timeout,
                        shutdown_timeout=self.shutdown_timeout, max_running_tasks=self.max_running_tasks,
                        mlflow_tracking_uri=self.mlflow_tracking_uri or None,
                        worker_factory=self._worker_factory())

    def initialize_settings(self) -> None:
        settings = self._resolved_settings()
        self.registry = TaskRegistry(settings)
        self.sweeps = SweepRegistry(self.registry)
        self.log.info("epoch-training API: models in %s, task records in %s (%d known tasks)",
                      settings.models_dir, settings.tasks_dir, len(self.registry.tasks))

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers(self.registry, self.sweeps))

    async def stop_extension(self) -> None:
        """Stop the workers and record their tasks as interrupted."""
        registry = getattr(self, "registry", None)
        if registry is not None:
            # Sweeps first: no new trial may start while the tasks stop.
            await self.sweeps.shutdown(registry.settings.shutdown_timeout)
            await registry.shutdown()
        if getattr(self, "_owns_ray", False):
            from trainer.ray_executor.cluster import disconnect

            disconnect()
