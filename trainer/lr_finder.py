"""The learning-rate finder, as fastai's ``Learner.lr_find`` and Lightning's ``Tuner.lr_find``.

It trains ``num_iter`` mini-batches with the rate rising exponentially from ``start_lr`` to
``end_lr``, records each batch's loss and an exponential moving average of it, stops once that
average diverges, and suggests a rate from the curve. Afterwards the model's weights, the
optimiser's state and the run's RNG are exactly what they were (the backend's checkpoint state is
taken before and loaded after), so a run trained after ``lr_find`` repeats one trained without it.

Suggestion rules (``rule``):

- ``"valley"`` (default; fastai's default since 2.5): the longest stretch over which the smoothed
  loss keeps falling, and a rate about halfway along it. Robust to a noisy curve.
- ``"steepest"``: where the smoothed loss falls fastest against log(rate) (fastai's ``steep``,
  Lightning's suggestion). Tends to pick a larger rate than ``valley``.
"""
from __future__ import annotations

import asyncio
import html
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import pandas as pd

from .config import ConfigError
from .state import StateError

if TYPE_CHECKING:
    from .config import TrainingConfig
    from .loop import LocalRun

RULES = ("valley", "steepest")
# The search's history: one row per batch.
HISTORY_COLUMNS = {"iteration": "int64", "learning_rate": "float64", "loss": "float64", "smoothed_loss": "float64"}
# The loss average of fastai and Lightning: an EMA with beta 0.98, bias-corrected as in Adam so
# the first points are not pulled towards zero.
SMOOTHING = 0.98
# fastai (LRFinder.after_batch) and Lightning (early_stop_threshold=4.0) stop once the smoothed
# loss exceeds 4 times the best smoothed loss so far (or is not finite).
DIVERGE_FACTOR = 4.0
# Which shuffles the finder's batches use: a stream of its own, so the run's epochs keep theirs.
_BATCH_STREAM = 0x1F_F1ED


