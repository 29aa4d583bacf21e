"""A read-only view of stored history for replaying it in time order (``opswatch rules backtest``).

Replaying evaluates the same few metric names at every step over a window that slides forward by one step:
read from SQLite each time, that costs ~150 ms per step on the reference platform's 2,400 series. A
:class:`ReplayStore` reads each name once per ``chunk_ms`` of history (the series over ``[start, start +
chunk]``) and answers the window reads from memory by slicing. Reads that are not plain forward windows
(downsampled, unbounded, or before the chunk, e.g. an incident report's evidence) go to the store below.

Nothing is written: :meth:`ReplayStore.append` drops what a replayed pipeline records (the golden signals,
anomaly scores, recording rules). Those reach the rules through :meth:`alerting.rules.RuleEvaluator.push`,
as in the live pipeline, so the history is left exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from collectors.samples import ColumnBatch, Sample

from .base import Store, TimeSeries
from .matchers import Matcher, to_matchers

DEFAULT_CHUNK_MS = 6 * 3_600_000


_SPAN = 1 << 42
"""Chunk offsets (ms) stay below this (139 years): series ``i``'s timestamps are keyed ``i * _SPAN + offset``."""


@dataclass
class _Chunk:
    """Every series of one name over ``[lo, hi]`` (ms). ``keys`` are the samples' times of all series in one
    sorted array (series ``i``'s keyed ``i * _SPAN + (t - lo)``), so one ``searchsorted`` finds every series'
    window at once."""

    lo: int
    hi: int
    series: list[TimeSeries]
    keys: np.ndarray
    starts: np.ndarray  # where each series' samples begin in ``keys``

    def window(self, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Per series, the positions ``[first, last)`` of its samples in ``[start_ms, end_ms]``."""
        base = np.arange(len(self.series), dtype=np.int64) * _SPAN - self.lo
        first = np.searchsorted(self.keys, base + max(start_ms, self.lo), "left") - self.starts
        last = np.searchsorted(self.keys, base + end_ms, "right") - self.starts
        return first, last


class ReplayStore:
    """A :class:`storage.base.Store` over ``store`` that never writes and serves forward-moving window reads
    from memory, ``chunk_ms`` of history per metric name at a time (see the module docstring).

    Memory: one chunk of every name read, e.g. ~2,400 series x 6 h at a 60 s step: ~1 M samples.
    """

    def __init__(self, store: Store, chunk_ms: int = DEFAULT_CHUNK_MS):
        self.store, self.chunk_ms = store, int(chunk_ms)
        self._chunks: dict[str, _Chunk] = {}

    def append(self, samples: Iterable[Sample]) -> int:
        """Drop ``samples`` (the history is not changed); returns 0, the number written."""
        return 0

    def append_columns(self, parts: Sequence[ColumnBatch | Sequence[Sample]]) -> int:
        """Drop ``parts``, as :meth:`append`."""
        return 0

    def select(self, name: str, matchers: Mapping[str, str] | list[Matcher] | None = None,
               start_ms: int | None = None, end_ms: int | None = None, step_ms: int | None = None
               ) -> list[TimeSeries]:
        """See :meth:`storage.base.Store.select`; the same result as the store below gives.

        :raises StorageError: when the store below fails.
        """
        if step_ms is not None or start_ms is None or end_ms is None:
            return self.store.select(name, matchers, start_ms, end_ms, step_ms)
        chunk = self._chunks.get(name)
        if chunk is None or end_ms > chunk.hi:
            chunk = self._chunks[name] = self._load(name, start_ms, max(end_ms, start_ms + self.chunk_ms))
        elif start_ms < chunk.lo:  # behind the replay (a report's look back): not worth caching
            return self.store.select(name, matchers, start_ms, end_ms)
        wanted = to_matchers(matchers)
        out = []
        for ts, first, last in zip(chunk.series, *chunk.window(start_ms, end_ms)):
            if last > first and all(m.matches(ts.labels) for m in wanted):
                out.append(TimeSeries(name, ts.labels, ts.values.iloc[first:last]))
        return out

    def _load(self, name: str, lo: int, hi: int) -> _Chunk:
        found = self.store.select(name, None, lo, hi)
        times = [ts.values.index.as_unit("ms").asi8 - lo for ts in found]
        keys = np.concatenate([t + i * _SPAN for i, t in enumerate(times)]) if times else np.zeros(0, np.int64)
        starts = np.cumsum([0] + [len(t) for t in times[:-1]], dtype=np.int64)
        return _Chunk(lo, hi, found, keys, starts)

    def close(self) -> None:
        """Forget the chunks; the store below stays open (its owner closes it)."""
        self._chunks.clear()
