"""Silences: Alertmanager's, plus "until resolved" and recurring windows, persisted in the data directory.

A silence mutes the notifications of every alert whose labels satisfy all its matchers while it is
``active``; the alerts still fire and still join incidents. Shapes follow Alertmanager's API v2
(``postableSilence`` / ``gettableSilence``, https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml):
``id``, ``matchers`` (``{name, value, isRegex, isEqual}``), ``startsAt``, ``endsAt`` (RFC 3339), ``createdBy``,
``comment``, ``updatedAt`` and ``status.state`` = ``pending`` | ``active`` | ``expired``. As in Alertmanager,
``createdBy`` and ``comment`` are required, ``endsAt`` must follow ``startsAt``, and at least one matcher must
not match the empty string (a silence may not mute everything).

OpsWatch's additions, both optional:

* ``untilResolved: true``: the silence also expires (``endsAt`` becomes that moment) once every alert it has
  muted is resolved and no longer part of an active incident; ``endsAt`` stays the latest it may last.
* ``timeIntervals``: recurring windows in Alertmanager's ``time_intervals`` vocabulary, in UTC
  (:mod:`detection.time_intervals`, shared with the detection calendar):
  ``[{"weekdays": ["saturday", "monday:friday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]}]``.
  Between ``startsAt`` and ``endsAt`` the silence is ``active`` inside a window and ``pending`` outside.
  ``start_time`` is inclusive, ``end_time`` exclusive (up to ``"24:00"``); omitted weekdays or times mean all.

Besides an alert's own labels, matchers see ``incident`` (the id of the alert's incident), so
``incident="INC-20261123-0001"`` with ``untilResolved`` silences one incident until it is over.

Expired silences are kept for ``retention_ms`` (Alertmanager's default: 120 h) and then forgotten. The set
is saved to ``data_dir/silences.json`` after every change and restored at start.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detection.time_intervals import TimeInterval, TimeIntervalSpec
from opswatch.errors import ConfigError
from storage.matchers import Matcher

from . import matchers as am
from .model import parse_rfc3339, rfc3339
from .statefile import read_json_state, write_json_atomic

log = logging.getLogger(__name__)

RETENTION_MS = 120 * 3_600_000
"""How long expired silences are kept: Alertmanager's ``--data.retention`` default."""

class MatcherBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str
    isRegex: bool = False
    isEqual: bool = True


class PostableSilence(BaseModel):
    """The body of ``POST /api/v2/silences``: Alertmanager's ``postableSilence`` plus ``untilResolved`` and
    ``timeIntervals``. ``startsAt`` defaults to now; a given ``id`` updates that silence."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    matchers: list[MatcherBody] = Field(min_length=1)
    startsAt: datetime | None = None
    endsAt: datetime
    createdBy: str = Field(min_length=1)
    comment: str = Field(min_length=1)
    untilResolved: bool = False
    timeIntervals: list[TimeIntervalSpec] = Field(default_factory=list)

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-11-23T18:00:00Z")
        return v

    @field_validator("matchers")
    @classmethod
    def _not_everything(cls, v: list[MatcherBody]) -> list[MatcherBody]:
        parsed = [am.from_api(m.model_dump()) for m in v]  # a bad regex raises here, naming it
        if all(m.matches({}) for m in parsed):
            raise ValueError("at least one matcher must not match the empty string, or the silence would "
                             "mute every alert")
        return v


def parse_silence(body: object) -> PostableSilence:
    """Validate an API body. :raises ValueError: one line per problem, naming the key (``matchers.0.value``)."""
    try:
        return PostableSilence.model_validate(body)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: "
                                   f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())) from exc


@dataclass
class Silence:
    """One silence; times in ms since the epoch. ``matched``: fingerprints it has muted (for ``untilResolved``)."""

    id: str
    matchers: list[Matcher]
    starts_at_ms: int
    ends_at_ms: int
    created_by: str
    comment: str
    updated_at_ms: int
    until_resolved: bool = False
    time_intervals: list[TimeInterval] = field(default_factory=list)
    matched: set[str] = field(default_factory=set)

    def state(self, now_ms: int) -> str:
        """``expired`` from ``endsAt``; ``pending`` before ``startsAt`` or outside every time interval."""
        if now_ms >= self.ends_at_ms:
            return "expired"
        if now_ms < self.starts_at_ms:
            return "pending"
        if self.time_intervals and not any(i.contains(now_ms) for i in self.time_intervals):
            return "pending"
        return "active"

    def mutes(self, labels: Mapping[str, str], now_ms: int) -> bool:
        return self.state(now_ms) == "active" and am.matches_all(self.matchers, labels)

    def to_api(self, now_ms: int) -> dict:
        """Alertmanager's ``gettableSilence`` plus ``untilResolved`` and ``timeIntervals``."""
        return {"id": self.id, "status": {"state": self.state(now_ms)},
                "matchers": [am.to_api(m) for m in self.matchers],
                "startsAt": rfc3339(self.starts_at_ms), "endsAt": rfc3339(self.ends_at_ms),
                "updatedAt": rfc3339(self.updated_at_ms), "createdBy": self.created_by, "comment": self.comment,
                "untilResolved": self.until_resolved, "timeIntervals": [i.source for i in self.time_intervals]}

    @classmethod
    def from_body(cls, body: PostableSilence, silence_id: str, now_ms: int) -> "Silence":
        starts = int(body.startsAt.timestamp() * 1000) if body.startsAt else now_ms
        ends = int(body.endsAt.timestamp() * 1000)
        if ends <= starts:
            raise ValueError(f"endsAt {rfc3339(ends)} must be after startsAt {rfc3339(starts)}")
        if ends <= now_ms:
            raise ValueError(f"endsAt {rfc3339(ends)} is in the past")
        return cls(silence_id, [am.from_api(m.model_dump()) for m in body.matchers], starts, ends, body.createdBy,
                   body.comment, now_ms, body.untilResolved, [TimeInterval.from_spec(i) for i in body.timeIntervals])


