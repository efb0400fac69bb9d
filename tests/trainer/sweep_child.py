"""A sweep process for the kill test: ``python sweep_child.py '<json spec>'``.

The spec holds ``config``, ``output_path``, ``trials``, ``parallel`` and ``rows``/``data_seed`` for the
demo data. Each trial epoch is reported as one JSON line on stdout (``{"event": "trial_epoch",
"number", "epoch"}``), so the test can SIGKILL the whole process at a point it picks.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from trainer import choice, datasets, sweep


def main() -> int:
    spec = json.loads(sys.argv[1])
    df = datasets.make_classification(spec["rows"], seed=spec["data_seed"])

    def report(s: Any, event: str, data: dict[str, Any]) -> None:
        if event in ("trial_epoch", "trial_end", "sweep_end"):
            line = {"event": event, **{k: data.get(k) for k in ("number", "epoch", "state")}}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    s = sweep(spec["config"], df, {"batch_size": choice([16, 32, 64])}, trials=spec["trials"], sampler="grid",
              pruner=None, parallel=spec["parallel"], output_path=spec["output_path"], seed=0, callbacks=[report])
    s.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
