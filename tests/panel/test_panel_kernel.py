"""A real kernel: display a panel, train, and click its buttons with comm messages as a frontend does,
on the main shell and on a kernel subshell (ipykernel 7, JEP 91)."""
from __future__ import annotations

import json
import time
from typing import Any, Optional

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

SETUP = """
import asyncio, threading
from epoch_widgets import TrainingPanel
from trainer.datasets import make_classification

panel = TrainingPanel(data=make_classification(1200, seed=1), target_column="label", epochs=1000, seed=0,
                      batch_size=32, hidden_units=[16], early_stopping=False, device="cpu",
                      learning_rate_scheduler="none")
display(panel)
loop = asyncio.get_running_loop()
probe = {"clicks": [], "batches": 0, "at_request": [], "at_pause": []}

def count_batch(module, inputs, output):
    if module.training:
        probe["batches"] += 1

def on_click(_button):
    # Registered after the panel's own handler, which acted already (loop thread) or queued the
    # request to the loop (subshell thread): this record lands right behind that request.
    probe["clicks"].append(threading.current_thread().name)
    loop.call_soon_threadsafe(lambda: probe["at_request"].append([probe["batches"], panel.run.state.value]))

def on_state(change):
    if change["new"] == "paused":
        probe["at_pause"].append(probe["batches"])

panel.pause_button.on_click(on_click)
panel.observe(on_state, "state")
task = panel.start()
await panel.wait_started()
panel.run.backend.model.register_forward_hook(count_batch)
"""

STATUS = """
import json
print(json.dumps({"state": panel.state, "epoch": panel.current_epoch, "batch": panel.run.batch,
                  "batches": probe["batches"], "task_done": task.done(), "probe": probe,
                  "pause": panel.pause_button.model_id, "stop": panel.stop_button.model_id}))
"""


class Kernel:
    """A kernel and a client that runs code and sends comm messages like a frontend."""

    def __init__(self) -> None:
        self.km = jupyter_client.KernelManager(kernel_name="python3")
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.iopub: list[dict] = []

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def execute(self, code: str, timeout: float = 120) -> str:
        """Run ``code``; return its stdout, failing on an error. Other iopub traffic is kept."""
        msg_id = self.kc.execute(code)
        out, deadline = [], time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                self.iopub.append(msg)
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError("kernel error:\n" + "\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            self.iopub.append(msg)
        self.reply(msg_id, timeout)
        return "".join(out)

    def reply(self, msg_id: str, timeout: float = 30) -> dict:
        """The shell reply to ``msg_id`` (wait_for_ready may leave extra kernel_info replies queued)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def status(self) -> dict[str, Any]:
        return json.loads(self.execute(STATUS))

    def until(self, predicate: Any, what: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last status {status}")
            time.sleep(0.05)

    def click(self, comm_id: str, subshell_id: Optional[str] = None) -> None:
        """What ipywidgets' frontend sends for a button click, optionally on a subshell."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id,
                                               "data": {"method": "custom", "content": {"event": "click"}}})
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)

    def supports_subshells(self) -> bool:
        reply = self.reply(self.kc.kernel_info())
        return "kernel subshells" in reply["content"].get("supported_features", [])

    def create_subshell(self) -> str:
        self.kc.control_channel.send(self.kc.session.msg("create_subshell_request", {}))
        reply = self.kc.get_control_msg(timeout=30)
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply["content"]["subshell_id"]


@pytest.fixture
def kernel():
    k = Kernel()
    try:
        yield k
    finally:
        k.close()


