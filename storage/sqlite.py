"""The embedded time-series store: one SQLite file in WAL mode.

Layout: a ``series`` table (id, metric name, canonical JSON labels) that is also held in memory as the
series index, and a ``samples`` table keyed by (series_id, timestamp ms). NaN is stored as NULL (SQLite
has no NaN) and read back as NaN; ±Inf are stored as they are.

Thread safety: one writer connection guarded by a lock; every reading thread gets its own connection,
so dashboards read while the scrape loop writes (WAL lets readers and the writer overlap).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from collectors.samples import Sample
from opswatch.errors import StorageError

from .base import TimeSeries
from .matchers import Matcher, to_matchers

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (name, labels)
);
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
"""


class SQLiteStore:
    """A :class:`storage.base.Store` in one SQLite file.

    :param path: the database file; its directory is created if missing.
    :raises StorageError: when the file cannot be opened or is not a database.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._index: dict[tuple[str, str], int] = {}
        self._by_name: dict[str, list[tuple[int, dict[str, str]]]] = {}
        try:
            self._writer = self._connect()
            self._writer.executescript(_SCHEMA)
            for sid, name, labels in self._writer.execute("SELECT id, name, labels FROM series"):
                self._remember(sid, name, labels)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite store {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _remember(self, sid: int, name: str, labels_json: str) -> None:
        self._index[(name, labels_json)] = sid
        self._by_name.setdefault(name, []).append((sid, json.loads(labels_json)))

    def _series_id(self, name: str, labels: Mapping[str, str]) -> int:
        key = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))
        sid = self._index.get((name, key))
        if sid is None:
            cur = self._writer.execute("INSERT INTO series (name, labels) VALUES (?, ?)", (name, key))
            sid = cur.lastrowid
            self._remember(sid, name, key)
        return sid

    def append(self, samples: Iterable[Sample]) -> int:
        """Write samples in one transaction; a sample at an existing (series, timestamp) replaces it.

        :returns: the number of samples written.
        :raises StorageError: when SQLite fails; nothing of the batch is kept then.
        """
        with self._write_lock:
            try:
                with self._writer:
                    rows = [
                        (self._series_id(s.name, s.labels), int(s.timestamp_ms),
                         None if math.isnan(s.value) else s.value)
                        for s in samples
                    ]
                    self._writer.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", rows)
            except sqlite3.Error as exc:
                self._forget_uncommitted()
                raise StorageError(f"writing {self.path}: {exc}") from exc
        return len(rows)

    def _forget_uncommitted(self) -> None:
        """After a rollback, rebuild the in-memory index from what the database really holds."""
        self._index.clear()
        self._by_name.clear()
        for sid, name, labels in self._writer.execute("SELECT id, name, labels FROM series"):
            self._remember(sid, name, labels)

    def series(self, name: str, matchers: Mapping[str, str] | list[Matcher] | None = None) -> list[dict[str, str]]:
        """Label sets of the series named ``name`` that satisfy ``matchers`` (from the in-memory index)."""
        wanted = to_matchers(matchers)
        return [dict(labels) for _, labels in self._by_name.get(name, []) if all(m.matches(labels) for m in wanted)]

    def metric_names(self) -> list[str]:
        """Every metric name in the store, sorted."""
        return sorted(self._by_name)

    def select(
        self,
        name: str,
        matchers: Mapping[str, str] | list[Matcher] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[TimeSeries]:
        """See :meth:`storage.base.Store.select`. Values come back as float64 ``pd.Series`` with a UTC
        ``DatetimeIndex``."""
        wanted = to_matchers(matchers)
        chosen = {sid: labels for sid, labels in list(self._by_name.get(name, []))
                  if all(m.matches(labels) for m in wanted)}
        if not chosen:
            return []
        lo = -(2**63) if start_ms is None else int(start_ms)
        hi = 2**63 - 1 if end_ms is None else int(end_ms)
        marks = ",".join("?" * len(chosen))
        try:
            rows = self._reader().execute(
                f"SELECT series_id, ts, value FROM samples WHERE series_id IN ({marks}) "
                "AND ts BETWEEN ? AND ? ORDER BY series_id, ts",
                (*chosen, lo, hi),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"reading {name} from {self.path}: {exc}") from exc
        if not rows:
            return []
        data = np.array([(r[0], r[1], np.nan if r[2] is None else r[2]) for r in rows], dtype=float)
        ids, ts, values = data[:, 0].astype(np.int64), data[:, 1].astype(np.int64), data[:, 2]
        bounds = np.flatnonzero(np.diff(ids)) + 1
        result = []
        for chunk_ids, chunk_ts, chunk_values in zip(
            np.split(ids, bounds), np.split(ts, bounds), np.split(values, bounds)
        ):
            index = pd.to_datetime(chunk_ts, unit="ms", utc=True)
            result.append(TimeSeries(name, chosen[int(chunk_ids[0])], pd.Series(chunk_values, index=index, name=name)))
        return result

    def close(self) -> None:
        """Close the writer connection (reader connections close with their threads)."""
        with self._write_lock:
            self._writer.close()
