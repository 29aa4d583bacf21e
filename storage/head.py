"""The head in memory, indexed by series: what makes recent-range reads of :mod:`storage.sqlite` cheap.

As in Prometheus's TSDB head (``tsdb/head.go``: a ``memSeries`` per series holding its recent samples), each
series of the head keeps its samples in two growable arrays, in append order, so a select of a few series
over the last minutes touches only their samples instead of decoding every scrape of the range. It mirrors
the ``head`` table, which stays the durable copy: it is rebuilt from that table when a store opens (so the
crash-safety story is the table's), extended after each committed append, and replaced by an empty one when
a compaction commits (a compaction moves the head table into chunks).

A series' head samples come in two forms. Samples appended one by one (lists of samples) go to the
series' own growable arrays. Scrapes appended as columns (:meth:`MemHead.add_columns`: the same series in
the same order, one timestamp and one value each) go to a *run*: a 2-D array with one row per series and
one column per scrape, so such an append writes one column, with no Python work per sample; a series
knows the runs and rows it is in. Every append has a sequence number, kept per sample and per run column,
so a read puts the two forms back in append order (a later write wins on the same timestamp).

Snapshots: the writer holds :attr:`MemHead.lock` over a transaction's commit and the head's update that
follows it; a reader holds it while it opens its SQLite read transaction and takes a :class:`HeadView`. A view is
the head as of that snapshot: the series' arrays are only ever appended to and a compaction swaps in new
ones, so samples past the lengths the view noted, or in a newer head, are not seen.

Memory: 24 bytes per head sample appended one by one (an int64 timestamp, a float64 value kept as its bit
pattern, so NaN payloads such as the staleness marker come back bit for bit, and a sequence number), up
to 1/8 more in array growth; 8 bytes per sample in a run (plus 16 per column), up to twice that in array
growth; and about 250 bytes per series in the head. The head holds at most the store's
``head_max_samples`` samples plus one append (about 20 MB at the default of 1,000,000); a select still
running across a compaction keeps the previous head alive until it ends.
"""

from __future__ import annotations

import itertools
import threading
from array import array
from dataclasses import dataclass

import numpy as np

_EMPTY_TS, _EMPTY_VALUES = np.empty(0, np.int64), np.empty(0, np.float64)


class _Run:
    """Column appends of one series list: ``bits[row, column]`` is the value (as int64 bits) of
    ``refs[row]`` at ``ts[column]``, appended with sequence number ``seq[column]``; ``n`` columns are
    filled. Growing replaces the arrays, so a reader's references stay valid for the columns it saw."""

    __slots__ = ("bits", "n", "refs", "seq", "ts")

    def __init__(self, refs: np.ndarray):
        self.refs = refs
        # room for one column: a run may never get a second (the next scrape's series may differ)
        self.ts, self.seq = np.empty(1, np.int64), np.empty(1, np.int64)
        self.bits = np.empty((len(refs), 1), np.int64)
        self.n = 0

    def append(self, timestamp_ms: int, bits: np.ndarray, seq: int) -> None:
        if self.n == len(self.ts):
            capacity = 2 * self.n
            ts, seqs, values = np.empty(capacity, np.int64), np.empty(capacity, np.int64), \
                np.empty((len(self.refs), capacity), np.int64)
            ts[:self.n], seqs[:self.n], values[:, :self.n] = self.ts, self.seq, self.bits
            self.ts, self.seq, self.bits = ts, seqs, values
        self.ts[self.n], self.seq[self.n] = timestamp_ms, seq
        self.bits[:, self.n] = bits
        self.n += 1