def pause_and_check(kernel: Kernel, comm_id: str, subshell: Optional[str]) -> dict[str, Any]:
    """Click Pause; the run must pause within one batch of the request while its task runs."""
    before = kernel.status()
    assert before["state"] == "running"
    kernel.click(comm_id, subshell)
    paused = kernel.until(lambda s: s["state"] == "paused", "the pause")
    probe = paused["probe"]
    assert len(probe["at_pause"]) == len(before["probe"]["at_pause"]) + 1
    requested_at, state_then = probe["at_request"][-1]
    assert state_then == "running"
    assert probe["at_pause"][-1] - requested_at <= 1, probe
    assert not paused["task_done"] and paused["epoch"] < 1000

    time.sleep(0.5)     # paused means paused: nothing moves, and cells still run
    still = kernel.status()
    assert (still["state"], still["epoch"], still["batch"], still["batches"]) == \
        (paused["state"], paused["epoch"], paused["batch"], paused["batches"])
    return paused


def resume_and_check(kernel: Kernel, comm_id: str, subshell: Optional[str], paused: dict[str, Any]) -> None:
    kernel.click(comm_id, subshell)
    kernel.until(lambda s: s["state"] == "running" and s["batches"] > paused["batches"], "training to resume")


def test_pause_and_resume_clicks_sent_as_comm_messages(kernel: Kernel) -> None:
    kernel.execute(SETUP)
    status = kernel.until(lambda s: s["epoch"] >= 1 and s["batches"] > 0, "the first epoch")
    pause_id, stop_id = status["pause"], status["stop"]

    paused = pause_and_check(kernel, pause_id, None)
    # The frontend is told: the Pause button now reads Resume.
    updates = [m for m in kernel.iopub if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == pause_id]
    assert any(m["content"]["data"].get("state", {}).get("description") == "Resume" for m in updates)
    resume_and_check(kernel, pause_id, None, paused)

    if not kernel.supports_subshells():
        pytest.skip("this ipykernel has no subshells (JEP 91); the main-shell clicks passed")
    subshell = kernel.create_subshell()
    for _ in range(2):
        paused = pause_and_check(kernel, pause_id, subshell)
        resume_and_check(kernel, pause_id, subshell, paused)
    clicks = kernel.status()["probe"]["clicks"]
    assert clicks[:2] == ["MainThread", "MainThread"]
    # ipykernel 7.4 runs a comm message on the subshell that the comm last replied to, so some of
    # these clicks run on the subshell's own thread: the panel must hand them to the loop thread.
    assert any(name.startswith("subshell-") for name in clicks[2:]), clicks

    kernel.click(stop_id)
    final = kernel.until(lambda s: s["task_done"], "the run to stop")
    assert final["state"] == "stopped" and final["epoch"] < 1000


SNAPSHOT_RUN = """
from epoch_widgets import TrainingPanel
from trainer.datasets import make_classification

panel = TrainingPanel(data=make_classification(600, seed=1), target_column="label", epochs=3, seed=0,
                      batch_size=32, hidden_units=[16], device="cpu")
panel
"""


def test_the_panel_keeps_a_static_snapshot_beside_the_widget_and_refreshes_it_when_a_run_ends(kernel: Kernel) -> None:
    """Item 12: a saved notebook opened without its kernel has no widget model; the second output
    (HTML: the curves and the final metrics) is what it still shows."""
    kernel.execute(SNAPSHOT_RUN)
    shown = [m for m in kernel.iopub if m["msg_type"] in ("display_data", "execute_result")]
    assert len(shown) == 2, [m["msg_type"] for m in shown]
    widget, snapshot = (m["content"] for m in shown)
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert "snapshot follows" in widget["data"]["text/plain"]        # what widget-less viewers print
    assert "ew-snapshot" in snapshot["data"]["text/html"]
    display_id = snapshot["transient"]["display_id"]

    kernel.execute("panel.start()\nawait panel.wait()\nprint(panel.state)", timeout=300)
    updates = [m["content"] for m in kernel.iopub if m["msg_type"] == "update_display_data"]
    assert updates and updates[-1]["transient"]["display_id"] == display_id
    html = updates[-1]["data"]["text/html"]
    assert "Best epoch" in html and "<table" in html
    assert "data:image/png;base64," in html or "matplotlib" not in kernel.execute(
        "import importlib.util; print(importlib.util.find_spec('matplotlib') is None and 'matplotlib')")
