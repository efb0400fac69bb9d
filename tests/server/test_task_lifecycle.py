"""Every ordering of a task's end, with fake workers (``fake_worker.py``) through the registry's
``worker_factory`` seam: stop or delete during a resume from checkpoint, a resume that is refused
or times out while a client streams, a server shutdown, and a task whose folder another task
replaced. Each runs in well under a second."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from epoch_widgets.server import lifecycle as lc
from epoch_widgets.server.errors import Conflict, Gone, TaskNotFound, WorkerProblem
from epoch_widgets.server.registry import TaskRegistry
from epoch_widgets.server.subscriptions import Subscription
from epoch_widgets.server.settings import Settings
from epoch_widgets.server.tasks import Task

from .fake_worker import HANG, READY, FakeWorkers

pytestmark = pytest.mark.server

PROMPT = 1.0      # seconds: what "answers at once" allows on a loaded machine


async def until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Let the loop run until ``check()`` holds (fake workers answer on the next loop turns)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def drain(sub: Subscription) -> list[dict[str, Any]]:
    """Every event of a stream up to its end (it must end: a keepalive-for-ever fails)."""
    events = []
    while (event := await sub.get(PROMPT)) is not None:
        events.append(event)
    return events


@pytest.fixture
def workers() -> FakeWorkers:
    return FakeWorkers()


@pytest.fixture
def settings(tmp_path: Path, workers: FakeWorkers) -> Settings:
    (tmp_path / "data.csv").write_text("f1,label\n1,0\n2,1\n")
    return Settings(root_dir=tmp_path, models_dir=tmp_path / "models", tasks_dir=tmp_path / "tasks",
                    stop_timeout=5.0, command_timeout=5.0, shutdown_timeout=0.05, worker_factory=workers)


@pytest.fixture
def registry(settings: Settings):
    registry = TaskRegistry(settings)
    yield registry
    registry.store.close()


def config(**overrides: Any) -> dict[str, Any]:
    return {"epochs": 10, "feature_columns": ["f1"], "target_column": "label", "data_path": "data.csv",
            "output_path": "run", "seed": 0, **overrides}


async def stopped_task(registry: TaskRegistry, workers: FakeWorkers) -> Task:
    """A task stopped after one epoch, with a checkpoint to resume from."""
    task, _ = await registry.start(config())
    workers.made[-1].train_epoch()
    assert (await registry.control(task.task_id, "stop"))[1] == "stopped"
    await until(lambda: not workers.made[-1].alive)
    return task


async def relaunching(registry: TaskRegistry, workers: FakeWorkers, task: Task) -> "asyncio.Task[Any]":
    """A resume from checkpoint in progress: its new worker has started and not answered."""
    workers.on_start = HANG
    resume = asyncio.ensure_future(registry.resume(task.task_id))
    await until(lambda: task.phase == lc.RELAUNCHING and len(workers.made) == 2)
    return resume


async def test_a_stop_during_a_resume_answers_at_once_cancels_it_and_kills_the_new_worker(registry, workers):
    task = await stopped_task(registry, workers)
    resume = await relaunching(registry, workers, task)
    sub = task.subscribe()
    _, state = await asyncio.wait_for(registry.control(task.task_id, "stop"), PROMPT)
    assert state == "stopped" and task.state == "stopped"
    assert "cancelled its resume" in task.reason and f"POST resume/{task.task_id}" in task.reason
    with pytest.raises(Conflict, match="resume from the checkpoint was cancelled"):
        await asyncio.wait_for(resume, PROMPT)
    await until(lambda: not workers.made[1].alive)
    assert "cancelled" in task.gen.kill_reason
    assert (await drain(sub))[-1]["type"] == "complete"
    # It can be resumed again.
    workers.on_start = READY
    _, state, note = await asyncio.wait_for(registry.resume(task.task_id), PROMPT)
    assert state == "running" and "resumed from its checkpoint" in note and len(workers.alive) == 1


async def test_a_stop_while_a_resume_waits_for_the_last_worker_to_exit_cancels_it_before_any_new_worker(
        registry, workers):
    task, _ = await registry.start(config())
    first = workers.made[0]
    first.train_epoch()
    first.end("stopped", "stop requested", exit=False)      # ended, still writing its files
    await until(lambda: task.done)
    resume = asyncio.ensure_future(registry.resume(task.task_id))
    await until(lambda: task.phase == lc.RELAUNCHING)
    _, state = await asyncio.wait_for(registry.control(task.task_id, "stop"), PROMPT)
    assert state == "stopped"
    first._exit(0)
    with pytest.raises(Conflict, match="cancelled"):
        await asyncio.wait_for(resume, PROMPT)
    assert len(workers.made) == 1                           # no new worker was started


async def test_a_delete_during_a_resume_answers_at_once_and_cancels_it(registry, workers, settings):
    task = await stopped_task(registry, workers)
    resume = await relaunching(registry, workers, task)
    sub = task.subscribe()
    await asyncio.wait_for(registry.delete(task.task_id), PROMPT)
    with pytest.raises(Conflict, match="was deleted while it resumed"):
        await asyncio.wait_for(resume, PROMPT)
    await until(lambda: not workers.made[1].alive)
    assert (await drain(sub))[-1]["training_state"] == "stopped"
    with pytest.raises(TaskNotFound):
        registry.get(task.task_id)
    registry.store.flush()
    assert not (settings.tasks_dir / f"{task.task_id}.json").exists()


async def test_a_resume_refused_while_a_client_streams_ends_the_stream_and_leaves_the_task_as_it_was(registry, workers):
    task = await stopped_task(registry, workers)
    reason = task.reason
    resume = await relaunching(registry, workers, task)
    sub = task.subscribe()
    assert task in [*registry.live()] and not sub.closed        # a watcher while it relaunches
    workers.made[1].refuse()
    with pytest.raises(Conflict, match="checkpoint does not load"):
        await asyncio.wait_for(resume, PROMPT)
    events = await drain(sub)
    assert [e["type"] for e in events] == ["progress", "state", "complete"]
    assert events[-1]["training_state"] == "stopped" and task.state == "stopped" and task.reason == reason
    assert "failed" in task.gen.kill_reason


async def test_a_resume_that_times_out_while_a_client_streams_ends_the_stream(registry, workers, settings):
    task = await stopped_task(registry, workers)
    settings.start_timeout = 0.05
    resume = await relaunching(registry, workers, task)
    sub = task.subscribe()
    with pytest.raises(WorkerProblem) as info:
        await asyncio.wait_for(resume, PROMPT)
    assert info.value.status == 504
    assert (await drain(sub))[-1]["training_state"] == "stopped"
    await until(lambda: not workers.made[1].alive)          # the late worker is killed, with its reason
    assert task.state == "stopped" and "did not load the data" in task.gen.kill_reason


async def test_a_stop_while_a_pause_waits_for_its_reply_is_not_held_up(registry, workers):
    task, _ = await registry.start(config())
    worker = workers.made[0]
    send = worker.send
    worker.send = lambda message: True if message.get("cmd") == "pause" else send(message)   # pause: no answer
    pause = asyncio.ensure_future(registry.control(task.task_id, "pause"))
    await until(lambda: bool(task.gen._replies))
    _, state = await asyncio.wait_for(registry.control(task.task_id, "stop"), PROMPT)
    assert state == "stopped"
    with pytest.raises(Conflict, match="already ended"):
        await asyncio.wait_for(pause, PROMPT)


@pytest.mark.parametrize("obeys", [True, False], ids=["stops", "killed"])
async def test_a_shutdown_records_live_tasks_as_interrupted_never_as_out_of_memory(settings, workers, obeys):
    workers.obey_close = obeys
    registry = TaskRegistry(settings)
    task, _ = await registry.start(config())
    worker = workers.made[0]
    worker.train_epoch()
    if obeys:       # it finishes one more epoch while it stops: the record keeps it, as the artifacts do
        worker.close_input = lambda: worker._later(lambda: (worker.train_epoch(), worker.end("stopped", "input closed")))
    sub = task.subscribe()
    await asyncio.wait_for(registry.shutdown(), 5.0)
    assert task.state == "interrupted"
    assert "shut down while the task was running (after epoch 1 of 10)" in task.reason
    assert f"POST resume/{task.task_id}" in task.reason
    assert "memory" not in task.reason and task.error == task.reason
    events = await drain(sub)
    assert events[-1]["type"] == "error" and events[-1]["training_state"] == "interrupted"
    assert not workers.alive
    if not obeys:
        assert "did not stop within" in task.gen.kill_reason
    later = TaskRegistry(settings)         # the next server life lists it interrupted and resumable
    try:
        again = later.get(task.task_id)
        assert again.state == "interrupted" and again.reason == task.reason
        assert len(again.history) == len(task.history) == (2 if obeys else 1)
        assert again.lifecycle.refusal("relaunch", again.task_id) is None
    finally:
        later.store.close()


async def test_a_shutdown_during_a_resume_interrupts_the_task_and_kills_the_new_worker(registry, workers):
    task = await stopped_task(registry, workers)
    resume = await relaunching(registry, workers, task)
    workers.obey_close = False
    await asyncio.wait_for(registry.shutdown(), 5.0)
    assert task.state == "interrupted"
    with pytest.raises(Conflict, match="cancelled"):
        await asyncio.wait_for(resume, PROMPT)
    assert not workers.alive


async def test_a_resumed_run_is_not_killed_by_the_stop_timeout_of_its_last_worker(registry, workers, settings):
    settings.stop_timeout = 0.1
    task, _ = await registry.start(config())
    workers.made[0].train_epoch()
    first = task.gen
    deadline = asyncio.get_running_loop().time() + settings.stop_timeout    # the stop's kill timer fires by then
    await registry.control(task.task_id, "stop")
    await until(lambda: first.exited.done())
    workers.on_start = READY
    await registry.resume(task.task_id)
    await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()) + 0.05)   # past that deadline
    assert task.state == "running" and task.gen is not first and task.gen.alive


async def test_a_task_whose_folder_another_task_replaced_says_so(registry, workers):
    first, _ = await registry.start(config())
    workers.made[0].end()
    await until(lambda: first.done)
    registry.check_not_replaced(first, "evaluation")            # its files are its own
    second, _ = await registry.start({**config(), "overwrite": True})
    workers.made[1].end()
    await until(lambda: second.done)
    assert json.loads((first.output_dir / "evaluation.json").read_text()) == {"written_by": second.task_id}
    with pytest.raises(Gone) as info:
        registry.check_not_replaced(first, "evaluation")
    assert info.value.status == 410 and f"task {second.task_id} was started" in info.value.message
    assert registry.replaced_by(first) == second.task_id and registry.replaced_by(second) is None
    registry.check_not_replaced(second, "evaluation")
    await registry.delete(second.task_id)                     # the folder still holds the second run
    with pytest.raises(Gone, match=f"task {second.task_id}"):
        registry.check_not_replaced(first, "evaluation")


async def test_a_client_streaming_a_task_whose_resume_is_refused_gets_its_end_over_http(api, extension, make_config):
    workers = extension.registry.settings.worker_factory = FakeWorkers()
    status, body = await api.call("POST", "start", body=make_config(epochs=10, output_path="streamed"))
    assert status == 200, body
    task_id = body["task_id"]
    workers.made[0].train_epoch()
    assert (await api.call("POST", "stop", task_id))[1]["training_state"] == "stopped"
    workers.on_start = HANG
    resume = asyncio.ensure_future(api.call("POST", "resume", task_id))
    await until(lambda: len(workers.made) == 2)
    stream = asyncio.ensure_future(api.stream(task_id))
    task = extension.registry.get(task_id)
    await until(lambda: task.subscribers)          # the client watches the relaunch
    workers.made[1].refuse()
    status, body = await asyncio.wait_for(resume, 5.0)
    assert status == 409 and "checkpoint does not load" in body["message"], body
    events, _ = await asyncio.wait_for(stream, 5.0)
    assert events[-1]["type"] == "complete" and events[-1]["training_state"] == "stopped"
