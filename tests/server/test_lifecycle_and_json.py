"""The building blocks of a task's lifecycle and of the API's JSON, without a server."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from epoch_widgets.server import lifecycle as lc
from epoch_widgets.server.errors import BadRequest
from epoch_widgets.server.jsonio import MAX_DEPTH, dumps, parse_body
from epoch_widgets.server.lifecycle import IllegalTransition, Lifecycle
from epoch_widgets.server.paths import PathRedactor, shown_output_dir


def reachable(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in lc.TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_phase_can_end_and_be_deleted_and_only_ended_tasks_are_deleted():
    for phase in lc.TRANSITIONS:
        assert lc.TRANSITIONS[phase] <= set(lc.TRANSITIONS), phase
        if phase != lc.DELETED:
            assert lc.DELETED in reachable(phase), f"no way out of {phase}"
    assert {p for p, targets in lc.TRANSITIONS.items() if lc.DELETED in targets} == lc.FINAL | {lc.STARTING}


def test_moves_outside_the_table_are_refused():
    life = Lifecycle(lc.COMPLETED)
    with pytest.raises(IllegalTransition):
        life.move(lc.RELAUNCHING)           # a completed run has nothing left to continue
    life = Lifecycle(lc.STOPPING)
    with pytest.raises(IllegalTransition):
        life.move(lc.RUNNING)               # a stop is not taken back
    life.move(lc.STOPPED)
    assert life.phase == lc.STOPPED and life.ended


def test_clients_see_one_vocabulary():
    life = Lifecycle()
    assert life.training_state == "pending"
    life.move(lc.RUNNING)
    life.move(lc.PAUSED)
    life.move(lc.STOPPING)
    assert life.training_state == "paused"        # until the worker reports how it ended
    life.move(lc.STOPPED)
    life.move(lc.RELAUNCHING)
    assert life.training_state == "pending"
    assert set(lc.TRAINING_STATES) == {"pending", lc.RUNNING, lc.PAUSED} | lc.FINAL


@pytest.mark.parametrize("phase, action, words", [
    (lc.PAUSED, "pause", "already paused; POST resume/t1"),
    (lc.RUNNING, "resume", "not paused (running)"),
    (lc.STOPPING, "pause", "stopping"),
    (lc.RELAUNCHING, "pause", "resuming from its checkpoint; try again"),
    (lc.COMPLETED, "stop", "already ended (completed)"),
    (lc.COMPLETED, "relaunch", "already ended (completed)"),
    (lc.RUNNING, "delete", "stop it first (POST stop/t1)"),
])
def test_refusals_say_the_state_and_what_to_do(phase, action, words):
    assert words in Lifecycle(phase).refusal(action, "t1")


@pytest.mark.parametrize("phase, action", [(lc.RUNNING, "pause"), (lc.PAUSED, "resume"), (lc.PAUSED, "stop"),
                                           (lc.STOPPING, "stop"), (lc.RELAUNCHING, "stop"), (lc.FAILED, "relaunch"),
                                           (lc.STOPPED, "delete")])
def test_allowed_actions(phase, action):
    assert Lifecycle(phase).refusal(action, "t1") is None


def test_answers_are_standard_json_with_non_finite_numbers_as_null():
    text = dumps({"loss": math.nan, "best": [math.inf, -math.inf, 1.5], "ok": True, "n": None, "path": Path("x")})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "loss": None, "best": [None, None, 1.5], "ok": True, "n": None, "path": "x"}


@pytest.mark.parametrize("raw, field", [
    (b'{"min_delta": NaN}', "min_delta"), (b'{"hidden_units": [8, Infinity]}', "hidden_units[1]"),
    (b'{"gamma": -Infinity}', "gamma"), (b'{"eta_min": 1e400}', "eta_min"),
    (b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2), "[0]" * 1),
    (b"[" * 100_000 + b"]" * 100_000, "<config>"),
])
def test_bodies_with_non_finite_numbers_or_deep_nesting_are_refused_naming_where(raw, field):
    with pytest.raises(BadRequest) as info:
        parse_body(raw)
    assert info.value.errors[0]["field"].startswith(field)


def test_the_servers_folders_are_redacted_whole_components_only(tmp_path):
    root = tmp_path / "root"
    redact = PathRedactor(root, root / "models", tmp_path / "tasks").text
    assert redact(f"could not write {root}/models/run/checkpoints") == "could not write /models/run/checkpoints"
    assert redact(f"no such file '{root}/sub/data.csv'") == "no such file 'sub/data.csv'"
    assert redact(f"in {root}") == "in ."
    assert redact(f"{root}2/x and {root}/models2") == f"{root}2/x and models2"
    assert redact(f"{tmp_path}/tasks/x.json") == "<tasks_dir>/x.json"
    assert shown_output_dir(root / "models" / "a" / "b", root / "models") == "/models/a/b"
