"""A stand-in for ``benchmarks/sides.py`` that speaks the harness's protocol without training:
``fast`` and ``slow`` report fixed epoch times (the first one long, as a warm-up epoch is),
``crash`` fails, ``hang`` never ends and ``silent`` exits without reporting."""
import importlib.util
import json
import os
import sys
import time

params = json.loads(sys.argv[1])
side = params["side"]
if side == "crash":
    print("the side broke: ValueError: bad things", file=sys.stderr)
    sys.exit(1)
if side == "hang":
    time.sleep(120)
if side == "silent":
    sys.exit(0)

per_epoch = {"fast": 1.0, "slow": 2.0}[side]
print("BENCH-RESULT " + json.dumps({
    "epoch_seconds": [10.0] + [per_epoch] * (params["epochs"] - 1), "train_samples": 1000, "pid": os.getpid(),
    "epoch_cpu_seconds": [10.0] + [per_epoch / 2] * (params["epochs"] - 1),
    "extras": {"trainer": importlib.util.find_spec("trainer").origin,   # the checkout it would import
                "batch_size": params["batch_size"]}}))
