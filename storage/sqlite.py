"""The embedded time-series store: one SQLite file in WAL mode, laid out like Prometheus's TSDB.

Tables (``PRAGMA user_version`` 2):

``series``   the series index: id, metric name, canonical JSON labels.
``head``     one row per :meth:`SQLiteStore.append` or :meth:`SQLiteStore.append_columns` (one or a few
             scrapes): its series ids, timestamps and values as packed columns (:mod:`storage.encoding`).
             An append is one INSERT in one transaction, so a committed append survives a crash of the
             process (``synchronous=NORMAL``: a power loss may still lose the last transactions before a
             WAL checkpoint).
``chunks``   per-series packed samples, never spanning a 2 h block (``BLOCK_MS``). *Head compaction*
             moves the head into level-1 chunks once it holds ``head_max_samples``; *block compaction*
             merges the level-1 chunks of a block that has closed (1 h past its end) into one level-2
             chunk per series, and writes its rollups.
``rollups``  per series, per closed block, per resolution (5 m and 1 h): min/max/sum/count
             (:mod:`storage.rollups`), used by ``select(..., step_ms=...)`` for long ranges.

A later append of the same (series, timestamp) replaces the earlier sample, wherever it lives. Retention:
blocks whose samples are all older than ``retention_ms`` before the clock are deleted at each
compaction, and series left without samples leave the index.

The head is also kept in memory, by series (:mod:`storage.head`, as Prometheus's head block): a select
reads the head samples of the series it picked from there, and only chunks from SQLite, so reading the
last minutes of a few series does not decode every scrape of those minutes. It is rebuilt from the
``head`` table when the file is opened (about 0.1 s per 400,000 head samples), so it answers for what
the file holds; a second process writing the same file is not seen (one process owns a store).

Memory is bounded: the in-memory head holds at most ``head_max_samples`` samples plus one append (about
18 B each, plus about 250 B per series in the head: about 20 MB at the default); the series-id cache
(Prometheus's "scrape cache": a sample's name and label items, in the order the page gives them, to its
series id) holds at most ``max_cached_series`` entries (about 250 B each) and is cleared when full; a
compaction holds at most ``head_max_samples`` samples (about 60 B each while sorting); a select holds what
it returns (and, when it overlaps a compaction, the previous in-memory head until it ends). Label sets
are read from SQLite, not kept.

Thread safety: one writer connection guarded by a lock; every reading thread gets its own connection.
A select reads in one SQLite transaction (a snapshot) opened together with its view of the in-memory
head (the writer commits and updates that head as one step), so it sees a batch whole or not at all.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from collectors.samples import ColumnBatch, Sample, SeriesRefs
from opswatch.errors import StorageError

from . import bulk, rollups
from .base import TimeSeries
from .encoding import float_words, int_words, pack, pack_floats, pack_ints, unpack_floats, unpack_ints
from .head import HeadView, MemHead
from .matchers import Matcher, to_matchers

BLOCK_MS = 2 * 3600 * 1000
"""Time span of one chunk at most, and of one block of rollups (Prometheus's block range)."""

CLOSE_AFTER_MS = 3600 * 1000
"""A block closes (gets its level-2 chunks and rollups) once the head has samples this far past its end."""

DEFAULT_RETENTION_MS = 15 * 86400 * 1000
"""Prometheus's default ``--storage.tsdb.retention.time``: 15 days."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (name, labels)
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY,  -- append order: a later row wins on the same (series, timestamp)
    n INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    series_ids BLOB NOT NULL,
    timestamps BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS head_by_time ON head (max_ts);
CREATE TABLE IF NOT EXISTS chunks (
    series_id INTEGER NOT NULL,
    block INTEGER NOT NULL,
    level INTEGER NOT NULL,  -- 1: from head compaction; 2: the whole block, merged, with rollups
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    n INTEGER NOT NULL,
    timestamps BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_series ON chunks (series_id, max_ts);
CREATE INDEX IF NOT EXISTS chunks_open ON chunks (block) WHERE level = 1;
CREATE INDEX IF NOT EXISTS chunks_by_time ON chunks (max_ts);
CREATE TABLE IF NOT EXISTS rollups (
    series_id INTEGER NOT NULL,
    step_ms INTEGER NOT NULL,
    block INTEGER NOT NULL,
    ints BLOB NOT NULL,    -- bucket starts, then counts
    floats BLOB NOT NULL,  -- mins, then maxs, then sums
    UNIQUE (series_id, step_ms, block)
);
PRAGMA user_version = 2;
"""

_INT64 = (-(2**63), 2**63 - 1)


class SQLiteStore:
    """A :class:`storage.base.Store` in one SQLite file.

    :param path: the database file; its directory is created if missing. A file of the first layout
        (one ``samples`` row per sample) is converted when opened.
    :param retention_ms: how long samples are kept, in ms (default 15 days, as Prometheus).
    :param clock: seconds since the epoch, for retention.
    :param head_max_samples: head size that triggers a compaction (bounds the compaction's memory).
    :param max_cached_series: bound of the series-id cache.
    :raises StorageError: when the file cannot be opened or is not a database.
    """

    def __init__(self, path: str | Path, retention_ms: int = DEFAULT_RETENTION_MS,
                 clock: Callable[[], float] = time.time, head_max_samples: int = 1_000_000,
                 max_cached_series: int = 500_000):
        self.path = Path(path)
        self.retention_ms, self.clock = int(retention_ms), clock
        self.head_max_samples, self.max_cached_series = head_max_samples, max_cached_series
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._ids: dict[tuple, int] = {}
        self._epoch = object()  # marks series ids cached on SeriesRefs as this store's, valid until retention
        self._head = MemHead()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._writer.executescript(_SCHEMA)
            self._load_head_stats()
            self._convert_first_layout()
            self._load_head()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open SQLite store {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA page_size = 65536")  # for a new file: chunks of a few KB fill pages, not half of them
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _convert_first_layout(self) -> None:
        """Move the samples of the one-row-per-sample layout into the head, then compact."""
        if not self._writer.execute("SELECT 1 FROM sqlite_master WHERE name = 'samples'").fetchone():
            return
        with self._writer:
            cursor = self._writer.execute("SELECT series_id, ts, value FROM samples")
            while rows := cursor.fetchmany(self.head_max_samples):
                sids, ts, values = zip(*rows)
                self._insert_head(list(sids), list(ts), [np.nan if v is None else v for v in values])
            self._writer.execute("DROP TABLE samples")
        self._load_head_stats()
        self._compact()

    def _load_head_stats(self) -> None:
        self._head_n, self._head_max_ts = self._writer.execute(
            "SELECT coalesce(sum(n), 0), max(max_ts) FROM head").fetchone()

    def _load_head(self) -> None:
        """Rebuild the in-memory head from the head table, in append order."""
        rows = self._writer.execute("SELECT series_ids, timestamps, vals FROM head ORDER BY id").fetchall()
        if rows:
            self._head.load(*(np.concatenate(c) for c in zip(*(
                (unpack_ints(s), unpack_ints(t), unpack_floats(v)) for s, t, v in rows))))

    # -- writing -----------------------------------------------------------------------------------------

    def _new_series_id(self, name: str, labels: Mapping[str, str]) -> int:
        key = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))
        row = self._writer.execute("SELECT id FROM series WHERE name = ? AND labels = ?", (name, key)).fetchone()
        if row is None:
            row = (self._writer.execute("INSERT INTO series (name, labels) VALUES (?, ?)", (name, key)).lastrowid,)
        return row[0]

    def _insert_head(self, sids: Sequence[int] | np.ndarray, ts: Sequence[int] | np.ndarray,
                     values: Sequence[float] | np.ndarray) -> None:
        """Insert one head row."""
        sid_arr = np.asarray(sids, dtype=np.int64)
        ts_arr = np.asarray(ts, dtype=np.int64)  # OverflowError beyond int64
        vals = np.asarray(values, dtype=np.float64)  # ValueError/TypeError for a value that is not a number
        self._writer.execute(
            "INSERT INTO head (n, min_ts, max_ts, series_ids, timestamps, vals) VALUES (?, ?, ?, ?, ?, ?)",
            (len(sids), int(ts_arr.min()), int(ts_arr.max()), pack_ints(sid_arr), pack_ints(ts_arr),
             pack_floats(vals)))

    def append(self, samples: Iterable[Sample]) -> int:
        """Write samples as one head row in one transaction (compacting when the head is full).

        :returns: the number of samples written; once it returns they survive a crash of the process.
        :raises StorageError: when SQLite fails or a timestamp/value is not an int64/float; nothing of the
            batch is kept then.
        """
        return self.append_columns([samples if isinstance(samples, list) else list(samples)])

    def append_columns(self, parts: Sequence[ColumnBatch | Sequence[Sample]]) -> int:
        """Write column batches (:class:`~collectors.samples.ColumnBatch`: one scrape of known series) and
        lists of samples as one head row in one transaction, in the order given (a later sample wins on
        the same series and timestamp); compacts when the head is full.

        A column batch's series are looked up once: their ids are cached on its
        :class:`~collectors.samples.SeriesRefs`, so the next batch of the same series costs no work per
        series nor per sample in Python (as Prometheus's scrape cache keeps series references).

        :returns: the number of samples written; once it returns they survive a crash of the process.
        :raises StorageError: when SQLite fails or a timestamp/value is not an int64/float; nothing of the
            call is kept then.
        """
        with self._write_lock:
            new: dict[tuple, int] = {}
            resolved: list[tuple[SeriesRefs, np.ndarray]] = []
            columns: list[tuple[np.ndarray, np.ndarray, np.ndarray, int | None]] = []  # sids, ts, values, scrape ts
            with self._head.lock:  # readers open their snapshots before this commit or once the head has it
                try:
                    with self._writer:
                        for part in parts:
                            if isinstance(part, ColumnBatch):
                                if len(part):
                                    sids = self._batch_ids(part.series, new, resolved)
                                    columns.append((sids, np.full(len(sids), part.timestamp_ms, np.int64),
                                                    np.asarray(part.values, np.float64), part.timestamp_ms))
                            elif part:
                                columns.append((*self._sample_columns(part, new), None))
                        if columns:
                            self._insert_head(*(np.concatenate(c) for c in list(zip(*columns))[:3]))
                except (sqlite3.Error, OverflowError, TypeError, ValueError) as exc:
                    raise StorageError(f"writing {self.path}: {type(exc).__name__}: {exc}") from exc
                for sids, ts, values, scrape_ts in columns:
                    if scrape_ts is None:
                        self._head.add(sids, ts, values)
                    else:
                        self._head.add_columns(sids, scrape_ts, values)
            cache = self._ids
            if len(cache) + len(new) > self.max_cached_series:
                cache.clear()
            cache.update(islice(new.items(), self.max_cached_series))  # committed: now the cache may know them
            for series, sids in resolved:
                series.refs, series.owner = sids, self._epoch
            written = sum(len(c[0]) for c in columns)
            if written:
                latest = max(int(c[1].max()) for c in columns)
                self._head_n += written
                self._head_max_ts = latest if self._head_max_ts is None else max(self._head_max_ts, latest)
                if self._head_n >= self.head_max_samples:
                    self._compact()
        return written

    def _sample_columns(self, batch: Sequence[Sample], new: dict[tuple, int]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Series ids, timestamps and values of samples (creating series as needed; ids created in this
        transaction go to ``new``). :raises OverflowError, TypeError, ValueError: for a bad timestamp or value."""
        cache = self._ids  # one flat tuple and one dict lookup per sample
        keys = [(name, *labels, *labels.values()) for name, labels, _, _ in batch]
        sids = list(map(cache.get, keys))
        for i in [i for i, sid in enumerate(sids) if sid is None]:
            sid = new.get(keys[i])  # not cached in this label order: look it up, or create it
            sids[i] = new[keys[i]] = sid or self._new_series_id(batch[i].name, batch[i].labels)
        _, _, ts, values = zip(*batch)
        return (np.array(sids, dtype=np.int64), np.array(ts, dtype=np.int64),  # OverflowError beyond int64
                np.array(values, dtype=np.float64))  # ValueError/TypeError for a value that is not a number

    def _batch_ids(self, series: SeriesRefs, new: dict[tuple, int], resolved: list) -> np.ndarray:
        """The series ids of a column batch: cached on ``series`` if this store set them there, else looked
        up (or created) and noted in ``resolved``, to be cached once the transaction commits."""
        if series.owner is self._epoch:
            return series.refs
        for known, sids in resolved:  # the same series twice in one call
            if known is series:
                return sids
        cache, sids = self._ids, []
        for name, labels in series:
            key = (name, *labels, *labels.values())
            sid = cache.get(key) or new.get(key)
            if sid is None:
                sid = new[key] = self._new_series_id(name, labels)
            sids.append(sid)
        ids = np.array(sids, dtype=np.int64)
        resolved.append((series, ids))
        return ids

    def append_block(self, series: Sequence[tuple[str, Mapping[str, str]]], timestamps_ms: np.ndarray,
                     values: np.ndarray, present: np.ndarray | None = None) -> int:
        """Write many series over one time range at once, straight into chunks (a backfill), in one
        transaction.

        :param series: ``(name, labels)`` of each row of ``values``.
        :param timestamps_ms: int64 ms since the epoch, strictly increasing, shape ``(T,)``.
        :param values: float64, shape ``(len(series), T)``.
        :param present: bool, same shape: which samples exist (None: all); a series absent from part of the
            range (it starts or ends inside it) has False there.
        :returns: the number of samples written.
        :raises ValueError: for shapes or timestamps that do not fit (nothing is written).
        :raises StorageError: when SQLite fails (nothing is written).

        Blocks that have closed (see :data:`CLOSE_AFTER_MS`; the newest sample is this range's or the
        head's) get level-2 chunks and their rollups at once, the others level-1 chunks that a later
        compaction closes. The head is compacted first, so these samples win over any stored sample of
        the same series and timestamp. Samples in blocks that retention would delete at once (older than
        ``retention_ms`` before the clock) are not written: a backfill longer than the retention keeps
        its newest part, as the store would after its next compaction.
        """
        ts = np.asarray(timestamps_ms)
        vals = np.asarray(values, dtype=np.float64)
        mask = np.ones(vals.shape, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        bulk.check_block(len(series), ts, vals, mask)
        with self._write_lock:
            if self._head_n:
                self._compact()
            keep = ts >= (int(self.clock() * 1000) - self.retention_ms) // BLOCK_MS * BLOCK_MS
            ts, vals, mask = ts[keep].astype(np.int64), vals[:, keep], mask[:, keep]
            if not len(ts) or not mask.any():
                return 0
            newest = int(ts[-1]) if self._head_max_ts is None else max(int(ts[-1]), self._head_max_ts)
            try:
                with self._writer:
                    sids = np.array([self._new_series_id(name, labels) for name, labels in series], np.int64)
                    for a, b in zip(*(x.tolist() for x in _runs(ts // BLOCK_MS))):
                        block = int(ts[a]) // BLOCK_MS * BLOCK_MS
                        level = 2 if block + BLOCK_MS + CLOSE_AFTER_MS <= newest else 1
                        self._append_block_part(sids, ts[a:b], vals[:, a:b], mask[:, a:b], block, level)
            except sqlite3.Error as exc:
                raise StorageError(f"writing {self.path}: {type(exc).__name__}: {exc}") from exc
        return int(mask.sum())

    def _append_block_part(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray, mask: np.ndarray,
                           block: int, level: int) -> None:
        """Write one block's part of :meth:`append_block`: series present throughout and without stored
        chunks in the block are encoded together; the others are merged with what is stored."""
        stored = {sid for (sid,) in self._writer.execute(  # by (series_id, max_ts): chunks of this block on
            "SELECT DISTINCT c.series_id FROM json_each(?) j JOIN chunks c ON c.series_id = j.value "
            "AND c.max_ts >= ? AND c.block = ?", (json.dumps(sids.tolist()), block, block))}
        whole = mask.all(axis=1) & ~np.isin(sids, np.fromiter(stored, np.int64, len(stored)))
        chunk_rows, rollup_rows = bulk.encode_block(sids[whole], ts, vals[whole], block, level)
        self._writer.executemany(
            "INSERT INTO chunks (series_id, block, level, min_ts, max_ts, n, timestamps, vals) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", chunk_rows)
        self._writer.executemany(
            "INSERT OR REPLACE INTO rollups (series_id, step_ms, block, ints, floats) VALUES (?, ?, ?, ?, ?)",
            rollup_rows)
        rest = np.flatnonzero(~whole & mask.any(axis=1))
        if not len(rest):
            return
        parts = []
        for row in rest.tolist():  # the stored samples first: the new ones win on equal timestamps
            sid = int(sids[row])
            if sid in stored:
                for rowid, t_blob, v_blob in self._writer.execute(
                        "SELECT rowid, timestamps, vals FROM chunks WHERE series_id = ? AND max_ts >= ? AND block = ?",
                        (sid, block, block)).fetchall():
                    t = unpack_ints(t_blob)
                    parts.append((np.full(len(t), sid, np.int64), t, unpack_floats(v_blob)))
                    self._writer.execute("DELETE FROM chunks WHERE rowid = ?", (rowid,))
            m = mask[row]
            parts.append((np.full(int(m.sum()), sid, np.int64), ts[m], vals[row, m]))
        merged = _last_per_timestamp(*(np.concatenate(c) for c in zip(*parts)))
        self._write_chunks(*merged, level=level)
        if level == 2:
            self._write_rollups(*merged)

    def compact(self) -> None:
        """Move the head into chunks, close finished blocks (level-2 chunks and rollups), apply retention.

        Runs by itself when the head holds ``head_max_samples``; one transaction.
        :raises StorageError: when SQLite fails (the store is left as it was).
        """
        with self._write_lock:
            self._compact()

    def _compact(self) -> None:
        try:
            try:
                self._compact_head()
                if self._head_max_ts is not None:  # blocks that ended CLOSE_AFTER_MS before the newest sample
                    last_closed = (self._head_max_ts - CLOSE_AFTER_MS) // BLOCK_MS * BLOCK_MS - BLOCK_MS
                    self._close_blocks(max(last_closed, _INT64[0]))
                self._apply_retention(int(self.clock() * 1000) - self.retention_ms)
                with self._head.lock:  # the head table went into chunks: so does the in-memory head, at once
                    self._writer.commit()
                    self._head.clear()
            except BaseException:
                self._writer.rollback()
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"compacting {self.path}: {exc}") from exc
        self._head_n = 0

    def _compact_head(self) -> None:
        rows = self._writer.execute("SELECT series_ids, timestamps, vals FROM head ORDER BY id").fetchall()
        if not rows:
            return
        sids, ts, vals = (np.concatenate(c) for c in zip(*(
            (unpack_ints(s), unpack_ints(t), unpack_floats(v)) for s, t, v in rows)))
        # chunks that overlap the new samples of their series are merged (the head wins on equal timestamps)
        order = np.lexsort((ts, sids))
        firsts = np.concatenate(([0], np.flatnonzero(np.diff(sids[order])) + 1))
        new_min = dict(zip(sids[order][firsts].tolist(), ts[order][firsts].tolist()))
        lasts = np.concatenate((firsts[1:] - 1, [len(order) - 1]))
        new_max = dict(zip(sids[order][lasts].tolist(), ts[order][lasts].tolist()))
        old, gone = [], []
        for rowid, sid, lo, hi, t_blob, v_blob in self._writer.execute(
                "SELECT c.rowid, c.series_id, c.min_ts, c.max_ts, c.timestamps, c.vals FROM json_each(?) j "
                "JOIN chunks c ON c.series_id = j.value AND c.max_ts >= ?",
                (json.dumps(list(new_min)), int(ts.min()))):
            if hi >= new_min[sid] and lo <= new_max[sid]:
                t = unpack_ints(t_blob)
                old.append((np.full(len(t), sid, np.int64), t, unpack_floats(v_blob)))
                gone.append((rowid,))
        if old:
            sids, ts, vals = (np.concatenate(c) for c in zip(*old, (sids, ts, vals)))
            self._writer.executemany("DELETE FROM chunks WHERE rowid = ?", gone)
        self._write_chunks(*_last_per_timestamp(sids, ts, vals), level=1)
        self._writer.execute("DELETE FROM head")

    def _write_chunks(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray, level: int) -> None:
        """Insert samples sorted by (series, time) as one chunk per (series, block); level 2 is kept
        long, so it is packed small (zstd), level 1 fast (lz4)."""
        blocks = ts // BLOCK_MS * BLOCK_MS
        firsts, ends = _runs(sids, blocks)
        t_words, small = int_words(ts, firsts), level == 2
        if small:  # per chunk: pack_floats chooses decimal or XOR encoding for each
            packed = [pack_floats(vals[a:b], small=True) for a, b in zip(firsts.tolist(), ends.tolist())]
        else:
            v_words = float_words(vals, firsts)
            packed = [pack(v_words[a:b]) for a, b in zip(firsts.tolist(), ends.tolist())]
        self._writer.executemany(
            "INSERT INTO chunks (series_id, block, level, min_ts, max_ts, n, timestamps, vals) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(sid, block, level, lo, hi, b - a, pack(t_words[a:b], small), v_blob)
             for sid, block, lo, hi, a, b, v_blob in zip(sids[firsts].tolist(), blocks[firsts].tolist(),
                                                         ts[firsts].tolist(), ts[ends - 1].tolist(),
                                                         firsts.tolist(), ends.tolist(), packed)])

    def _close_blocks(self, last_block: int) -> None:
        """Merge the level-1 chunks of blocks up to ``last_block`` (and any level-2 chunk of the same
        series and block) into one level-2 chunk per series and block, and write their rollups."""
        rows = self._writer.execute(
            "SELECT c.rowid, c.series_id, c.timestamps, c.vals FROM chunks c WHERE c.level = 1 AND c.block <= ? "
            "UNION ALL SELECT d.rowid, d.series_id, d.timestamps, d.vals FROM chunks d WHERE d.level = 2 AND "
            "EXISTS (SELECT 1 FROM chunks c WHERE c.level = 1 AND c.block <= ? AND c.block = d.block "
            "AND c.series_id = d.series_id)", (last_block, last_block)).fetchall()
        if not rows:
            return
        parts = [(np.full(len(t := unpack_ints(tb)), sid, np.int64), t, unpack_floats(vb)) for _, sid, tb, vb in rows]
        sids, ts, vals = _last_per_timestamp(*(np.concatenate(c) for c in zip(*parts)))
        self._writer.executemany("DELETE FROM chunks WHERE rowid = ?", [(r[0],) for r in rows])
        self._write_chunks(sids, ts, vals, level=2)
        self._write_rollups(sids, ts, vals)

    def _write_rollups(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Write (replace) the rollups of samples sorted by (series, time) that cover whole blocks."""
        for step in rollups.ROLLUP_STEPS_MS:
            b = rollups.from_samples(sids, ts, vals, step)
            blocks = b.starts_ms // BLOCK_MS * BLOCK_MS
            firsts, ends = _runs(b.series_ids, blocks)
            self._writer.executemany(
                "INSERT OR REPLACE INTO rollups (series_id, step_ms, block, ints, floats) VALUES (?, ?, ?, ?, ?)",
                [(sid, step, block, pack_ints(np.concatenate((b.starts_ms[x:y], b.counts[x:y])), small=True),
                  pack_floats(np.concatenate((b.mins[x:y], b.maxs[x:y], b.sums[x:y])), small=True))
                 for sid, block, x, y in zip(b.series_ids[firsts].tolist(), blocks[firsts].tolist(),
                                             firsts.tolist(), ends.tolist())])

    def _apply_retention(self, cutoff_ms: int) -> None:
        """Delete the blocks (chunks and rollups) that end at or before ``cutoff_ms``, then series left
        without samples. Whole blocks go, as in Prometheus: a sample may outlive retention by up to 2 h."""
        first_kept = max(cutoff_ms // BLOCK_MS * BLOCK_MS, _INT64[0])
        self._writer.execute("DELETE FROM chunks WHERE max_ts < ?", (first_kept,))
        self._writer.execute("DELETE FROM rollups WHERE block < ?", (first_kept,))
        gone = self._writer.execute(
            "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.series_id = series.id)").rowcount
        if gone:
            self._ids.clear()  # some cached ids no longer exist
            self._epoch = object()  # nor may the ids cached on column batches' series

    # -- reading -----------------------------------------------------------------------------------------

    def series(self, name: str, matchers: Mapping[str, str] | list[Matcher] | None = None) -> list[dict[str, str]]:
        """Label sets of the series named ``name`` that satisfy ``matchers``."""
        wanted = to_matchers(matchers)
        rows = self._reader().execute("SELECT labels FROM series WHERE name = ?", (name,)).fetchall()
        return [labels for labels in map(json.loads, (r[0] for r in rows)) if all(m.matches(labels) for m in wanted)]

    def metric_names(self) -> list[str]:
        """Every metric name in the store, sorted."""
        return [r[0] for r in self._reader().execute("SELECT DISTINCT name FROM series ORDER BY name")]

    def select(
        self,
        name: str,
        matchers: Mapping[str, str] | list[Matcher] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        step_ms: int | None = None,
    ) -> list[TimeSeries]:
        """See :meth:`storage.base.Store.select`. Values come back as float64 ``pd.Series`` with a UTC
        ``DatetimeIndex``. With ``step_ms`` a multiple of 5 m (or 1 h), closed blocks are read from their
        rollups and only the rest from raw samples.

        :raises StorageError: when SQLite fails.
        :raises ValueError: when ``step_ms`` is not positive.
        """
        if step_ms is not None and step_ms <= 0:
            raise ValueError(f"step_ms must be a positive number of milliseconds, not {step_ms!r}")
        wanted = to_matchers(matchers)
        lo = _INT64[0] if start_ms is None else int(start_ms)
        hi = _INT64[1] if end_ms is None else int(end_ms)
        conn = self._reader()
        try:
            conn.execute("BEGIN")  # one snapshot for the series, their chunks and their head samples
            try:
                with self._head.lock:  # the first read opens the snapshot: take the head's view with it
                    rows = conn.execute("SELECT id, labels FROM series WHERE name = ?", (name,)).fetchall()
                    head = self._head.view([sid for sid, _ in rows])
                chosen = {}
                for sid, labels_json in rows:
                    labels = json.loads(labels_json)
                    if all(m.matches(labels) for m in wanted):
                        chosen[sid] = labels
                if not chosen:
                    return []
                ids = np.sort(np.fromiter(chosen, np.int64, len(chosen)))  # chunks come back in this order
                if step_ms is None:
                    sids, ts, vals = _read_raw(conn, head, ids, lo, hi)
                    return _to_series(name, chosen, sids, ts, vals)
                buckets = _read_buckets(conn, head, ids, lo, hi, int(step_ms))
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"reading {name} from {self.path}: {exc}") from exc
        return _to_rollup_series(name, chosen, buckets)

    @property
    def head_samples(self) -> int:
        """Samples in the head (appended since the last compaction)."""
        return self._head_n

    def close(self) -> None:
        """Close the writer connection (reader connections close with their threads)."""
        with self._write_lock:
            self._writer.close()


def _runs(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indexes of the runs of equal consecutive keys in sorted arrays."""
    n = len(keys[0])
    change = np.zeros(max(n - 1, 0), dtype=bool)
    for k in keys:
        change |= np.diff(k) != 0
    starts = np.concatenate(([0], np.flatnonzero(change) + 1)) if n else np.empty(0, np.int64)
    return starts, np.concatenate((starts[1:], [n])) if n else starts


def _last_per_timestamp(sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by (series, time), keeping the last given sample of each (series, timestamp)."""
    if len(sids) < 2 or bool(np.all((np.diff(sids) > 0) | ((np.diff(sids) == 0) & (np.diff(ts) > 0)))):
        return sids, ts, vals  # already sorted and unique: chunks read in series and time order
    order = np.lexsort((ts, sids))  # stable: equal keys keep their order, so "last" is the latest write
    sids, ts, vals = sids[order], ts[order], vals[order]
    keep = np.ones(len(sids), dtype=bool)
    keep[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
    return sids[keep], ts[keep], vals[keep]


def _read_raw(conn: sqlite3.Connection, head: HeadView, ids: np.ndarray, lo: int, hi: int
              ) -> tuple[np.ndarray, ...]:
    """Samples of the series ``ids`` in ``[lo, hi]``: per series its chunks, then its head samples in
    append order (so a later write wins, and series and time order usually hold already)."""
    chunks: dict[int, list] = {}
    for sid, t_blob, v_blob in conn.execute(
            "SELECT c.series_id, c.timestamps, c.vals FROM json_each(?) j "
            "JOIN chunks c ON c.series_id = j.value AND c.max_ts >= ? AND c.min_ts <= ?",
            (json.dumps(ids.tolist()), lo, hi)):
        ts = unpack_ints(t_blob)
        chunks.setdefault(sid, []).append((np.full(len(ts), sid, np.int64), ts, unpack_floats(v_blob)))
    parts = []
    for sid in ids.tolist():
        parts += chunks.get(sid, ())
        ts, vals = head.read(sid, lo, hi)
        if len(ts):
            parts.append((np.full(len(ts), sid, np.int64), ts, vals))
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    sids, ts, vals = (np.concatenate(c) for c in zip(*parts))
    inside = (ts >= lo) & (ts <= hi)
    return _last_per_timestamp(sids[inside], ts[inside], vals[inside])


def _read_buckets(conn: sqlite3.Connection, head: HeadView, ids: np.ndarray, lo: int, hi: int, step: int
                  ) -> rollups.Buckets:
    """Aggregates per ``step`` bucket: stored rollups for closed blocks, raw samples for the rest."""
    first = max(lo // step * step, _INT64[0])
    last = min(hi // step * step + step - 1, _INT64[1])  # the end of the last bucket
    resolution = max((r for r in rollups.ROLLUP_STEPS_MS if step % r == 0), default=None)
    parts = []
    raw_from = first
    if resolution is not None:
        open_block = conn.execute("SELECT min(block) FROM chunks WHERE level = 1").fetchone()[0]
        head_min = head.min_ts
        boundary = min(x for x in (open_block, None if head_min is None else head_min // BLOCK_MS * BLOCK_MS,
                                   _INT64[1]) if x is not None)
        for sid, ints, floats in conn.execute(
                "SELECT r.series_id, r.ints, r.floats FROM json_each(?) j JOIN rollups r ON r.series_id = j.value "
                "AND r.step_ms = ? AND r.block BETWEEN ? AND ?",
                (json.dumps(ids.tolist()), resolution, max(first // BLOCK_MS * BLOCK_MS, _INT64[0]),
                 min(last, boundary - 1))):
            ints, floats = unpack_ints(ints), unpack_floats(floats)
            n = len(ints) // 2
            starts, counts, mins, maxs, sums = ints[:n], ints[n:], floats[:n], floats[n:2 * n], floats[2 * n:]
            parts.append(rollups.Buckets(np.full(len(starts), sid, np.int64), starts, mins, maxs, sums, counts))
        stored = rollups.concat(parts)
        inside = (stored.starts_ms >= first) & (stored.starts_ms <= last)
        parts = [rollups.Buckets(*(column[inside] for column in stored))]
        raw_from = max(first, boundary)
    if raw_from <= last:
        parts.append(rollups.from_samples(*_read_raw(conn, head, ids, raw_from, last), step))
    return rollups.combine(rollups.concat(parts), step)


def _index(ts: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(ts, unit="ms", utc=True).as_unit("ms")


def _to_series(name: str, chosen: dict[int, dict], sids: np.ndarray, ts: np.ndarray, vals: np.ndarray
               ) -> list[TimeSeries]:
    firsts, ends = _runs(sids)
    index = _index(ts)  # once for all series: converting is per call, slicing is cheap
    return [TimeSeries(name, chosen[int(sids[a])], pd.Series(vals[a:b], index=index[a:b], name=name))
            for a, b in zip(firsts.tolist(), ends.tolist())]


def _to_rollup_series(name: str, chosen: dict[int, dict], b: rollups.Buckets) -> list[TimeSeries]:
    out = []
    avgs = b.avgs
    for x, y in zip(*(v.tolist() for v in _runs(b.series_ids))):
        index = _index(b.starts_ms[x:y])
        frame = pd.DataFrame({"min": b.mins[x:y], "max": b.maxs[x:y], "avg": avgs[x:y], "count": b.counts[x:y]},
                             index=index)
        out.append(TimeSeries(name, chosen[int(b.series_ids[x])], frame["avg"].rename(name), frame))
    return out
