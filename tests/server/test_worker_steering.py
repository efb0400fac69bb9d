"""Steering a run in the HTTP API's real worker process through the protocol's ``update`` command:
the reply carries the applied config_change event, or the refusal (config: 400, conflict: 409)."""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading

import pytest

from trainer import datasets, protocol
from trainer.remote import RunHost

pytestmark = pytest.mark.server


class Worker:
    """``python -m epoch_widgets.server.worker`` with its protocol lines read on a thread."""

    def __init__(self, start: dict):
        self.proc = subprocess.Popen([sys.executable, "-m", "epoch_widgets.server.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.messages: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.send(start)

    def _read(self):
        for line in self.proc.stdout:
            self.messages.put(protocol.decode(line))
        self.messages.put(None)

    def send(self, message: dict) -> None:
        self.proc.stdin.write(protocol.encode(message))
        self.proc.stdin.flush()

    def next(self, kind: str, where=lambda m: True, timeout: float = 120.0) -> dict:
        while True:
            message = self.messages.get(timeout=timeout)
            assert message is not None, f"the worker exited before sending {kind}"
            self.seen.append(message)
            if message["kind"] == kind and where(message):
                return message


def test_update_command_in_the_worker_process(tmp_path):
    data = tmp_path / "data.csv"
    datasets.make_classification(1200, seed=1).to_csv(data, index=False)
    config = {"seed": 0, "epochs": 3, "hidden_units": [16], "learning_rate": 0.005, "learning_rate_scheduler": "none",
              "early_stopping": False, "device": "cpu", "target_column": "label", "data_path": str(data),
              "output_path": str(tmp_path / "out")}
    worker = Worker(protocol.start("t1", config))
    try:
        ready = worker.next(protocol.READY)
        assert ready["snapshot"]["config_changes"] == []
        worker.send(protocol.command("pause", 1))
        assert worker.next(protocol.REPLY)["state"] == "paused"

        worker.send(protocol.command("update", 2, {"learning_rate": 0.05, "epochs": 4}))
        reply = worker.next(protocol.REPLY)
        assert reply["ok"] and reply["seq"] == 2 and reply["state"] == "paused"
        event = reply["event"]
        assert event["changes"] == {"learning_rate": {"old": 0.005, "new": 0.05}, "epochs": {"old": 3, "new": 4}}
        # Followers hear the event before the reply: a reply never overtakes the change it reports.
        [forwarded] = [m for m in worker.seen if m["kind"] == protocol.EVENT and m["event"] == "config_change"]
        assert forwarded["data"] == event

        worker.send(protocol.command("update", 3, {"model_type": "gru"}))
        refused = worker.next(protocol.REPLY)
        assert not refused["ok"] and refused["refusal"] == protocol.CONFIG_REFUSAL and not refused["conflict"]
        assert refused["errors"][0]["field"] == "model_type" and "learning_rate" in refused["message"]

        worker.send(protocol.command("resume", 4))
        end = worker.next(protocol.EVENT, lambda m: m["event"] == "train_end")
        assert end["data"]["state"] == "completed"
        assert worker.proc.wait(60) == 0
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
    saved = json.loads((tmp_path / "out" / "history.json").read_text())
    assert len(saved["history"]) == 4 and saved["history"][-1]["learning_rate"] == 0.05
    assert saved["config_changes"] == [event]


def test_update_of_an_ended_run_is_a_conflict(tmp_path):
    sent = []
    host = RunHost(sent.append)
    config = {"seed": 0, "epochs": 1, "hidden_units": [8], "device": "cpu", "target_column": "label"}
    host.build(protocol.start("t2", config), datasets.make_classification(300, seed=1))
    host.train()
    reply = host.command(protocol.command("update", 1, {"epochs": 5}))
    assert not reply["ok"] and reply["conflict"] and "already ended" in reply["message"]
    assert host.run.config.epochs == 1 and host.run.config_changes == []
