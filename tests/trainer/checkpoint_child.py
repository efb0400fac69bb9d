"""A training process for the kill tests: ``python checkpoint_child.py '<json spec>'``.

The spec holds ``config`` (with ``output_path``), ``rows`` and ``data_seed`` for the demo data, and
``resume`` (continue from the checkpoints in ``output_path`` instead of starting afresh), and
optionally ``steer``: ``{"at": [epoch, batch], "changes": {...}}``, a ``run.update`` made after that
batch unless the run (resumed) has made it already. Every
batch is its own slice, so the process reports each batch as one JSON line on stdout
(``{"event": "batch", "epoch", "batch", "num_batches"}``) and the test can SIGKILL it right after
any batch it picks; ``{"event": "ready", ...}`` comes first and ``{"event": "end", ...}`` last.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import trainer.loop
from trainer import Trainer, datasets


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    spec = json.loads(sys.argv[1])
    trainer.loop.SLICE_SECONDS = 0.0
    df = datasets.make_classification(spec["rows"], seed=spec["data_seed"])
    config = spec["config"]
    if spec.get("resume"):
        run = Trainer.from_checkpoint(config["output_path"], df)
    else:
        run = Trainer(config, df)

    steer = spec.get("steer")

    def report(event: str, data: dict[str, Any]) -> None:
        if event == "batch_end" and steer and [data["epoch"], data["batch"]] == steer["at"] and not run.config_changes:
            run.update(**steer["changes"])        # on the loop's thread: applies before the next batch
        if event == "batch_end":
            say({"event": "batch", "epoch": data["epoch"], "batch": data["batch"], "num_batches": data["num_batches"]})

    run.add_callback(report)
    say({"event": "ready", "epoch": run.current_epoch, "batch": run.batch})
    run.fit()
    say({"event": "end", "state": run.state.value, "reason": run.reason, "epochs": run.current_epoch})
    return 0 if run.state.value == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
