"""Small synthetic datasets generated on the spot (no downloads), for demos, notebooks and tests."""
from __future__ import annotations

import numpy as np
import pandas as pd


def make_classification(rows: int = 2000, features: int = 4, classes: int = 2, noise: float = 0.3,
                        seed: int = 0) -> pd.DataFrame:
    """Rows with numeric features ``f1..fN`` and a ``label`` that depends on them (learnable)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features))
    w = rng.standard_normal((features, classes))
    logits = x @ w + np.sin(2 * x[:, :1]) + noise * rng.standard_normal((rows, classes))
    df = pd.DataFrame(x, columns=[f"f{i + 1}" for i in range(features)])
    df["label"] = logits.argmax(axis=1)
    return df


def make_regression(rows: int = 2000, features: int = 4, noise: float = 0.1, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features))
    w = rng.standard_normal(features)
    df = pd.DataFrame(x, columns=[f"f{i + 1}" for i in range(features)])
    df["target"] = 10 + 3 * (x @ w) + np.sin(x[:, 0]) + noise * rng.standard_normal(rows)
    return df


def make_time_series(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A noisy sine-plus-trend signal with a lagged driver; ``direction`` says whether the next
    step of ``signal`` goes up, and ``next_value`` is that next value (for regression)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows + 1)
    driver = np.sin(t / 7.0) + 0.3 * rng.standard_normal(rows + 1)
    signal = np.sin(t / 15.0) + 0.5 * np.roll(driver, 3) + 0.1 * rng.standard_normal(rows + 1)
    df = pd.DataFrame({"signal": signal[:-1], "driver": driver[:-1]})
    df["next_value"] = signal[1:]
    df["direction"] = np.where(signal[1:] > signal[:-1], "up", "down")
    return df


def make_benchmark(rows: int = 200_000, features: int = 20, seed: int = 0) -> pd.DataFrame:
    """The benchmarks' data (the peers' comparison in benchmarks/): a noisy linear boundary in standard-normal
    features ``x0..x{features-1}``, binary ``label``; float32 features as the peers use."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    w = rng.standard_normal(features).astype(np.float32)
    y = ((x @ w + 0.3 * rng.standard_normal(rows)) > 0).astype(np.int64)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
    df["label"] = y
    return df
