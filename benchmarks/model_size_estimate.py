"""How the training-memory estimate (``trainer/model_size.py``) compares with the memory torch
training really takes on the CPU.

Each config runs in a process of its own: after the imports and the data are in memory it notes
the resident set, builds ``Trainer(config, df)`` and trains one epoch, then reports the peak
resident set's growth (``ru_maxrss``) next to the estimate. The estimate is meant to be an upper
bound that is not wildly high: the script exits 1 if any measured growth exceeds its estimate.

    python benchmarks/model_size_estimate.py
    python benchmarks/model_size_estimate.py --rows 1000      # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CONFIGS = [
    {"model_type": "mlp", "hidden_units": [64, 32], "batch_size": 32},
    {"model_type": "mlp", "hidden_units": [4096] * 4, "batch_size": 32},
    {"model_type": "mlp", "hidden_units": [1024] * 3, "batch_size": 4096},
    {"model_type": "cnn", "hidden_units": [256, 256], "sequence_length": 50, "batch_size": 256},
    {"model_type": "lstm", "hidden_units": [256, 256], "sequence_length": 100, "batch_size": 256},
    {"model_type": "gru", "hidden_units": [512], "sequence_length": 200, "batch_size": 128},
]


def child(config: dict, rows: int) -> dict:
    import resource

    import psutil

    from trainer import Trainer
    from trainer.datasets import make_classification
    from trainer.memory_fit import check_fits
    from trainer.data import prepare_data
    from trainer.config import TrainingConfig

    import torch  # noqa: F401  (imported before the baseline, as in a kernel that trained before)

    torch.set_num_threads(1)
    df = make_classification(rows, features=8, seed=0)
    cfg = TrainingConfig(**{"target_column": "label", "epochs": 1, "device": "cpu", "seed": 0,
                            "dropout_rate": 0.2, "checkpoints": False, **config})
    estimate = check_fits(cfg, prepare_data(cfg, df, seed=0))
    before = psutil.Process().memory_info().rss
    Trainer(cfg, df).fit()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"config": config, "estimate": estimate.total, "measured": max(0, peak - before),
            "parameters": estimate.parameters, "parts": estimate.breakdown()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.rows)))
        return 0
    worst = 0.0
    print(f"{'config':<62} {'parameters':>12} {'estimate':>10} {'measured':>10} {'ratio':>6}")
    for config in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--child", json.dumps(config)],
                             capture_output=True, text=True, env=os.environ)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return 2
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = r["measured"] / r["estimate"]
        worst = max(worst, ratio)
        print(f"{json.dumps(config):<62} {r['parameters']:>12,} {r['estimate'] / 2**20:>8.0f}Mi "
              f"{r['measured'] / 2**20:>8.0f}Mi {ratio:>6.2f}   {r['parts']}")
    print(f"largest measured/estimate: {worst:.2f} (at most 1 means the estimate was an upper bound)")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
