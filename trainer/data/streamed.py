"""A table trained on as a stream: the fitted preprocessor and split, and the batches of each
epoch read from the source a shuffle buffer at a time.

The epoch's order (a pure function of the seed and the epoch, so a resumed run reads the very
same batches): the blocks (Parquet row groups) are permuted with ``default_rng([seed, epoch])``
(a CSV/TSV file keeps its block order: it is read forwards only); consecutive blocks of that order
fill a shuffle buffer of at most ``buffer_rows`` training samples (or one block, if it holds more),
whose samples are permuted
with ``default_rng([seed, epoch, buffer])``; batches are cut from the buffers one after another
(a batch may span two). Batch ``k`` therefore lies in a buffer known from the block row counts
alone, which is how a run resumed at batch ``k`` starts there without reading what came before.

Windows (cnn, lstm, gru) cross block and batch boundaries: a block is read with the
``sequence_length - 1`` rows before it, so the window ending at a block's first row is whole.
"""
from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Optional

import numpy as np
import pandas as pd

from .preprocessor import Preprocessor
from .sources import Source
from .split import Split


@dataclass
class _Block:
    x: np.ndarray         # float32 rows lo-pad .. hi-1, scaled and encoded
    y: np.ndarray         # targets of rows lo .. hi-1
    lo: int
    pad: int              # rows before lo in x


@dataclass
class _Buffer:
    x: np.ndarray         # mlp: the samples; windows: the rows the windows index
    y: np.ndarray
    starts: Optional[np.ndarray]   # windows: each sample's first row in x
    order: Optional[np.ndarray] = None   # mlp: the shuffled order of x's rows (gathered per batch, not copied)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, a: int, b: int, window: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
        if window is None:
            return (self.x[a:b] if self.order is None else self.x[self.order[a:b]]), self.y[a:b]
        assert self.starts is not None
        return self.x[self.starts[a:b, None] + np.arange(window)], self.y[a:b]


