"""Reaching a Ray cluster, and what one run asks of it.

:func:`connect` joins the cluster at an address (``"auto"``: the one ``ray start`` started on this
machine; ``"ray://host:10001"``: Ray Client; ``"host:6379"``) or starts a local instance, and fails
within a bounded time with a message saying what to do. :func:`task_resources` is what a run's
config asks for (``num_cpus``; ``num_gpus`` = its device count when it trains on GPUs, so Ray places
it on a node that has them) and :func:`actor_config` the config as the actor sees its node (Ray
hands it the GPUs it reserved, numbered from 0).
"""
from __future__ import annotations

import socket
import threading
from typing import Any, Optional
from urllib.parse import urlsplit

from ..config import TrainingConfig, as_config

NAMESPACE = "epoch-widgets"
INSTALL_HINT = "install it with pip install \"epoch-widgets[ray]\" (ray[default]>=2.9)"


class ClusterUnavailable(RuntimeError):
    """Ray is not installed, or the cluster at the given address cannot be reached."""


def require_ray() -> Any:
    """The ``ray`` module; ClusterUnavailable saying how to install it when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterUnavailable(f"the Ray executor needs the ray package ({exc}); {INSTALL_HINT}") from None
    return ray


def _endpoint(address: str) -> Optional[tuple[str, int]]:
    """(host, port) of an explicit address, None for "auto" and the like."""
    text = address if "://" in address else f"gcs://{address}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname and port else None


def connect(address: Optional[str] = None, timeout: float = 60.0) -> bool:
    """Make sure this process is connected to Ray: reuse a connection it already has, else join
    the cluster at ``address`` (None: start a local instance). Returns True when this call
    connected (the caller then calls :func:`disconnect` when done). ClusterUnavailable when Ray is missing
    or the cluster does not answer within ``timeout`` seconds."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
    fix = ("start it first (ray start --head on its head node), check the address, or set "
           "executor to 'local'" if address else "check the log above, or join a running cluster with an address")
    endpoint = _endpoint(address) if address else None
    if endpoint is not None:
        # Ray retries an unreachable address for minutes: a refused or silent port is known at once.
        try:
            socket.create_connection(endpoint, timeout=min(timeout, 10.0)).close()
        except OSError as exc:
            raise ClusterUnavailable(f"cannot reach {where}: {endpoint[0]}:{endpoint[1]} does not answer "
                                     f"({exc.strerror or type(exc).__name__}); {fix}") from None
    owner = _RayOwner(ray, address)
    if not owner.connected.wait(timeout):
        owner.release.set()      # should it connect after all, it lets go at once
        raise ClusterUnavailable(f"{where} did not answer within {timeout:g} s; {fix}")
    if owner.error is not None:
        exc = owner.error
        raise ClusterUnavailable(f"cannot connect to {where}: {type(exc).__name__}: {exc}; {fix}") from None
    global _owner
    _owner = owner
    return True


def disconnect(timeout: float = 30.0) -> None:
    """Undo what :func:`connect` did when it connected: disconnect, and stop the local instance it
    started (its processes end with it). Nothing when it did not connect."""
    global _owner
    owner, _owner = _owner, None
    if owner is not None:
        owner.release.set()
        owner.join(timeout)


class _RayOwner(threading.Thread):
    """The thread that connects to Ray and lives as long as the connection. Ray binds the
    processes of a local instance (gcs_server, raylet) to the thread that started them (Linux's
    parent-death signal fires when that *thread* ends), so it must not be a short-lived one: it
    waits here until :func:`disconnect`, then shuts Ray down itself."""

    def __init__(self, ray: Any, address: Optional[str]):
        super().__init__(name="ray-owner", daemon=True)
        self._ray, self._address = ray, address
        self.connected = threading.Event()
        self.release = threading.Event()
        self.error: Optional[BaseException] = None
        self.start()

    def run(self) -> None:
        try:
            self._ray.init(address=self._address, namespace=NAMESPACE)
        except BaseException as exc:   # handed to the caller's thread
            self.error = exc
            return
        finally:
            self.connected.set()
        self.release.wait()
        self._ray.shutdown()


_owner: Optional[_RayOwner] = None


def _device_count(config: TrainingConfig) -> int:
    devices = config.devices
    if isinstance(devices, list):
        return len(devices)
    return devices if isinstance(devices, int) else 1


def wants_gpus(config: TrainingConfig) -> bool:
    """Whether the config asks for GPUs (``device="cuda"``/``"cuda:N"`` or a list of GPU indices);
    ``device="auto"`` asks for none, so it runs wherever Ray finds CPUs."""
    return config.device.startswith("cuda") or isinstance(config.devices, list)


def task_resources(config: Any, cpus: int = 1) -> dict[str, float]:
    """Ray resources for one run: ``num_gpus`` = its device count on GPUs; ``num_cpus`` = ``cpus``,
    or one per process of a multi-process run on the CPU."""
    config = as_config(config)
    count = _device_count(config)
    if wants_gpus(config):
        return {"num_cpus": cpus, "num_gpus": count}
    return {"num_cpus": max(cpus, count if config.device == "cpu" else 1), "num_gpus": 0}


def actor_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the actor uses it: Ray makes the GPUs it reserved visible as 0, 1, ..., so GPU
    indices become a count and ``cuda:N`` becomes ``cuda``."""
    out = dict(config)
    if isinstance(out.get("devices"), list):
        out["devices"] = len(out["devices"])
    if str(out.get("device", "")).startswith("cuda:"):
        out["device"] = "cuda"
    return out


def missing_resources(resources: dict[str, float]) -> Optional[str]:
    """Why the cluster could never place a run asking for ``resources`` (more GPUs or CPUs than it
    has in all), or None. A cluster that is merely busy queues the run instead."""
    ray = require_ray()
    total = ray.cluster_resources()
    for key, name in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
        wanted = resources.get(key) or 0
        if wanted > total.get(name, 0):
            return (f"the run asks for {wanted:g} {name}(s) and the Ray cluster has {total.get(name, 0):g} in all; "
                    + ("use device='cpu' (or 'auto'), fewer devices, or add GPU nodes to the cluster" if name == "GPU"
                       else "use fewer devices, or add nodes to the cluster"))
    return None
