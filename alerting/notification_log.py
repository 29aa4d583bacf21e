"""The notification log: every notification, from queued to sent, in a SQLite file
(``data_dir/notifications.db``), so that none is lost across a restart and none is sent twice.

It is both the dispatcher's queue and Alertmanager's notification log (nflog) idea. One row per
notification to one integration of one receiver:

* ``state``: ``pending`` (queued, or waiting for a retry at ``next_attempt_ms``), ``sent``, ``failed``
  (gave up) or ``superseded`` (a newer notification of the same group replaced it before it was sent);
* the dedup key is (receiver, integration, index, ``groupKey``) plus ``content_hash``: a hash of the
  group's status and its alerts' fingerprints and statuses (:func:`content_hash`). A notification whose
  content equals the latest pending or sent one of its key is a duplicate and is not queued.

A row is written (WAL, ``synchronous=NORMAL``: it survives the process being killed) before the
notification is handed to any integration, and marked sent right after the integration succeeded: a
process killed in that window sends that one notification again at restart (at least once, like
Alertmanager). Rows other than pending ones are deleted ``retention_ms`` after their last change
(Alertmanager keeps its nflog for 120 h).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from opswatch.errors import ConfigError

RETENTION_MS = 120 * 3600 * 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    integration TEXT NOT NULL,
    idx INTEGER NOT NULL,
    group_key TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS notifications_by_key ON notifications (receiver, integration, idx, group_key, id);
CREATE INDEX IF NOT EXISTS notifications_by_state ON notifications (state, next_attempt_ms);
"""


def content_hash(payload: dict) -> str:
    """SHA-256 (hex) of the payload's ``status`` and its alerts' sorted ``fingerprint:status`` pairs."""
    parts = [payload.get("status", "")] + sorted(f"{a['fingerprint']}:{a['status']}" for a in payload.get("alerts", []))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One row: a notification to integration ``integration`` number ``index`` of ``receiver``."""

    id: int
    receiver: str
    integration: str
    index: int
    group_key: str
    payload: dict
    attempts: int
    next_attempt_ms: int

    @property
    def key(self) -> tuple[str, str, int, str]:
        return self.receiver, self.integration, self.index, self.group_key


class NotificationLog:
    """The log at ``path`` (created with its directory when missing).

    Thread-safe (one connection behind a lock); every method is one short transaction.

    :raises ConfigError: ``path`` exists but is not a notification log (naming the file and the fix).
    """

    def __init__(self, path: str | Path, retention_ms: int = RETENTION_MS):
        self.path, self.retention_ms = Path(path), retention_ms
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(f"{self.path}: cannot open the notification log: {exc}; move the file away to start "
                              f"with an empty log (pending notifications in it would be lost)") from exc

    def enqueue(self, receiver: str, integration: str, index: int, payload: dict, now_ms: int,
                dedup: bool = True) -> int | None:
        """Queue ``payload`` (its ``groupKey`` groups it) unless it duplicates the latest pending or sent
        notification of the same key (when ``dedup``); pending older ones of the key are superseded.

        :returns: the new row's id, or None for a duplicate.
        """
        key = (receiver, integration, index, payload.get("groupKey", ""))
        digest = content_hash(payload)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            latest = self._db.execute(
                "SELECT content_hash FROM notifications WHERE receiver=? AND integration=? AND idx=? AND group_key=?"
                " AND state IN ('pending', 'sent') ORDER BY id DESC LIMIT 1", key).fetchone()
            if dedup and latest is not None and latest[0] == digest:
                return None
            self._db.execute("UPDATE notifications SET state='superseded', updated_ms=? WHERE receiver=? AND "
                             "integration=? AND idx=? AND group_key=? AND state='pending'", (now_ms, *key))
            cursor = self._db.execute(
                "INSERT INTO notifications (receiver, integration, idx, group_key, content_hash, payload, state,"
                " next_attempt_ms, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (*key, digest, json.dumps(payload, separators=(",", ":")), now_ms, now_ms, now_ms))
            return cursor.lastrowid

    def due(self, now_ms: int, limit: int = 1000) -> list[Entry]:
        """Pending notifications whose next attempt is due, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, receiver, integration, idx, group_key, payload, attempts, next_attempt_ms"
                " FROM notifications"
                " WHERE state='pending' AND next_attempt_ms<=? ORDER BY id LIMIT ?", (now_ms, limit)).fetchall()
        return [Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def next_attempt_ms(self) -> int | None:
        """When the earliest pending notification is due (None: nothing pending)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt_ms) FROM notifications WHERE state='pending'").fetchone()
        return row[0]

    def pending(self) -> int:
        """How many notifications are queued or waiting for a retry."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM notifications WHERE state='pending'").fetchone()[0]

    def mark_sent(self, entry_id: int, attempts: int, now_ms: int) -> None:
        """Delivered (also when a newer notification superseded it meanwhile: it was sent all the same)."""
        with self._lock, self._db:
            self._db.execute("UPDATE notifications SET state='sent', attempts=?, last_error=NULL, updated_ms=?"
                             " WHERE id=?", (attempts, now_ms, entry_id))

    def mark_retry(self, entry_id: int, attempts: int, next_attempt_ms: int, error: str, now_ms: int) -> None:
        """Keep the row pending, due again at ``next_attempt_ms``, unless it was superseded meanwhile."""
        with self._lock, self._db:
            self._db.execute("UPDATE notifications SET attempts=?, next_attempt_ms=?, last_error=?, updated_ms=?"
                             " WHERE id=? AND state='pending'", (attempts, next_attempt_ms, error, now_ms, entry_id))

    def mark_failed(self, entry_id: int, attempts: int, error: str, now_ms: int) -> bool:
        """Given up. :returns: False when a newer notification superseded it meanwhile (nothing to fall back for)."""
        with self._lock, self._db:
            cursor = self._db.execute("UPDATE notifications SET state='failed', attempts=?, last_error=?, updated_ms=?"
                                      " WHERE id=? AND state='pending'", (attempts, error, now_ms, entry_id))
        return cursor.rowcount == 1

    def rows(self) -> list[dict]:
        """Every row as a dict (payload decoded), oldest first: for tests and inspection."""
        with self._lock:
            cursor = self._db.execute("SELECT * FROM notifications ORDER BY id")
            names = [d[0] for d in cursor.description]
            return [{**dict(zip(names, r)), "payload": json.loads(r[names.index("payload")])} for r in cursor]

    def prune(self, now_ms: int) -> int:
        """Delete rows that are not pending and unchanged for ``retention_ms``; returns how many."""
        with self._lock, self._db:
            return self._db.execute("DELETE FROM notifications WHERE state!='pending' AND updated_ms<?",
                                    (now_ms - self.retention_ms,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
