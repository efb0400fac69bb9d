"""Training on a Ray cluster: each run is a Ray actor hosting a :class:`trainer.remote.RunHost`.

- ``actor.py``: :class:`RunActor`, the actor (plain Python; the driver wraps it with ``ray.remote``).
- ``link.py``: :class:`ActorLink`, the driver's end of one actor (create, build, follow, command, kill).
- ``files.py``: the actor's output folder mirrored into the driver's (no shared filesystem needed).
- ``cluster.py``: joining a cluster (or starting a local instance) and the resources a run asks for.
- ``run.py``: :class:`RayRun`, a run handle whose batches an actor computes (the panel's ``executor="ray"``).

Importing this package imports no ray: ``ray`` is imported when a run is placed on a cluster.
"""
from __future__ import annotations

from typing import Any

__all__ = ["RayRun", "ClusterUnavailable", "connect"]


def __getattr__(name: str) -> Any:
    if name == "RayRun":
        from .run import RayRun
        return RayRun
    if name in ("ClusterUnavailable", "connect"):
        from . import cluster
        return getattr(cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
