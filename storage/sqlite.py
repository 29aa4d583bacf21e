"""The embedded time-series store: one SQLite file in WAL mode.

Layout: a ``series`` table (id, metric name, canonical JSON labels) that is also held in memory as the
series index, and a ``samples`` table keyed by (series_id, timestamp ms). NaN is stored as NULL (SQLite
has no NaN) and read back as NaN; ±Inf are stored as they are.

Thread safety: one writer connection guarded by a lock; every reading thread gets its own connection,
so dashboards read while the scrape loop writes (WAL lets readers and the writer overlap). A select
reads the series and their samples in one read transaction, so it sees a batch whole or not at all.
New series enter the in-memory index only once their batch has committed.
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
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._index: dict[tuple[str, str], int] = {}
        self._labels: dict[int, dict[str, str]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._writer.executescript(_SCHEMA)
            for sid, name, labels in self._writer.execute("SELECT id, name, labels FROM series"):
                self._remember(sid, name, labels)
        except (sqlite3.Error, OSError) as exc:
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
        self._labels[sid] = json.loads(labels_json)

    def _series_id(self, name: str, labels: Mapping[str, str], created: list[tuple[int, str, str]]) -> int:
        key = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))
        sid = self._index.get((name, key))
        if sid is None:
            row = self._writer.execute("SELECT id FROM series WHERE name = ? AND labels = ?", (name, key)).fetchone()
            if row is None:
                row = (self._writer.execute("INSERT INTO series (name, labels) VALUES (?, ?)", (name, key)).lastrowid,)
                created.append((row[0], name, key))
            sid = row[0]
        return sid

    def append(self, samples: Iterable[Sample]) -> int:
        """Write samples in one transaction; a sample at an existing (series, timestamp) replaces it.

        :returns: the number of samples written.
        :raises StorageError: when SQLite fails; nothing of the batch is kept then.
        """
        created: list[tuple[int, str, str]] = []
        with self._write_lock:
            try:
                with self._writer:
                    rows = [
                        (self._series_id(s.name, s.labels, created), int(s.timestamp_ms),
                         None if math.isnan(s.value) else float(s.value))
                        for s in samples
                    ]
                    self._writer.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", rows)
            except (sqlite3.Error, OverflowError, TypeError, ValueError) as exc:
                raise StorageError(f"writing {self.path}: {type(exc).__name__}: {exc}") from exc
            for sid, name, key in created:  # committed: now the index may know them
                self._remember(sid, name, key)
        return len(rows)

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
    ) -> list[TimeSeries]:
        """See :meth:`storage.base.Store.select`. Values come back as float64 ``pd.Series`` with a UTC
        ``DatetimeIndex``.

        :raises StorageError: when SQLite fails.
        """
        wanted = to_matchers(matchers)
        lo = -(2**63) if start_ms is None else int(start_ms)
        hi = 2**63 - 1 if end_ms is None else int(end_ms)
        conn = self._reader()
        try:
            conn.execute("BEGIN")  # one snapshot for the series and their samples
            try:
                chosen = {}
                for sid, labels_json in conn.execute("SELECT id, labels FROM series WHERE name = ?", (name,)):
                    labels = self._labels.get(sid) or json.loads(labels_json)
                    if all(m.matches(labels) for m in wanted):
                        chosen[sid] = labels
                if not chosen:
                    return []
                marks = ",".join("?" * len(chosen))
                rows = conn.execute(
                    f"SELECT series_id, ts, value FROM samples WHERE series_id IN ({marks}) "
                    "AND ts BETWEEN ? AND ? ORDER BY series_id, ts",
                    (*chosen, lo, hi),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
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
            index = pd.to_datetime(chunk_ts, unit="ms", utc=True).as_unit("ms")
            result.append(TimeSeries(name, chosen[int(chunk_ids[0])], pd.Series(chunk_values, index=index, name=name)))
        return result

    def close(self) -> None:
        """Close the writer connection (reader connections close with their threads)."""
        with self._write_lock:
            self._writer.close()
