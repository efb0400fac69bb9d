"""The Ray executor's parts that need no cluster: the actor (plain Python, driven in this process
as the driver drives it), the mirrored output folder, and what a config asks of a cluster."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trainer import Trainer, protocol
from trainer.checkpoints import list_checkpoints, checkpoint_dir
from trainer.ray_executor.actor import ENDED, REFUSED, RunActor
from trainer.ray_executor.cluster import actor_config, task_resources
from trainer.ray_executor.files import FolderMirror, apply_file_message, resume_files

CONFIG = {"model_type": "mlp", "epochs": 4, "batch_size": 32, "hidden_units": [16], "seed": 0, "device": "cpu",
          "feature_columns": ["f1", "f2", "f3"], "target_column": "label", "early_stopping": False}


def drain(actor: RunActor, driver_folder: Path | None, until_ended: bool = True, timeout: float = 120
          ) -> tuple[list[dict[str, Any]], int]:
    """Poll ``actor`` as the driver does: apply file messages to ``driver_folder``, return the rest."""
    received, out = 0, []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = actor.poll(received, 0.2)
        for number, message in batch["messages"]:
            received = number
            if message["kind"] in (protocol.FILE, protocol.FILE_REMOVED):
                if driver_folder is not None:
                    apply_file_message(driver_folder, message)
            else:
                out.append(message)
        if batch["ended"] or not until_ended:
            return out, batch["exit_code"]
    raise AssertionError(f"the actor did not end within {timeout} s")


# ---------------------------------------------------------------------- the mirrored folder
def test_the_mirror_sends_new_and_changed_files_then_removals_and_skips_writes_in_progress(tmp_path: Path) -> None:
    root = tmp_path / "node"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "ckpt-000001-000000.zip").write_bytes(b"one")
    (root / "config.json").write_text(json.dumps({"output_path": str(root)}))
    (root / "checkpoints" / ".ckpt-000002-000000.zip.abc.tmp").write_bytes(b"half")
    mirror = FolderMirror(root, rename=(str(root), "/srv/models/run"))
    first = mirror.changes()
    # Checkpoints first (an artifact may name them); the half-written temporary file is not sent.
    assert [(m["kind"], m["path"]) for m in first] == [("file", "checkpoints/ckpt-000001-000000.zip"),
                                                       ("file", "config.json")]
    assert json.loads(first[1]["data"]) == {"output_path": "/srv/models/run"}   # the driver's own path
    assert mirror.changes() == []                                                 # nothing new

    (root / "checkpoints" / "ckpt-000002-000000.zip").write_bytes(b"two")
    (root / "checkpoints" / "ckpt-000001-000000.zip").unlink()
    (root / "tensorboard").mkdir()
    (root / "tensorboard" / "events").write_bytes(b"a")
    changes = mirror.changes()
    assert [(m["kind"], m["path"]) for m in changes] == [
        ("file", "checkpoints/ckpt-000002-000000.zip"), ("file", "tensorboard/events"),
        ("file_removed", "checkpoints/ckpt-000001-000000.zip")]
    (root / "tensorboard" / "events").write_bytes(b"ab")                      # appended to: sent again
    assert [m["path"] for m in mirror.changes()] == ["tensorboard/events"]

    driver = tmp_path / "driver"
    for message in first + changes:
        apply_file_message(driver, message)
    assert sorted(p.relative_to(driver).as_posix() for p in driver.rglob("*") if p.is_file()) == [
        "checkpoints/ckpt-000002-000000.zip", "config.json", "tensorboard/events"]


def test_a_file_that_grows_sends_only_its_new_bytes_and_one_rewritten_or_shrunk_is_sent_whole(
        tmp_path: Path) -> None:
    root, driver = tmp_path / "node", tmp_path / "driver"
    root.mkdir()
    events = root / "events.out"
    mirror = FolderMirror(root)
    sent = 0

    def look() -> None:
        nonlocal sent
        for message in mirror.changes():
            sent += len(message.get("data", b""))
            apply_file_message(driver, message)
        assert (driver / "events.out").read_bytes() == events.read_bytes()

    chunk = b"x" * 1000
    events.write_bytes(chunk)
    look()
    for i in range(20):                        # a TensorBoard event file: appended to every epoch
        with events.open("ab") as fh:
            fh.write(bytes([65 + i]) * 1000)
        look()
    assert sent == 21 * 1000                   # each byte once (it was 231,000 when each look re-sent all)
    events.write_bytes(b"y" * 30_000)          # rewritten in place (same inode), longer than before
    look()
    events.write_bytes(b"short")               # shrunk
    look()
    assert sent == 21 * 1000 + 30_000 + 5


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "", "a/../../b"])
def test_a_file_message_cannot_leave_the_output_folder(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="not a path inside the output folder"):
        apply_file_message(tmp_path, protocol.file_written(path, b"x"))
    assert list(tmp_path.iterdir()) == []


def test_an_append_never_follows_a_link_planted_in_the_output_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"12345")
    driver = tmp_path / "driver"
    driver.mkdir()
    (driver / "events.log").symlink_to(outside)
    with pytest.raises(OSError):
        apply_file_message(driver, protocol.file_appended("events.log", 5, b"planted"))
    assert outside.read_bytes() == b"12345"


def test_cuda_graphs_pass_the_drivers_copy_and_an_actor_without_a_gpu_refuses_them_naming_the_field(
        clf_df: pd.DataFrame) -> None:
    from trainer.config import as_config
    from trainer.data import prepare_data
    from trainer.ray_executor.run import driver_copy

    config = as_config({**CONFIG, "cuda_graphs": True})
    assert driver_copy(config, prepare_data(config, clf_df, seed=0), 0).device_name     # no GPU needed here
    refusal = RunActor().build(protocol.start("g", {**CONFIG, "cuda_graphs": True}), clf_df)
    assert refusal["kind"] == protocol.CONFIG_ERROR
    assert refusal["errors"][0]["field"] == "cuda_graphs" and "CUDA device" in refusal["errors"][0]["message"]


# ---------------------------------------------------------------------- the actor, in this process
def test_the_actor_trains_as_a_local_run_and_its_files_arrive_before_the_events_announcing_them(
        clf_df: pd.DataFrame, tmp_path: Path) -> None:
    driver = tmp_path / "driver"
    actor = RunActor()
    spec = protocol.start("t1", {**CONFIG, "output_path": str(driver)})
    ready = actor.build(spec, clf_df)
    assert ready["kind"] == protocol.READY and ready["snapshot"]["current_epoch"] == 0
    actor.train()
    received, messages = 0, []
    checkpoints_at_epoch_end = []
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline
        batch = actor.poll(received, 0.2)
        for number, message in batch["messages"]:
            received = number
            if message["kind"] in (protocol.FILE, protocol.FILE_REMOVED):
                apply_file_message(driver, message)
                continue
            messages.append(message)
            if message.get("event") == "epoch_end":
                checkpoints_at_epoch_end.append([p.name for p in list_checkpoints(checkpoint_dir(driver))])
        if batch["ended"]:
            break
    assert batch["exit_code"] == ENDED
    events = [m["event"] for m in messages if m["kind"] == protocol.EVENT]
    assert events[0] == "state_change" and events[-1] == "train_end" and events.count("epoch_end") == 4
    # Each epoch's checkpoint was on the driver's side when the driver heard of the epoch.
    assert [names[-1] for names in checkpoints_at_epoch_end] == [f"ckpt-{e:06d}-000000.zip" for e in range(1, 5)]
    end = next(m for m in messages if m.get("event") == "train_end")["data"]
    assert end["artifacts_path"] == str(driver) and end["last_checkpoint"].startswith(str(driver))

    local = Trainer({**CONFIG, "output_path": str(tmp_path / "local")}, clf_df).fit()
    assert [h["val_loss"] for h in local.history] == [m["data"]["metrics"]["val_loss"]
                                                      for m in messages if m.get("event") == "epoch_end"]
    local_files = sorted(p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").rglob("*"))
    assert sorted(p.relative_to(driver).as_posix() for p in driver.rglob("*")) == local_files
    assert json.loads((driver / "config.json").read_text())["output_path"] == str(driver)

    # A new actor continues from the files the driver kept, in a folder of its own.
    resumed = RunActor()
    answer = resumed.build(protocol.start("t1", {**CONFIG, "epochs": 6, "output_path": str(driver)}, resume=True),
                           clf_df, resume_files(driver))
    assert answer["kind"] == protocol.READY and answer["resumed_from"] == {"epoch": 4, "batch": 0}
    resumed.train()
    messages, code = drain(resumed, driver)
    assert code == ENDED and [m["data"]["metrics"]["epoch"] for m in messages if m.get("event") == "epoch_end"] == [5, 6]
    assert json.loads((driver / "history.json").read_text())["history"][-1]["epoch"] == 6


def test_commands_apply_in_the_order_the_driver_numbered_them(clf_df: pd.DataFrame) -> None:
    """A threaded Ray actor may start two calls in either order: resume (seq 2) arriving before
    pause (seq 1) waits for it, instead of being refused as 'not paused'."""
    actor = RunActor()
    actor.build(protocol.start("t2", {**CONFIG, "epochs": 100_000}), clf_df)
    actor.train()
    second = threading.Thread(target=actor.command, args=(protocol.command("resume", 2),))
    second.start()
    time.sleep(0.3)
    actor.command(protocol.command("pause", 1))
    second.join(30)
    actor.command(protocol.command("stop", 3))
    messages, code = drain(actor, None)
    replies = [m for m in messages if m["kind"] == protocol.REPLY]
    assert [(r["seq"], r["ok"], r["state"]) for r in replies] == [(1, True, "paused"), (2, True, "running"),
                                                                   (3, True, "stopped")]
    assert code == ENDED


def test_a_poll_whose_answer_was_lost_is_answered_again(clf_df: pd.DataFrame) -> None:
    actor = RunActor()
    actor.build(protocol.start("t3", {**CONFIG, "epochs": 1}), clf_df)
    first = actor.poll(0, 1.0)["messages"]
    assert [m["kind"] for _, m in first] == [protocol.READY]
    assert actor.poll(0, 0.0)["messages"] == first           # not acknowledged: the same again
    assert actor.poll(first[-1][0], 0.0)["messages"] == []   # acknowledged: gone


def test_a_refused_build_ends_the_actor_with_the_reason(clf_df: pd.DataFrame) -> None:
    actor = RunActor()
    answer = actor.build(protocol.start("t4", {**CONFIG, "target_column": "nope"}), clf_df)
    assert answer["kind"] == protocol.CONFIG_ERROR and answer["errors"][0]["field"] == "target_column"
    messages, code = drain(actor, None)
    assert code == REFUSED and messages[-1]["kind"] == protocol.CONFIG_ERROR

    mlflow = RunActor().build(protocol.start("t5", {**CONFIG, "loggers": ["mlflow"], "output_path": "/x/run"}), clf_df)
    assert mlflow["kind"] == protocol.CONFIG_ERROR and mlflow["errors"][0]["field"] == "loggers"
    assert "mlflow_tracking_uri" in mlflow["message"]


# ---------------------------------------------------------------------- what a run asks of a cluster
@pytest.mark.parametrize("overrides, resources", [
    ({}, {"num_cpus": 1, "num_gpus": 0}),
    ({"device": "auto"}, {"num_cpus": 1, "num_gpus": 0}),
    ({"device": "cuda"}, {"num_cpus": 1, "num_gpus": 1}),
    ({"device": "cuda", "devices": 2}, {"num_cpus": 1, "num_gpus": 2}),
    ({"device": "auto", "devices": [0, 3]}, {"num_cpus": 1, "num_gpus": 2}),
    ({"device": "cpu", "devices": 3}, {"num_cpus": 3, "num_gpus": 0}),
])
def test_task_resources_follow_the_devices_the_config_asks_for(overrides: dict, resources: dict) -> None:
    assert task_resources({**CONFIG, **overrides}) == resources


def test_the_actor_numbers_the_gpus_ray_gave_it_from_zero() -> None:
    assert actor_config({"device": "cuda:3", "devices": [2, 5]}) == {"device": "cuda", "devices": 2}
    assert actor_config({"device": "cpu", "devices": 1}) == {"device": "cpu", "devices": 1}


def test_an_address_nobody_answers_at_is_refused_at_once_with_what_to_do() -> None:
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # In a fresh process: this one may be connected to the tests' Ray instance, which connect() would reuse.
    probe = textwrap.dedent(f"""
        import time
        from trainer.ray_executor.cluster import ClusterUnavailable, connect
        started = time.monotonic()
        try:
            connect("ray://127.0.0.1:{port}", timeout=30)
        except ClusterUnavailable as exc:
            print(round(time.monotonic() - started, 1), exc)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    seconds, _, message = out.stdout.strip().partition(" ")
    assert re.search(f"cannot reach the Ray cluster at 'ray://127.0.0.1:{port}'.*ray start", message), out
    assert float(seconds) < 15, out
