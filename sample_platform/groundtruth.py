"""The ground-truth log: one JSON object per line, for faults and legitimate surges alike.

Record shape (times RFC 3339 UTC with milliseconds)::

    {"id": "9f1c...", "kind": "latency", "target": "postgres",
     "start": "2026-11-22T10:00:00.123Z", "end": "2026-11-22T10:01:00.123Z",
     "params": {...}, "fault": true}

``fault`` is false for legitimate surges (kinds ``surge:*``, see
:mod:`.surges`): alerts during them are false positives.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def rfc3339(ts: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with milliseconds, e.g. ``2026-11-22T10:00:00.123Z``."""
    ms_total = int(round(ts * 1000.0))
    secs, ms = divmod(ms_total, 1000)
    return datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


class GroundTruth:
    """Append-only log of records, kept in memory and appended to ``path`` (JSONL; parent
    directories are created) when given.  Safe to call from several threads."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        """Keep ``record`` and append it as one line to the file."""
        with self._lock:
            self._records.append(record)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record, sort_keys=True) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """Every record so far, oldest first (copies)."""
        with self._lock:
            return [dict(r) for r in self._records]
