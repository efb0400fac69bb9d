"""A task's lifecycle: its phases, the transitions allowed between them, and what each refuses.

::

    starting ──ready──> running <──> paused          (pause/resume, reported by the worker)
                         │   └──────────┤
                         │            stop
                         │              v
                         ├─────────> stopping ──> completed | stopped | early_stopped | failed
                         └──(the run ends, the worker dies, the server shuts down)──> an ended state
    stopped | failed | interrupted ──resume──> relaunching ──ready──> running
                                               (back to where it was when the new worker fails;
                                                stopped when a stop or delete cancels it)
    any ended state ──delete──> deleted

Every move into an ended phase goes through one step, ``Task._finish``: it records the end and its
reason, sends each stream client its final event and ends its stream, and saves the record.

A request takes its transition under the task's :attr:`Lifecycle.lock` without awaiting, so the
next request sees the state it left and is answered 409 when that state does not allow it. No lock
is held across a wait (for a worker's reply, its exit or its ready): a request that waits re-checks
afterwards that its transition is still the current one, so a stop or delete never waits behind
it and a resume in progress can be cancelled. Transitions that do not await (worker events, the
worker's exit, the stop timeout's kill) run on the event loop's thread in one step each; they act
only on the worker generation they belong to (see ``generation.py``).
"""
from __future__ import annotations

import asyncio
from typing import Optional

STARTING, RUNNING, PAUSED, STOPPING, RELAUNCHING = "starting", "running", "paused", "stopping", "relaunching"
COMPLETED, STOPPED, EARLY_STOPPED, FAILED, INTERRUPTED = "completed", "stopped", "early_stopped", "failed", "interrupted"
DELETED = "deleted"

FINAL = frozenset({COMPLETED, STOPPED, EARLY_STOPPED, FAILED, INTERRUPTED})
# Ended tasks that POST resume/{id} continues from their last checkpoint (a completed or
# early-stopped run has nothing left to do).
RESUMABLE = frozenset({STOPPED, FAILED, INTERRUPTED})
# Phases with a worker process (or one on its way): they count against max_running_tasks.
LIVE = frozenset({STARTING, RUNNING, PAUSED, STOPPING, RELAUNCHING})
# The training_state values a client sees (``pending`` covers starting and relaunching).
TRAINING_STATES = ("pending", RUNNING, PAUSED, COMPLETED, STOPPED, EARLY_STOPPED, FAILED, INTERRUPTED)

_ENDINGS = frozenset({COMPLETED, STOPPED, EARLY_STOPPED, FAILED, INTERRUPTED})
TRANSITIONS: dict[str, frozenset[str]] = {
    STARTING: frozenset({RUNNING, DELETED}),                 # ready, or the start is refused
    RUNNING: frozenset({PAUSED, STOPPING}) | _ENDINGS,
    PAUSED: frozenset({RUNNING, STOPPING}) | _ENDINGS,
    STOPPING: _ENDINGS,
    RELAUNCHING: frozenset({RUNNING}) | RESUMABLE,           # ready, or back where it was
    STOPPED: frozenset({RELAUNCHING, DELETED, INTERRUPTED}),  # interrupted: stopped by a server shutdown
    FAILED: frozenset({RELAUNCHING, DELETED}),
    INTERRUPTED: frozenset({RELAUNCHING, DELETED}),
    COMPLETED: frozenset({DELETED}),
    EARLY_STOPPED: frozenset({DELETED}),
    DELETED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A transition the table does not allow: a bug in the server, never a client's mistake."""


class Lifecycle:
    """The phase of one task, its allowed moves and the lock that serialises awaiting transitions."""

    def __init__(self, phase: str = STARTING):
        if phase not in TRANSITIONS:
            raise IllegalTransition(f"unknown phase {phase!r}")
        self.phase = phase
        # What the run reported last while it had a worker (running or paused): shown while stopping.
        self.run_state = RUNNING
        self.lock = asyncio.Lock()

    def move(self, to: str) -> None:
        if to == self.phase:
            return
        if to not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"a task cannot go from {self.phase} to {to}")
        self.phase = to
        if to in (RUNNING, PAUSED):
            self.run_state = to

    @property
    def ended(self) -> bool:
        return self.phase in FINAL or self.phase == DELETED

    @property
    def training_state(self) -> str:
        """The state a client sees: the run's own vocabulary, ``pending`` until a worker is ready."""
        if self.phase in (STARTING, RELAUNCHING):
            return "pending"
        if self.phase == STOPPING:
            return self.run_state
        return self.phase

    def refusal(self, action: str, task_id: str) -> Optional[str]:
        """Why ``action`` (pause, resume, stop, update, relaunch, delete) is not possible now, with
        what to do instead; None when it is."""
        phase, state = self.phase, self.training_state
        ended = f"cannot {action}: the task has already ended ({state})"
        busy = {STARTING: "its worker is starting", RELAUNCHING: "it is resuming from its checkpoint",
                STOPPING: "it is stopping (a stop was requested); it ends within a batch or two"}
        if action == "delete":
            if phase in FINAL:      # (a resume in progress is cancelled before this is asked)
                return None
            return (f"task {task_id} is still {state}; stop it first (POST stop/{task_id}), then delete it"
                    + (f" ({busy[phase]})" if phase in busy else ""))
        if phase in busy and not (action == "stop" and phase in (STOPPING, RELAUNCHING)):
            return f"cannot {action}: {busy[phase]}; try again once it has answered (GET progress/{task_id})"
        if action == "pause":
            if phase == PAUSED:
                return f"cannot pause: the run is already paused; POST resume/{task_id} continues it"
            return None if phase == RUNNING else ended
        if action == "resume":
            if phase == RUNNING:
                return f"cannot resume: the run is not paused ({state})"
            return None if phase == PAUSED else ended
        if action == "update":    # a change to the live run's settings, running or paused
            return None if phase in (RUNNING, PAUSED) else ended
        if action == "stop":      # stopping a task that resumes from its checkpoint cancels that resume
            return None if phase in (RUNNING, PAUSED, STOPPING, RELAUNCHING) else ended
        if action == "relaunch":
            return None if phase in RESUMABLE else ended
        raise ValueError(f"unknown action {action!r}")
