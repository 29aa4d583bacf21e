"""A calendar of expected events: maintenance windows, planned surges, deploys.

Each :class:`ExpectedEvent` covers ``[start_ms, end_ms)`` and the series its label matchers select (e.g.
``job="live"``, ``signal=~"request_rate|saturation_ratio"``), in one of two modes:

* ``suppress`` — no detections: the series is scored (for the explanation) but its score is 0;
* ``expect`` — a deviation in the stated ``direction`` of at most ``max_relative_deviation`` of the baseline
  (a planned x4 surge is ``direction="up", max_relative_deviation=3``) is not anomalous; one the other way, or
  larger, is scored as usual.

In both modes the baseline does not learn from the covered points, so a maintenance window or a surge does
not teach the detector a new normal. This is Datadog's scheduled downtime and Anodot's/ThirdEye's "events"
(holidays, campaigns) in one list.

An event can recur: with ``time_intervals`` (Alertmanager's vocabulary, UTC, :mod:`detection.time_intervals`)
it is on only inside one of them between ``start_ms`` and ``end_ms``, and ``end_ms`` may be None (no end). A
weekly planned surge is one event: ``weekdays: ["friday:sunday"], times: [{start_time: "20:00", end_time:
"21:30"}]``.

:class:`Calendar` holds the configured events and those added at run time, which it keeps in a JSON file
(``{"version": 1, "events": [...]}``, written atomically).
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from storage.matchers import Matcher

from .matching import matchers_from_json, matchers_to_json, select
from .robust_zscore import DIRECTIONS
from .time_intervals import TimeInterval, parse_time_intervals

MODES = ("suppress", "expect")
KINDS = ("maintenance", "surge", "deploy", "other")
MAX_EVENTS = 10_000
"""Events a calendar holds at most (the file stays small; old events can be removed)."""


@dataclass(frozen=True)
class ExpectedEvent:
    """One expected event (see the module docstring); times in ms since the epoch, ``end_ms`` excluded (None:
    no end, for a recurring event); ``time_intervals``: the recurring windows it is on in (empty: all the time).

    :raises ValueError: naming the field, for an unknown mode, kind or direction, ``end_ms <= start_ms``, no
        ``end_ms`` on an event that does not recur, or a non-positive ``max_relative_deviation``.
    """

    id: str
    mode: str
    start_ms: int
    end_ms: int | None
    matchers: tuple[Matcher, ...] = ()
    kind: str = "maintenance"
    direction: str = "both"
    max_relative_deviation: float = math.inf
    description: str = ""
    source: str = "api"
    time_intervals: tuple[TimeInterval, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.direction not in DIRECTIONS:
            problems.append(f"direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}")
        if self.end_ms is None and not self.time_intervals:
            problems.append("end: required unless the event recurs (time_intervals)")
        elif self.end_ms is not None and not self.end_ms > self.start_ms:
            problems.append(f"end ({self.end_ms} ms) must be after start ({self.start_ms} ms)")
        if not self.max_relative_deviation > 0:
            problems.append(f"max_relative_deviation {self.max_relative_deviation}: must be > 0")
        if problems:
            raise ValueError(f"expected event {self.id!r}: " + "; ".join(problems))

    def on(self, timestamp_ms: int) -> bool:
        """True when the event is on at ``timestamp_ms``: in ``[start_ms, end_ms)`` and, for a recurring event,
        inside one of its time intervals."""
        return (self.start_ms <= timestamp_ms and (self.end_ms is None or timestamp_ms < self.end_ms)
                and (not self.time_intervals or any(i.contains(timestamp_ms) for i in self.time_intervals)))

    def covers(self, timestamp_ms: int, labels: Mapping[str, str]) -> bool:
        """True when the event is on at ``timestamp_ms`` and selects the series ``labels``."""
        return self.on(timestamp_ms) and select(self.matchers, labels)

    def expects(self, deviation: float, baseline: float) -> bool:
        """True when ``expect`` mode accepts ``deviation = value - baseline`` (value units) as planned."""
        if self.mode != "expect" or math.isnan(deviation):
            return False
        if (self.direction == "up" and deviation < 0) or (self.direction == "down" and deviation > 0):
            return False
        return abs(deviation) <= self.max_relative_deviation * abs(baseline)

    def to_json(self) -> dict:
        """The JSON form (``max_relative_deviation`` null when unbounded, ``end_ms`` null when endless)."""
        bound = None if math.isinf(self.max_relative_deviation) else self.max_relative_deviation
        return {"id": self.id, "mode": self.mode, "kind": self.kind, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "matchers": matchers_to_json(self.matchers), "direction": self.direction,
                "max_relative_deviation": bound, "description": self.description, "source": self.source,
                "time_intervals": [i.source for i in self.time_intervals]}

    @classmethod
    def from_json(cls, obj: Mapping) -> ExpectedEvent:
        """The inverse of :meth:`to_json`. :raises ValueError: for a missing or bad field (named)."""
        name = obj.get("id", "?")
        try:
            intervals = parse_time_intervals(obj.get("time_intervals", []))
        except ValueError as exc:
            raise ValueError(f"expected event {name!r}: {exc}") from exc
        try:
            bound, end = obj.get("max_relative_deviation"), obj.get("end_ms")
            return cls(str(obj["id"]), str(obj["mode"]), int(obj["start_ms"]), None if end is None else int(end),
                       matchers_from_json(obj.get("matchers", [])), str(obj.get("kind", "maintenance")),
                       str(obj.get("direction", "both")), math.inf if bound is None else float(bound),
                       str(obj.get("description", "")), str(obj.get("source", "api")), intervals)
        except KeyError as exc:
            raise ValueError(f"expected event {name!r}: missing field {exc.args[0]!r}") from exc


def new_event_id() -> str:
    return f"evt-{uuid.uuid4().hex[:12]}"


class Calendar:
    """Configured events plus events added at run time (kept in ``path`` when given).

    :param events: events from the configuration (not written to ``path``).
    :param path: JSON file of the added events; read now when it exists.
    :raises ValueError: when ``path`` is not a calendar file (names the file and the bad event), or two events
        share an id.
    """

    def __init__(self, events: Iterable[ExpectedEvent] = (), path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._events: tuple[ExpectedEvent, ...] = ()
        for event in events:
            self._check_new(event)
            self._events += (event,)
        if self.path is not None and self.path.exists():
            try:
                stored = json.loads(self.path.read_text())["events"]
                for obj in stored:
                    event = ExpectedEvent.from_json(obj)
                    self._check_new(event)
                    self._events += (event,)
            except (OSError, KeyError, TypeError, json.JSONDecodeError, ValueError) as exc:
                raise ValueError(f"calendar {self.path}: not a calendar file: {exc}") from exc

    def _check_new(self, event: ExpectedEvent) -> None:
        if any(e.id == event.id for e in self._events):
            raise ValueError(f"expected event id {event.id!r} is used twice; ids must be unique")
        if len(self._events) >= MAX_EVENTS:
            raise ValueError(f"the calendar holds {MAX_EVENTS} events already")

    @property
    def events(self) -> tuple[ExpectedEvent, ...]:
        """Every event, configured first, then in the order added."""
        return self._events

    def add(self, event: ExpectedEvent) -> ExpectedEvent:
        """Add ``event`` and write the added events to ``path`` atomically (temporary file, fsync, rename).

        :raises ValueError: for an id already used or a full calendar; :raises OSError: when it cannot be written.
        """
        with self._lock:
            self._check_new(event)
            events = self._events + (event,)
            if self.path is not None:
                body = {"version": 1, "events": [e.to_json() for e in events if e.source != "config"]}
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(self.path.name + ".tmp")
                with open(tmp, "w") as f:
                    json.dump(body, f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            self._events = events  # readers see the old tuple or the new one
        return event

    def active(self, timestamp_ms: int) -> list[ExpectedEvent]:
        """The events on at ``timestamp_ms`` (whatever series they select)."""
        return [e for e in self._events if e.on(timestamp_ms)]
