"""The head in memory, indexed by series: what makes recent-range reads of :mod:`storage.sqlite` cheap.

As in Prometheus's TSDB head (``tsdb/head.go``: a ``memSeries`` per series holding its recent samples), each
series of the head keeps its samples in two growable arrays, in append order, so a select of a few series
over the last minutes touches only their samples instead of decoding every scrape of the range. It mirrors
the ``head`` table, which stays the durable copy: it is rebuilt from that table when a store opens (so the
crash-safety story is the table's), extended after each committed append, and replaced by an empty one when
a compaction commits (a compaction moves the head table into chunks).

Snapshots: the writer holds :attr:`MemHead.lock` over a transaction's commit and the head's update that
follows it; a reader holds it while it opens its SQLite read transaction and takes a :class:`HeadView`. A view is
the head as of that snapshot: the series' arrays are only ever appended to and a compaction swaps in new
ones, so samples past the lengths the view noted, or in a newer head, are not seen.

Memory: 16 bytes per head sample (an int64 timestamp and a float64 value kept as its bit pattern, so NaN
payloads such as the staleness marker come back bit for bit), up to 1/8 more in array growth, and about
250 bytes per series in the head. The head holds at most the store's ``head_max_samples`` samples plus one
append (about 20 MB at the default of 1,000,000); a select still running across a compaction keeps the
previous head alive until it ends.
"""

from __future__ import annotations

import threading
from array import array
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeadView:
    """The head as one reader's snapshot sees it: ``lengths`` samples of each series id in ``series``."""

    series: dict[int, tuple[array, array]]
    lengths: dict[int, int]
    min_ts: int | None
    """The earliest timestamp in the head (ms), or None when it is empty."""

    def read(self, sid: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The timestamps (int64 ms) and values (float64) of series ``sid`` in ``[lo, hi]``, in append order."""
        n = self.lengths.get(sid, 0)
        if not n:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        ts_col, bits_col = self.series[sid]
        ts = np.frombuffer(ts_col[:n], dtype=np.int64)  # slicing copies, atomically: the writer may append
        bits = np.frombuffer(bits_col[:n], dtype=np.int64)
        inside = (ts >= lo) & (ts <= hi)
        return ts[inside], bits[inside].view(np.float64)


class MemHead:
    """The samples of the head by series id (one writer, any number of readers)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Held by the writer over a commit and the head's update, and by a reader taking a view."""
        self._series: dict[int, tuple[array, array]] = {}  # series id -> (timestamps, value bits)
        self._min_ts: int | None = None

    def add(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Add committed samples (int64 series ids and ms timestamps, float64 values) in append order.
        The caller holds :attr:`lock`."""
        if not len(sids):
            return
        series = self._series
        bits = np.ascontiguousarray(vals, dtype=np.float64).view(np.int64)
        for sid, t, v in zip(sids.tolist(), ts.tolist(), bits.tolist()):
            columns = series.get(sid)
            if columns is None:
                columns = series[sid] = (array("q"), array("q"))
            columns[0].append(t)
            columns[1].append(v)
        low = int(ts.min())
        self._min_ts = low if self._min_ts is None else min(self._min_ts, low)

    def clear(self) -> None:
        """Start an empty head (a compaction committed). The caller holds :attr:`lock`."""
        self._series, self._min_ts = {}, None

    def load(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Replace the contents with samples given in append order (the head table, when a store opens)."""
        order = np.argsort(sids, kind="stable")  # stable: each series keeps its append order
        sids, ts = sids[order], ts[order]
        bits = np.ascontiguousarray(vals, dtype=np.float64).view(np.int64)[order]
        firsts = np.flatnonzero(np.diff(sids, prepend=sids[:1] - 1))
        ends = np.append(firsts[1:], len(sids))
        with self.lock:
            self._series = {sid: (array("q", ts[a:b].tobytes()), array("q", bits[a:b].tobytes()))
                            for sid, a, b in zip(sids[firsts].tolist(), firsts.tolist(), ends.tolist())}
            self._min_ts = int(ts.min()) if len(ts) else None

    def view(self, sids: list[int]) -> HeadView:
        """The head as it is now, for the series ``sids``. The caller holds :attr:`lock`."""
        series = self._series
        return HeadView(series, {sid: len(series[sid][0]) for sid in sids if sid in series}, self._min_ts)

    def __len__(self) -> int:
        """Samples in the head."""
        return sum(len(columns[0]) for columns in list(self._series.values()))
