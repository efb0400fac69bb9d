"""Shared fixtures: the backend matrix and small, learnable data sets.

Data sets are a few thousand rows at most: several test suites share two CPU cores.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from tests.ray_cluster import ray_instance, ray_workers_tmp  # noqa: F401  (fixtures: one Ray instance per session)
from trainer import datasets

# The behavioural tests (learning, early stopping, schedules in history, pause/resume determinism,
# stop, failure, save/load) run once per backend; -m "not tensorflow" leaves out the TensorFlow half.
BACKENDS: list[Any] = ["torch", pytest.param("tensorflow", marks=pytest.mark.tensorflow)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the backend under test; pass it as the config's ``backend``."""
    return request.param


@pytest.fixture
def base_config(backend: str) -> Callable[..., dict[str, Any]]:
    """A small, quick, seeded config for ``backend`` predicting ``label``; keywords override fields."""

    def make(**overrides: Any) -> dict[str, Any]:
        cfg = {"backend": backend, "seed": 0, "epochs": 3, "batch_size": 32, "hidden_units": [32, 16],
               "dropout_rate": 0.1, "learning_rate": 0.005, "learning_rate_scheduler": "none",
               "early_stopping": False, "device": "cpu", "target_column": "label"}
        cfg.update(overrides)
        return cfg

    return make


@pytest.fixture(scope="session")
def clf_df() -> pd.DataFrame:
    """Binary classification, 1,200 rows, features f1..f4, integer ``label``."""
    return datasets.make_classification(1200, seed=1)


@pytest.fixture(scope="session")
def reg_df() -> pd.DataFrame:
    """Regression, 1,200 rows, features f1..f4, continuous ``target`` around 10."""
    return datasets.make_regression(1200, seed=2)


def lagged_sequence(rows: int = 1500, lag: int = 3, seed: int = 0) -> pd.DataFrame:
    """A sequence task no single row can solve: ``label`` is whether ``x`` was positive ``lag``
    rows earlier (``y`` is that value, for regression). ``noise`` is an uninformative feature."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(rows)
    past = np.concatenate([np.zeros(lag), x[:-lag]])
    return pd.DataFrame({"x": x, "noise": rng.standard_normal(rows),
                         "label": np.where(past > 0, "up", "down"), "y": 2.0 * past + 5.0})


@pytest.fixture(scope="session")
def seq_df() -> pd.DataFrame:
    return lagged_sequence()
