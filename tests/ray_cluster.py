"""One real local Ray instance for the whole test session, for the tests of the Ray executor.

``ray.init(num_cpus=2)``: two tasks train at once with one CPU each. Ray's memory monitor is off:
it kills workers when the machine's memory is nearly full, which on a machine shared with other
jobs would fail a test for someone else's memory. One instance serves every module (starting one
takes 10-15 s); tests/conftest.py offers the fixture to all of them.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session")
def ray_workers_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TMPDIR of the tests' Ray workers: the actors' temporary output folders land here, apart
    from those of another test process's Ray instance (the suite runs in several)."""
    return tmp_path_factory.mktemp("ray-workers-tmp")


@pytest.fixture(scope="session")
def ray_instance(ray_workers_tmp: Path) -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the Ray executor's tests need ray: pip install -e '.[ray]'")
    if ray.is_initialized():
        pytest.fail("Ray is already initialised in this process; the ray_instance fixture starts (and shuts down) the one the tests use")
    ray_dir = os.path.join(tempfile.gettempdir(), "ray")     # Ray's own default, kept (socket paths are short)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_memory_monitor_refresh_ms", "0")
        patch.setenv("RAY_DEDUP_LOGS", "0")
        patch.setenv("TMPDIR", str(ray_workers_tmp))      # inherited by the raylet and its workers
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20,
                 namespace="epoch-widgets", log_to_driver=True, _temp_dir=ray_dir)
    try:
        # The workers' temporary folder is ours (else the tests' checks of it would check nothing).
        assert ray.get(ray.remote(tempfile.gettempdir).remote()) == str(ray_workers_tmp)
        yield ray
    finally:
        ray.shutdown()


def actor_names(ray: Any, task: str) -> list[str]:
    """The names of the live actors whose name contains ``task`` (a task id, or "run")."""
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if task in a["name"]]


def actors_gone(ray: Any, task: str, timeout: float = 30.0) -> list[str]:
    """Wait until no live actor's name contains ``task``; the names still live at the deadline.

    ``ray.kill`` only asks the cluster to end an actor, so its name stays listed for a moment after
    the run has released it."""
    deadline = time.monotonic() + timeout
    while (names := actor_names(ray, task)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return names