class Silences:
    """Every silence, thread-safe (the API adds and expires while evaluations read), saved to ``path``.

    :param path: ``data_dir/silences.json``; :param retention_ms: how long expired silences are kept.
    :raises ConfigError: at start, when ``path`` exists but cannot be restored (naming the file).
    """

    VERSION = 1

    def __init__(self, path: str | Path, retention_ms: int = RETENTION_MS):
        self.path, self.retention_ms = Path(path), retention_ms
        self._lock = threading.Lock()
        self._silences: dict[str, Silence] = {}
        self._load()

    def upsert(self, body: PostableSilence, now_ms: int) -> str:
        """Create a silence, or update the one named by ``body.id``; returns its id. Updating an expired
        silence creates a new one (as Alertmanager does), so history is not rewritten.

        :raises KeyError: ``body.id`` names no silence; :raises ValueError: the times are inconsistent.
        """
        with self._lock:
            old = self._silences.get(body.id) if body.id else None
            if body.id and old is None:
                raise KeyError(f"no silence {body.id!r}")
            silence_id = old.id if old is not None and old.state(now_ms) != "expired" else str(uuid.uuid4())
            silence = Silence.from_body(body, silence_id, now_ms)
            if old is not None and old.id == silence_id:
                silence.matched = old.matched
            self._silences[silence_id] = silence
            self._save(now_ms)
            return silence_id

    def expire(self, silence_id: str, now_ms: int) -> None:
        """End a silence now. :raises KeyError: no such silence; :raises ValueError: it already expired."""
        with self._lock:
            silence = self._silences.get(silence_id)
            if silence is None:
                raise KeyError(f"no silence {silence_id!r}")
            if silence.state(now_ms) == "expired":
                raise ValueError(f"silence {silence_id} already expired at {rfc3339(silence.ends_at_ms)}")
            silence.ends_at_ms = silence.updated_at_ms = now_ms
            silence.starts_at_ms = min(silence.starts_at_ms, now_ms)
            self._save(now_ms)

    def get(self, silence_id: str, now_ms: int) -> dict:
        """One silence in the API shape. :raises KeyError: no such silence."""
        with self._lock:
            if silence_id not in self._silences:
                raise KeyError(f"no silence {silence_id!r}")
            return self._silences[silence_id].to_api(now_ms)

    def list(self, now_ms: int) -> list[dict]:
        """Every kept silence in the API shape: active first, then pending, then expired; newest first within each."""
        order = {"active": 0, "pending": 1, "expired": 2}
        with self._lock:
            rows = sorted(self._silences.values(), key=lambda s: (order[s.state(now_ms)], -s.starts_at_ms))
            return [s.to_api(now_ms) for s in rows]

    def muted_by(self, labels: Mapping[str, str], now_ms: int) -> list[str]:
        """Ids of the active silences that mute ``labels`` (empty: not silenced)."""
        with self._lock:
            return [s.id for s in self._silences.values() if s.mutes(labels, now_ms)]

    def observe(self, now_ms: int, unresolved: Mapping[str, Mapping[str, str]]) -> list[str]:
        """Book-keeping after an evaluation: ``untilResolved`` silences remember the alerts they mute and
        expire once none of those is left in ``unresolved`` (fingerprint -> labels of every alert still
        pending, firing, or in an active incident); expired silences past the retention are dropped.

        :returns: the ids of the silences that expired because their alerts resolved.
        """
        ended: list[str] = []
        with self._lock:
            changed = False
            for s in self._silences.values():
                if not s.until_resolved or s.state(now_ms) != "active":
                    continue
                current = {fp for fp, labels in unresolved.items() if am.matches_all(s.matchers, labels)}
                if current - s.matched:
                    s.matched |= current
                    changed = True
                if s.matched and not current & s.matched:
                    s.ends_at_ms = s.updated_at_ms = now_ms
                    ended.append(s.id)
                    log.warning("silence %s expired: the %d alert(s) it muted are resolved", s.id, len(s.matched))
            old = [i for i, s in self._silences.items() if now_ms - s.ends_at_ms > self.retention_ms]
            for silence_id in old:
                del self._silences[silence_id]
            if changed or ended or old:
                self._save(now_ms)
        return ended

    def _save(self, now_ms: int) -> None:
        write_json_atomic(self.path, {"version": self.VERSION, "saved_at_ms": now_ms, "silences": [
            {**s.to_api(now_ms), "matched": sorted(s.matched)} for s in self._silences.values()]})

    def _load(self) -> None:
        state = read_json_state(self.path, self.VERSION, "silences")
        if state is None:
            return
        try:
            for row in state["silences"]:
                body = PostableSilence.model_validate({k: v for k, v in row.items()
                                                       if k not in ("status", "updatedAt", "matched")})
                silence = Silence(row["id"], [am.from_api(m.model_dump()) for m in body.matchers],
                                  parse_rfc3339(row["startsAt"]), parse_rfc3339(row["endsAt"]), body.createdBy,
                                  body.comment, parse_rfc3339(row["updatedAt"]), body.untilResolved,
                                  [TimeInterval.from_spec(i) for i in body.timeIntervals], set(row["matched"]))
                self._silences[silence.id] = silence
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot restore silences: {exc}; move the file away to start "
                              f"without them") from exc