@dataclass
class LRFindResult:
    """The curve and the suggested rate.

    ``history``: one row per batch (``iteration``, ``learning_rate``, ``loss``, ``smoothed_loss``).
    ``suggestion``: the rate ``rule`` picks (None when the curve is too short to judge; ``notes``
    says why); ``suggestions`` holds both rules' picks. ``reason`` says how the search ended.
    """

    history: pd.DataFrame
    suggestion: Optional[float]
    rule: str
    suggestions: dict[str, Optional[float]]
    reason: str
    diverged: bool = False
    stopped: bool = False
    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_iter: int = 100
    notes: list[str] = field(default_factory=list)

    @property
    def suggestion_loss(self) -> Optional[float]:
        """The smoothed loss at the suggested rate (where a plot marks it)."""
        if self.suggestion is None:
            return None
        row = self.history.loc[self.history["learning_rate"] == self.suggestion]
        return float(row["smoothed_loss"].iloc[0]) if len(row) else None

    def apply(self, config: "TrainingConfig") -> "TrainingConfig":
        """``config`` with ``learning_rate`` set to the suggestion."""
        if self.suggestion is None:
            raise ValueError("there is no suggestion to apply: " + ("; ".join(self.notes) or self.reason))
        return config.replace(learning_rate=self.suggestion)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: a non-finite loss (where the search diverged) is ``null``."""
        def clean(values: Any) -> list[Optional[float]]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {"rule": self.rule, "suggestion": self.suggestion, "suggestions": dict(self.suggestions),
                "suggestion_loss": self.suggestion_loss, "reason": self.reason, "diverged": self.diverged,
                "stopped": self.stopped, "start_lr": self.start_lr, "end_lr": self.end_lr,
                "num_iter": self.num_iter, "notes": list(self.notes),
                "history": {"iteration": [int(i) for i in self.history["iteration"]],
                            "learning_rate": clean(self.history["learning_rate"]),
                            "loss": clean(self.history["loss"]),
                            "smoothed_loss": clean(self.history["smoothed_loss"])}}

    def __repr__(self) -> str:
        pick = f"{self.suggestion:.3g}" if self.suggestion is not None else "none"
        return f"<LRFindResult suggestion {pick} ({self.rule}) after {len(self.history)} batches: {self.reason}>"

    def _repr_html_(self) -> str:
        rows = "".join(f"<li>{html.escape(rule)}: {'n/a' if lr is None else f'{lr:.3g}'}</li>"
                       for rule, lr in self.suggestions.items())
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<p><b>Learning-rate finder</b>: {html.escape(repr(self)[1:-1])}</p><ul>{rows}</ul>"
                + (f"<ul>{notes}</ul>" if notes else ""))


def _check_arguments(start_lr: float, end_lr: float, num_iter: int, rule: str) -> None:
    errors = []
    if not isinstance(start_lr, (int, float)) or isinstance(start_lr, bool) or not (0 < start_lr < math.inf):
        errors.append({"field": "start_lr", "value": start_lr, "message": "must be a positive number, e.g. 1e-7"})
    if not isinstance(end_lr, (int, float)) or isinstance(end_lr, bool) or not (0 < end_lr < math.inf):
        errors.append({"field": "end_lr", "value": end_lr, "message": "must be a positive number, e.g. 10"})
    elif not errors and end_lr <= start_lr:
        errors.append({"field": "end_lr", "value": end_lr, "message": f"must be larger than start_lr ({start_lr:g})"})
    if not isinstance(num_iter, int) or isinstance(num_iter, bool) or not 10 <= num_iter <= 100_000:
        errors.append({"field": "num_iter", "value": num_iter,
                       "message": "must be a whole number of batches from 10 to 100000 (100 is usual)"})
    if rule not in RULES:
        errors.append({"field": "rule", "value": rule, "message": f"must be one of {list(RULES)}"})
    if errors:
        raise ConfigError(errors)


class LRFinder:
    """A learning-rate search on ``run``'s model and training split. :meth:`run` blocks;
    ``await finder.arun()`` runs it off the event loop; :meth:`stop` (any thread) or
    ``should_stop()`` returning true ends it after the batch in progress. ``on_step(point)`` is
    called from the searching thread after each batch with that batch's history row."""

    def __init__(self, run: "LocalRun", start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100, *,
                 rule: str = "valley", should_stop: Optional[Callable[[], bool]] = None,
                 on_step: Optional[Callable[[dict[str, Any]], None]] = None):
        _check_arguments(start_lr, end_lr, num_iter, rule)
        if not hasattr(run, "searching"):      # a run whose ranks train in other processes
            raise ConfigError.single("devices", run.config.devices,
                                     "lr_find trains on one device; run it on a config with devices=1 "
                                     "(batch_size is the global batch, so the rate it finds carries over)")
        self.trainer = run
        self.start_lr, self.end_lr, self.num_iter, self.rule = float(start_lr), float(end_lr), num_iter, rule
        self.should_stop = should_stop
        self.on_step = on_step
        self.points: list[dict[str, Any]] = []       # the curve so far (appended by the search)
        self.result: Optional[LRFindResult] = None
        self._stop = threading.Event()
        self._busy = threading.Lock()

    def stop(self) -> None:
        """End the search after the batch in progress; the result keeps the curve so far."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._busy.locked()

    def rate(self, i: int) -> float:
        """The rate of batch ``i`` (0-based): exponential from start_lr to end_lr over num_iter batches."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / (self.num_iter - 1))

    async def arun(self) -> LRFindResult:
        """:meth:`run` in a worker thread; cancelling the awaiting task stops the search."""
        future = asyncio.ensure_future(asyncio.to_thread(self.run))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self.stop()
            await asyncio.wait([future])       # the weights are restored before this returns
            raise

    def run(self) -> LRFindResult:
        """Search, restore the run's state, and return the result. Ctrl-C stops the search."""
        if not self._busy.acquire(blocking=False):
            raise StateError("this LRFinder is already searching; wait for it or stop() it")
        run = self.trainer
        try:
            with run.searching():      # refused while the run trains; start()/fit() refused meanwhile
                self._stop.clear()
                self.points = []
                self.result = self._search(run)
            return self.result
        finally:
            self._busy.release()

    def _search(self, run: "LocalRun") -> LRFindResult:
        backend = run.backend
        saved = backend.checkpoint_state()       # weights, optimiser state, RNG: restored below
        reason, diverged, stopped = f"reached end_lr={self.end_lr:g} after {self.num_iter} batches", False, False
        try:
            avg, best = 0.0, math.inf
            for i, positions in enumerate(self._batches(run)):
                if self._stop.is_set() or (self.should_stop is not None and self.should_stop()):
                    reason, stopped = f"stopped after {i} of {self.num_iter} batches", True
                    break
                lr = self.rate(i)
                loss = backend.train_one_batch(positions, lr)
                finite = math.isfinite(loss)
                avg = SMOOTHING * avg + (1 - SMOOTHING) * loss if finite else math.nan
                smoothed = avg / (1 - SMOOTHING ** (i + 1))
                point = {"iteration": i + 1, "learning_rate": lr, "loss": loss, "smoothed_loss": smoothed}
                self.points.append(point)
                if self.on_step is not None:
                    self.on_step(dict(point))
                if not math.isfinite(smoothed) or smoothed > DIVERGE_FACTOR * best:
                    reason, diverged = (f"the loss diverged at rate {lr:.3g} (batch {i + 1}: smoothed loss "
                                        f"{smoothed:.4g} > {DIVERGE_FACTOR:g} x best {best:.4g})"), True
                    break
                best = min(best, smoothed)
        except KeyboardInterrupt:
            reason, stopped = f"interrupted after {len(self.points)} of {self.num_iter} batches", True
        finally:
            backend.load_checkpoint_state(saved)
        return self._result(reason, diverged, stopped)

    def _batches(self, run: "LocalRun") -> Any:
        """``num_iter`` batches of training-sample positions: shuffled epochs, full batches only."""
        n = run.data.n_train
        size = min(run.config.batch_size, n)
        per_epoch = n // size
        for i in range(self.num_iter):
            cycle, k = divmod(i, per_epoch)
            if k == 0:
                order = np.random.default_rng([run.seed, _BATCH_STREAM, cycle]).permutation(n)
            yield order[k * size:(k + 1) * size]

    def _result(self, reason: str, diverged: bool, stopped: bool) -> LRFindResult:
        # Typed columns: a search stopped before its first batch has none to infer them from.
        history = pd.DataFrame(self.points, columns=list(HISTORY_COLUMNS)).astype(HISTORY_COLUMNS)
        suggestions, notes = suggest(history["learning_rate"].to_numpy(), history["smoothed_loss"].to_numpy(),
                                     self.num_iter)
        return LRFindResult(history=history, suggestion=suggestions[self.rule], rule=self.rule,
                            suggestions=suggestions, reason=reason, diverged=diverged, stopped=stopped,
                            start_lr=self.start_lr, end_lr=self.end_lr, num_iter=self.num_iter, notes=notes)


