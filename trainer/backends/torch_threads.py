"""How many intra-op threads the torch backend trains with on the CPU, and keeping that choice
inside the training slices.

Small ops gain nothing from several intra-op threads and pay for waking them at every op, the more
so on a machine other jobs keep busy; large ones gain. Which wins depends on the model, the batch
and the machine, so a run times one thread against torch's count on copies of its model and keeps
the faster, unless the user chose a count.

How torch's setting behaves (OpenMP build): ``torch.set_num_threads`` sets the count of the calling
thread and the count a thread takes when it first runs torch code; threads that ran torch code
before keep their own. The epoch loop trains in a compute thread of its own and ``lr_find`` in a
worker thread, so the count is set at the start of every slice in the thread that runs it and put
back to the user's count at its end: no other thread ever sees another count, and nothing changed is
left behind after a run.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Iterator, Optional, Sequence

import torch

log = logging.getLogger("trainer")

# Environment variables through which a user sets the intra-op count before torch starts.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# A candidate must be this much faster than the user's count to be chosen: timing noise on a busy
# machine should not flip the choice for nothing.
_MARGIN = 0.05
# Above this many seconds per step the ops are large enough for threads to pay, and the trials
# would cost more than they could win back: the count stays as it is. (Not lower: on a machine
# other jobs keep busy, waking idle threads can make even a tiny step take tens of milliseconds,
# which is where one thread helps most.)
MAX_PROBE_STEP_SECONDS = 0.1
# Timed steps per trial aim at about this much time (each count is tried twice).
PROBE_SECONDS = 0.015


def torch_default_threads() -> int:
    """The intra-op count torch starts with here: one per physical core."""
    try:
        import psutil  # a dependency of ipykernel and jupyter_server; counts physical cores portably
        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return cores or os.cpu_count() or 1


def user_thread_count(current: Optional[int] = None) -> Optional[int]:
    """The intra-op count the user chose (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` or a
    ``torch.set_num_threads`` call that changed torch's default), else None.

    A ``torch.set_num_threads`` call that sets the default count itself cannot be told apart
    from no call; ``OMP_NUM_THREADS`` pins the count in every case."""
    current = torch.get_num_threads() if current is None else current
    if any(os.environ.get(name, "").strip() for name in THREAD_ENV):
        return current
    return current if current != torch_default_threads() else None


class TrainThreads:
    """The intra-op thread count of one run's training slices.

    Created in the thread that builds the backend (the user's), whose count is the one put back
    after every slice. ``candidates`` are the counts still to try; empty once decided."""

    def __init__(self, device: torch.device):
        self.base = torch.get_num_threads()
        self.user_count = user_thread_count(self.base) if device.type == "cpu" else None
        self.count = self.base
        tunable = device.type == "cpu" and self.user_count is None and self.base > 1
        self.candidates: tuple[int, ...] = (self.base, 1) if tunable else ()
        self.how = ("no choice to make" if device.type != "cpu" else
                    f"set by the user ({self.base})" if self.user_count is not None else
                    "torch's count is 1" if self.base == 1 else "not decided yet")

    @property
    def decided(self) -> bool:
        return not self.candidates

    def keep(self, count: int, how: str) -> None:
        self.count, self.candidates, self.how = count, (), how
        log.debug("torch backend trains with %d intra-op thread(s): %s", count, how)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Train with the chosen count in this thread; the user's count again afterwards."""
        if torch.get_num_threads() == self.count:
            yield
            return
        torch.set_num_threads(self.count)
        try:
            yield
        finally:
            torch.set_num_threads(self.base)

    def choose(self, trial: Callable[[int], tuple[float, Sequence[torch.Tensor]]],
               interrupted: Callable[[], bool] = lambda: False) -> None:
        """Time ``trial(count)`` at each candidate, twice, in alternating order, and keep the fastest
        count whose results are bit-identical to the user's count. When ``interrupted()`` turns
        true between trials, nothing is decided (the next slice tries again).

        ``trial`` trains a few steps from the same state at ``count`` threads and returns (seconds per
        step, every tensor the steps produced). The identity check is what keeps a run's history
        independent of the choice: where a count changes the arithmetic (some recurrent layers'
        gradients), the user's count stays."""
        base = self.candidates[0]
        seconds: dict[int, list[float]] = {c: [] for c in self.candidates}
        results: dict[int, Sequence[torch.Tensor]] = {}
        try:
            for order in (self.candidates, tuple(reversed(self.candidates))):
                for count in order:
                    if interrupted():
                        return
                    torch.set_num_threads(count)
                    step, tensors = trial(count)
                    seconds[count].append(step)
                    results.setdefault(count, tensors)
                    if count == base and step > MAX_PROBE_STEP_SECONDS:
                        self.keep(base, f"{step * 1e3:.0f} ms per step: large enough for {base} threads")
                        return
        finally:
            torch.set_num_threads(self.base)
        best, reasons = base, []
        for count in self.candidates[1:]:
            if not _identical(results[count], results[base]):
                reasons.append(f"{count} thread(s) compute different bits")
            elif min(seconds[count]) < min(seconds[base]) * (1 - _MARGIN):
                best = count
        timing = ", ".join(f"{c}: {min(s) * 1e3:.2f} ms" for c, s in seconds.items())
        self.keep(best, f"timed per step ({timing}){'; ' + '; '.join(reasons) if reasons else ''}")


def _identical(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)
                                    for x, y in zip(a, b))

