"""A deployment's Jupyter ``Authorizer`` decides what each user may do with training tasks:
resource ``epoch_training``, action ``read`` for GET requests and ``write`` for the rest."""
from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from traitlets.config import Config

pytestmark = pytest.mark.server


class ReadOnlyAuthorizer(Authorizer):
    """Allows only reads once ``read_only`` is set (the test starts its task before), and records
    every question it is asked."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.read_only = False
        self.asked: list[tuple[str, str]] = []

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        self.asked.append((action, resource))
        return action == "read" or not self.read_only


@pytest.fixture
def jp_server_config(jp_server_config: Config) -> Config:
    jp_server_config.ServerApp.authorizer_class = ReadOnlyAuthorizer
    return jp_server_config


async def test_a_read_only_user_can_watch_tasks_but_not_start_or_control_them(api, make_config, jp_serverapp):
    authorizer = jp_serverapp.authorizer
    assert isinstance(authorizer, ReadOnlyAuthorizer)
    task_id = await api.start(make_config(epochs=200))
    await api.wait_for(task_id, lambda p: p["training_state"] == "running" and p["current_epoch"] >= 1)
    status, body = await api.call("POST", "pause", task_id)
    assert status == 200, body
    paused = await api.wait_for(task_id, lambda p: p["training_state"] == "paused")
    assert ("write", "epoch_training") in authorizer.asked

    authorizer.read_only = True
    authorizer.asked.clear()
    # Reads work ...
    for parts in (("tasks",), ("tasks", task_id), ("progress", task_id), ("history", task_id), ("openapi.json",)):
        status, body = await api.call("GET", *parts)
        assert status == 200, (parts, body)
    assert set(authorizer.asked) == {("read", "epoch_training")}
    # ... every change is refused with 403, saying who refused ...
    for method, parts in (("POST", ("start",)), ("POST", ("pause", task_id)), ("POST", ("resume", task_id)),
                          ("POST", ("stop", task_id)), ("POST", ("update", task_id)), ("DELETE", ("tasks", task_id))):
        body = make_config() if parts == ("start",) else {"learning_rate": 0.5} if parts[0] == "update" else None
        status, body = await api.call(method, *parts, body=body)
        assert status == 403, (method, parts, body)
        assert body["success"] is False and "Authorizer" in body["message"] and "write" in body["message"], body
        assert "token" not in body["message"], body        # the token was fine: no hint to send one
    # ... and changes nothing: still one task, still paused where it was.
    status, body = await api.call("GET", "tasks")
    assert [t["task_id"] for t in body["tasks"]] == [task_id]
    progress = await api.progress(task_id)
    assert progress["training_state"] == "paused" and progress["current_epoch"] == paused["current_epoch"]
    assert progress["config_changes"] == []

    authorizer.read_only = False     # let the test end the run
    status, body = await api.call("POST", "stop", task_id)
    assert status == 200, body
    await api.wait_done(task_id)