def suggest(lrs: np.ndarray, smoothed: np.ndarray, num_iter: int) -> tuple[dict[str, Optional[float]], list[str]]:
    """Both rules' rates for a curve, and notes when none can be given.

    As fastai does, the first ``num_iter // 10`` points (start-up noise) and the last 5 (where
    the loss takes off) are left out, and so is everything from the first non-finite loss on.
    """
    lrs, smoothed = np.asarray(lrs, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(smoothed)
    end = int(np.argmin(finite)) if not finite.all() else len(smoothed)
    lo, hi = num_iter // 10, end - 5
    if hi - lo < 3:
        note = (f"too few batches before the loss diverged or the search stopped ({end}) to suggest a rate; "
                f"lower start_lr, raise end_lr less steeply or use more batches (num_iter)")
        return {rule: None for rule in RULES}, [note]
    lrs, losses = lrs[lo:hi], smoothed[lo:hi]
    return {"valley": float(lrs[_valley(losses)]), "steepest": float(lrs[_steepest(lrs, losses)])}, []


def _valley(losses: np.ndarray) -> int:
    """fastai's ``valley`` (fastai/callback/schedule.py): the longest run of points each lower than
    an earlier one (a longest decreasing subsequence ending at each point), then the point
    1/3 + 1/6 of the way along it (about halfway)."""
    n = len(losses)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            # Inside the inner loop, as in fastai, so the same curve gets fastai's suggestion.
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return min(max(max_start + int(sections) + int(sections / 2), 0), n - 1)


def _steepest(lrs: np.ndarray, losses: np.ndarray) -> int:
    """The most negative slope of the smoothed loss against log(rate)."""
    return int(np.argmin(np.gradient(losses, np.log(lrs))))