@dataclass(frozen=True)
class HeadView:
    """The head as one reader's snapshot sees it: ``lengths`` samples of each series id in ``series``,
    and in ``cells`` each series' places in runs as ``(timestamps, sequence numbers, value bits, row,
    columns seen)``."""

    series: dict[int, tuple[array, array, array]]
    lengths: dict[int, int]
    min_ts: int | None
    """The earliest timestamp in the head (ms), or None when it is empty."""
    cells: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]]]

    def read(self, sid: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The timestamps (int64 ms) and values (float64) of series ``sid`` in ``[lo, hi]``, in append order."""
        parts = []
        n = self.lengths.get(sid, 0)
        if n:
            ts_col, bits_col, seq_col = self.series[sid]
            # slicing copies, atomically: the writer may append
            parts.append((np.frombuffer(ts_col[:n], dtype=np.int64), np.frombuffer(bits_col[:n], dtype=np.int64),
                          np.frombuffer(seq_col[:n], dtype=np.int64)))
        for ts, seq, bits, row, columns in self.cells.get(sid, ()):
            parts.append((ts[:columns], bits[row, :columns], seq[:columns]))
        if not parts:
            return _EMPTY_TS, _EMPTY_VALUES
        if len(parts) == 1:
            ts, bits, _ = parts[0]
        else:
            ts, bits, seq = (np.concatenate(c) for c in zip(*parts))
            order = np.argsort(seq, kind="stable")
            ts, bits = ts[order], bits[order]
        inside = (ts >= lo) & (ts <= hi)
        return ts[inside], bits[inside].view(np.float64)


class MemHead:
    """The samples of the head by series id (one writer, any number of readers)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Held by the writer over a commit and the head's update, and by a reader taking a view."""
        self.clear()

    def add(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Add committed samples (int64 series ids and ms timestamps, float64 values) in append order.
        The caller holds :attr:`lock`."""
        if not len(sids):
            return
        series = self._series
        seq = next(self._seq)
        bits = np.ascontiguousarray(vals, dtype=np.float64).view(np.int64)
        for sid, t, v in zip(sids.tolist(), ts.tolist(), bits.tolist()):
            columns = series.get(sid)
            if columns is None:
                columns = series[sid] = (array("q"), array("q"), array("q"))
            columns[0].append(t)
            columns[1].append(v)
            columns[2].append(seq)
        self._note_min(int(ts.min()))

    def add_columns(self, refs: np.ndarray, timestamp_ms: int, vals: np.ndarray) -> None:
        """Add one committed scrape of the series ``refs`` (int64 ids) at one timestamp (ms), with
        float64 ``vals`` in the order of ``refs``. Appends with the same ``refs`` array object fill one
        run. The caller holds :attr:`lock`."""
        if not len(refs):
            return
        run = self._runs.get(id(refs))
        if run is None:
            run = self._runs[id(refs)] = _Run(refs)  # the run keeps refs alive: its id is not reused meanwhile
            cells = self._cells
            for row, sid in enumerate(refs.tolist()):
                cells.setdefault(sid, []).append((run, row))
        run.append(timestamp_ms, np.ascontiguousarray(vals, dtype=np.float64).view(np.int64), next(self._seq))
        self._note_min(timestamp_ms)

    def _note_min(self, low: int) -> None:
        self._min_ts = low if self._min_ts is None else min(self._min_ts, low)

    def clear(self) -> None:
        """Start an empty head (a compaction committed). The caller holds :attr:`lock`."""
        self._series: dict[int, tuple[array, array, array]] = {}  # series id -> (timestamps, value bits, seq)
        self._runs: dict[int, _Run] = {}  # id of the refs array -> its run
        self._cells: dict[int, list[tuple[_Run, int]]] = {}  # series id -> its (run, row)s
        self._min_ts: int | None = None
        self._seq = itertools.count(1)  # 0: samples loaded from the head table, already in append order

    def load(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Replace the contents with samples given in append order (the head table, when a store opens)."""
        order = np.argsort(sids, kind="stable")  # stable: each series keeps its append order
        sids, ts = sids[order], ts[order]
        bits = np.ascontiguousarray(vals, dtype=np.float64).view(np.int64)[order]
        firsts = np.flatnonzero(np.diff(sids, prepend=sids[:1] - 1))
        ends = np.append(firsts[1:], len(sids))
        with self.lock:
            self.clear()
            self._series = {sid: (array("q", ts[a:b].tobytes()), array("q", bits[a:b].tobytes()),
                                  array("q", bytes(8 * (b - a))))
                            for sid, a, b in zip(sids[firsts].tolist(), firsts.tolist(), ends.tolist())}
            self._min_ts = int(ts.min()) if len(ts) else None

    def view(self, sids: list[int]) -> HeadView:
        """The head as it is now, for the series ``sids``. The caller holds :attr:`lock`."""
        series, cells = self._series, self._cells
        placed = {sid: [(run.ts, run.seq, run.bits, row, run.n) for run, row in cells[sid]]
                  for sid in sids if sid in cells}
        return HeadView(series, {sid: len(series[sid][0]) for sid in sids if sid in series}, self._min_ts, placed)

    def __len__(self) -> int:
        """Samples in the head."""
        return sum(len(columns[0]) for columns in list(self._series.values())) + \
            sum(len(run.refs) * run.n for run in list(self._runs.values()))
