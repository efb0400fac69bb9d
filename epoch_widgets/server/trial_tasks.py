"""A sweep's trials trained as the server's own tasks: the sweep's launcher for the HTTP API.

``trainer.sweep`` builds each trial's run with a launcher and trains it with ``fit()`` on a thread
of its own. Over the API that run is a :class:`TaskRun`: it starts the trial as a task of the
registry (a worker process, or a Ray actor, like any task; listed by ``GET tasks`` with its
``sweep_id``) in the folder the server chose, and follows that task's run through its events,
which the task hands over from the server's event loop. Pause, resume and stop go to the task as
the API's own requests do. The sweep's thread never touches the task: everything that does runs
on the server's loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from trainer import RunFollower, RunState, TrainingConfig
from trainer.events import EventBus, Observer
from trainer.handle import RunHandle
from trainer.state import TrainingState

from .errors import ApiProblem, TooManyTasks

if TYPE_CHECKING:
    from .registry import TaskRegistry
    from .tasks import Task

log = logging.getLogger("epoch_widgets.server")

# A run reports its final state, then its train_end once its files are written; a worker that
# died says neither, and its task's end is all there is.
TRAIN_END_WAIT = 30.0
CAPACITY_WAIT = 1.0       # seconds between tries of a trial waiting for a free task slot
# How a task that ended without its run's word ended, in the run's words.
TASK_ENDINGS = {"completed": TrainingState.COMPLETED, "early_stopped": TrainingState.EARLY_STOPPED,
                "stopped": TrainingState.STOPPED, "interrupted": TrainingState.STOPPED, "failed": TrainingState.FAILED}


class TaskLauncher:
    """``trainer.sweep``'s launcher for the server: each trial a task of ``registry``."""

    def __init__(self, registry: "TaskRegistry", loop: asyncio.AbstractEventLoop, sweep_id: str, data_file: Path):
        self.registry, self.loop, self.sweep_id, self.data_file = registry, loop, sweep_id, data_file

    def launch(self, config: TrainingConfig, data: Any, callbacks: Iterable[Observer], resume: bool) -> "TaskRun":
        return TaskRun(self, config, callbacks, resume)


class TaskRun(RunHandle):
    """One trial's run, trained by a server task (see the module docstring). ``task`` is that
    task once its worker is ready."""

    def __init__(self, launcher: TaskLauncher, config: TrainingConfig, callbacks: Iterable[Observer], resume: bool):
        self.config = config
        self._launcher, self._resume = launcher, resume
        self.task: Optional["Task"] = None
        self.seed = config.seed if config.seed is not None else 0
        self.run_state = RunState(total_epochs=config.epochs)
        self.events = EventBus(self)
        for cb in callbacks:
            self.events.add(cb)
        self._follow(self.run_state)
        self._pause_requested = self._stop_requested = self._claimed = False
        self._task: Optional[asyncio.Task[None]] = None
        self._done = threading.Event()
        self.last_request: Optional[concurrent.futures.Future[Any]] = None

    def _follow(self, state: RunState) -> None:
        self.run_state = state
        self._follower = RunFollower(state)
        self._follower.listen(self.events.emit)

    @property
    def task_id(self) -> Optional[str]:
        return self.task.task_id if self.task is not None else None

    @property
    def device_name(self) -> str:
        return f"server task {self.task_id}" if self.task is not None else "a server task (starting)"

    # ------------------------------------------------------------------ control
    def _request(self, action: str) -> None:
        if self.task is None:
            return              # a stop before the worker is ready is sent once it is (see _drive)
        self.last_request = asyncio.run_coroutine_threadsafe(self._control(self.task, action), self._launcher.loop)

    @staticmethod
    async def _control(task: "Task", action: str) -> str:
        try:
            return await task.control(action)
        except ApiProblem as exc:      # e.g. the task ended meanwhile: the run's own end says how
            log.info("sweep trial task %s: %s not applied: %s", task.task_id, action, exc.message)
            return task.state

    # ------------------------------------------------------------------ running
    async def _drive(self) -> None:
        here = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def post(*item: Any) -> None:        # on the server's loop
            try:
                here.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:             # this run's loop has ended
                pass

        launcher = self._launcher
        sweep = {"sweep_id": launcher.sweep_id, "trial": _trial_number(self.config)}
        while True:
            started = asyncio.run_coroutine_threadsafe(launcher.registry.start_trial(
                self.config, launcher.data_file, Path(self.config.output_path or ""), sweep, self._resume,
                lambda event, data: post("event", event, data)), launcher.loop)
            try:
                task = await asyncio.wrap_future(started)
                break
            except TooManyTasks:
                # Other tasks hold every slot (max_running_tasks): the trial waits for one.
                if self._stop_requested:
                    await self._end_run(TrainingState.STOPPED, "stopped before it started (the server's task "
                                                               "slots were all taken)")
                    return
                await asyncio.sleep(CAPACITY_WAIT)
        self.seed = task.seed if task.seed is not None else self.seed
        self._follow(RunState.from_snapshot(task.run_state.snapshot()))
        self.task = task
        asyncio.run_coroutine_threadsafe(_watch_end(task, post), launcher.loop)
        if self._stop_requested:
            self._request("stop")
        while True:
            item = await inbox.get()
            if item[0] == "ended":
                await self._ended(inbox, task)
                return
            if await self._apply_followed(self._follower, item[1], item[2]):
                return

    async def _ended(self, inbox: "asyncio.Queue[tuple[Any, ...]]", task: "Task") -> None:
        """The task ended: its run's train_end follows when the run said its end; otherwise (its
        worker died, the server shut down) the task's end is the run's."""
        if self._final_change is not None:
            try:
                while True:
                    item = await asyncio.wait_for(inbox.get(), TRAIN_END_WAIT)
                    if item[0] == "event" and await self._apply_followed(self._follower, item[1], item[2]):
                        return
            except asyncio.TimeoutError:
                pass
        final = TASK_ENDINGS.get(task.state, TrainingState.FAILED)
        await self._end_run(final, task.reason or task.error or f"its task {task.task_id} ended ({task.state})")

    async def _stop_far_end(self, wait: bool) -> None:
        task = self.task
        if task is not None and not task.done:
            self.last_request = asyncio.run_coroutine_threadsafe(self._control(task, "stop"), self._launcher.loop)

    async def _end_here(self, final: TrainingState, reason: str, wait: bool) -> None:
        await self._end_followed(self._follower, final, reason, wait)


async def _watch_end(task: "Task", post: Any) -> None:
    """Tell the trial's run when its task has ended (however it ended)."""
    sub = task.subscribe()
    try:
        while True:
            event = await sub.get(None)
            if event is None or event["type"] in ("complete", "error"):
                break
    finally:
        sub.close()
    post("ended")


def _trial_number(config: TrainingConfig) -> Optional[int]:
    """The trial's number, from its folder's name (``trial-<n>``)."""
    name = Path(config.output_path or "").name
    number = name.rpartition("-")[2]
    return int(number) if name.startswith("trial-") and number.isdigit() else None