@dataclass
class StreamedData:
    """The streamed counterpart of :class:`~trainer.data.PreparedData` (what the backends read)."""

    source: Source
    preprocessor: Preprocessor
    split: Split
    fingerprint: str
    seed: int
    buffer_rows: int
    streamed: ClassVar[bool] = True
    _starts: np.ndarray = field(init=False, repr=False)
    _train_counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._starts = self.source.starts
        self._train_counts = self.split.train_counts(self._starts)
        self._columns = self.preprocessor.feature_columns + [self.preprocessor.target_column]
        self._val_cache: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    @property
    def task(self) -> str:
        return self.preprocessor.task

    @property
    def window(self) -> Optional[int]:
        return self.preprocessor.sequence_length

    @property
    def n_rows(self) -> int:
        return self.split.n_rows

    @property
    def n_train(self) -> int:
        return self.split.n_train

    @property
    def n_val(self) -> int:
        return self.split.n_val

    # ------------------------------------------------------------------ reading blocks
    def _raw(self, k: int) -> pd.DataFrame:
        return self.source.read(k, self._columns)

    def block(self, k: int) -> _Block:
        """Block ``k`` transformed, with the ``window - 1`` rows before it (windows)."""
        lo = int(self._starts[k])
        df = self._raw(k)
        pad = min(lo, (self.window or 1) - 1)
        if pad:
            before, j = [], k
            while sum(len(b) for b in before) < pad:
                j -= 1
                before.insert(0, self._raw(j))
            head = pd.concat(before, ignore_index=True).iloc[-pad:]
            frame = pd.concat([head, df], ignore_index=True)
        else:
            frame = df
        pre = self.preprocessor
        x = pre.transform(frame[pre.feature_columns])
        y = pre.encode_target(df[pre.target_column])
        return _Block(x, y, lo, pad)

    def _rows_of(self, k: int, rows: np.ndarray, x: Optional[np.ndarray] = None) -> _Block:
        """``mlp``: the block's ``rows`` encoded, a slice of the block at a time, into ``x`` (or a new array)."""
        pre = self.preprocessor
        if x is None:
            x = np.empty((len(rows), pre.n_features), dtype=np.float32)
        y: Optional[np.ndarray] = None
        done = at = 0
        for part in self.source.read_slices(k, self._columns):
            take = rows[(rows >= at) & (rows < at + len(part))] - at
            at += len(part)
            if not len(take):
                continue
            part = part.iloc[take]
            x[done:done + len(take)] = pre.transform(part[pre.feature_columns])
            codes = pre.encode_target(part[pre.target_column])
            if y is None:
                y = np.empty(len(rows), dtype=codes.dtype)
            y[done:done + len(take)] = codes
            done += len(take)
        assert y is not None
        return _Block(x, y, int(self._starts[k]), 0)

    def _buffer(self, blocks: list[int], rng: Optional[np.random.Generator], val: bool = False) -> _Buffer:
        xs, ys, starts, offset = [], [], [], 0
        wanted = self.split.val_rows if val else self.split.train_rows
        counts = [len(wanted(int(self._starts[k]), int(self._starts[k + 1]))) for k in blocks]
        # mlp: every block encodes straight into the buffer's one array (no concatenated copy).
        whole = np.empty((sum(counts), self.preprocessor.n_features), np.float32) if self.window is None else None
        for k, count in zip(blocks, counts):
            lo, hi = int(self._starts[k]), int(self._starts[k + 1])
            if not count:
                continue
            rows = wanted(lo, hi) - lo
            if whole is not None:
                ys.append(self._rows_of(k, rows, whole[offset:offset + count]).y)
                offset += count
            else:
                b = self.block(k)
                ys.append(b.y[rows])
                xs.append(b.x)
                starts.append(offset + b.pad + rows - (self.window - 1))
                offset += len(b.x)
        if not ys:
            empty = np.empty((0, self.preprocessor.n_features), np.float32)
            return _Buffer(empty, np.empty(0, np.float32), np.empty(0, np.int64) if self.window else None)
        join = lambda parts: parts[0] if len(parts) == 1 else np.concatenate(parts)     # noqa: E731
        x, y = (whole if whole is not None else join(xs)), join(ys)
        s = join(starts) if starts else None
        order = None
        if rng is not None:
            perm = rng.permutation(len(y))
            y = y[perm]
            if s is None:
                order = perm
            else:
                s = s[perm]
        return _Buffer(x, y, s, order)

    def probe(self, n: int) -> np.ndarray:
        """The first ``n`` training samples of the table (to check a model's output shape on)."""
        k = int(np.flatnonzero(self._train_counts)[0])
        return self._buffer([k], None).take(0, n, self.window)[0]

    # ------------------------------------------------------------------ epochs
    def epoch(self, epoch_index: int, batch_size: int) -> "EpochStream":
        return EpochStream(self, epoch_index, batch_size)

    def validation_batches(self, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The validation samples in table order, ``chunk`` at a time: (samples, targets, rows).

        ``mlp`` validation samples that fit two shuffle buffers (an eighth of the budget) are kept
        after the first pass over them, so later epochs validate without reading the table."""
        if self._val_cache is None and self.window is None and self.n_val <= 2 * self.buffer_rows:
            parts = list(self._read_validation(self.n_val))
            self._val_cache = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[assignment]
        if self._val_cache is not None:
            x, y, rows = self._val_cache
            for a in range(0, len(y), chunk):
                yield x[a:a + chunk], y[a:a + chunk], rows[a:a + chunk]
            return
        yield from self._read_validation(chunk)

    def _read_validation(self, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for k in range(len(self._train_counts)):
            lo, hi = int(self._starts[k]), int(self._starts[k + 1])
            if not len(self.split.val_rows(lo, hi)):
                continue
            buf = self._buffer([k], None, val=True)
            rows = self.split.val_rows(lo, hi)
            for a in range(0, len(buf), chunk):
                b = min(a + chunk, len(buf))
                yield (*buf.take(a, b, self.window), rows[a:b])


class EpochStream:
    """One epoch's training batches (see the module docstring); :meth:`batches` starts anywhere."""

    def __init__(self, data: StreamedData, epoch_index: int, batch_size: int):
        self.data, self.epoch_index, self.batch_size = data, epoch_index, batch_size
        counts = data._train_counts
        rng = np.random.default_rng([data.seed, epoch_index])
        order = rng.permutation(len(counts)) if data.source.random_access else np.arange(len(counts))
        self.groups: list[list[int]] = []
        filled = data.buffer_rows
        sizes: list[int] = []
        for k in order:
            if not counts[k]:
                continue
            if filled + counts[k] > data.buffer_rows:
                self.groups.append([])
                sizes.append(0)
                filled = 0
            self.groups[-1].append(int(k))
            sizes[-1] += int(counts[k])
            filled += int(counts[k])
        self.group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.n_samples = int(self.group_starts[-1])
        self.num_batches = math.ceil(self.n_samples / batch_size)

    def _load(self, g: int) -> _Buffer:
        return self.data._buffer(self.groups[g], np.random.default_rng([self.data.seed, self.epoch_index, g]))

    def batches(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches ``start``, ``start + 1``, ... as (samples, targets) arrays; the next buffer is
        read on a helper thread while this one trains."""
        pos = start * self.batch_size
        if pos >= self.n_samples:
            return
        g = int(np.searchsorted(self.group_starts, pos, side="right")) - 1
        pool = ThreadPoolExecutor(1, thread_name_prefix="trainer-stream")
        try:
            current = self._load(g)
            ahead: Optional[Future] = pool.submit(self._load, g + 1) if g + 1 < len(self.groups) else None
            i = pos - int(self.group_starts[g])
            window = self.data.window
            while pos < self.n_samples:
                need = min(self.batch_size, self.n_samples - pos)
                pieces = []
                while need:
                    take = min(need, len(current) - i)
                    pieces.append(current.take(i, i + take, window))
                    i, need, pos = i + take, need - take, pos + take
                    if i == len(current) and ahead is not None:
                        g += 1
                        current, i = ahead.result(), 0
                        ahead = pool.submit(self._load, g + 1) if g + 1 < len(self.groups) else None
                if len(pieces) == 1:
                    yield pieces[0]
                else:
                    yield np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def streamed_summary(data: Any) -> dict[str, Any]:
    """Row counts of prepared or streamed data (for checkpoints and messages)."""
    if getattr(data, "streamed", False):
        return {"rows": data.n_rows, "train": data.n_train, "validation": data.n_val}
    return {"rows": int(len(data.x)), "train": int(len(data.train_index)), "validation": int(len(data.val_index))}
