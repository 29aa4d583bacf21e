"""Recurring UTC windows in Alertmanager's ``time_intervals`` vocabulary (its ``weekdays`` and ``times`` parts).

``{"weekdays": ["saturday", "monday:friday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]}``:
inside when the weekday is one of ``weekdays`` (names or inclusive ranges ``first:last``, Monday first) and the
minute of the day lies in one of ``times`` (``start_time`` inclusive, ``end_time`` exclusive, ``"HH:MM"`` up to
``"24:00"``); omitted weekdays or times mean all. Times are UTC (Alertmanager's ``location`` is not offered).
Source: https://prometheus.io/docs/alerting/latest/configuration/#time_interval

Shared by silences (:mod:`alerting.silences`, ``timeIntervals``) and the calendar of expected events
(:mod:`detection.calendar`, ``time_intervals``); it lives in ``detection`` because alerting may import
detection, not the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def minute_of_day(text: str) -> int:
    """``"02:30"`` -> 150 (``"24:00"`` -> 1440). :raises ValueError: naming the text."""
    try:
        hours, minutes = (int(p) for p in text.split(":"))
    except ValueError:
        raise ValueError(f"time {text!r} is not HH:MM") from None
    if not (0 <= minutes < 60 and 0 <= hours * 60 + minutes <= 1440):
        raise ValueError(f"time {text!r} is not between 00:00 and 24:00")
    return hours * 60 + minutes


def weekday_numbers(spec: str) -> set[int]:
    """``"monday:friday"`` -> {0..4}; ``"sunday"`` -> {6} (0 = Monday). :raises ValueError: naming the text."""
    parts = spec.lower().split(":")
    if len(parts) > 2 or any(p not in WEEKDAYS for p in parts):
        raise ValueError(f"weekday {spec!r} is not a day name (monday ... sunday) or a range like monday:friday")
    first, last = WEEKDAYS.index(parts[0]), WEEKDAYS.index(parts[-1])
    if last < first:
        raise ValueError(f"weekday range {spec!r} ends before it starts")
    return set(range(first, last + 1))


class TimeRangeSpec(BaseModel):
    """One ``times`` entry: ``[start_time, end_time)``, ``"HH:MM"`` UTC."""

    model_config = ConfigDict(extra="forbid")
    start_time: str
    end_time: str

    @model_validator(mode="after")
    def _order(self) -> "TimeRangeSpec":
        if minute_of_day(self.start_time) >= minute_of_day(self.end_time):
            raise ValueError(f"start_time {self.start_time} must be before end_time {self.end_time}")
        return self


class TimeIntervalSpec(BaseModel):
    """Alertmanager's ``time_interval`` (the ``weekdays`` and ``times`` parts), in UTC."""

    model_config = ConfigDict(extra="forbid")
    weekdays: list[str] = Field(default_factory=list)
    times: list[TimeRangeSpec] = Field(default_factory=list)

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        for spec in v:
            weekday_numbers(spec)
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> "TimeIntervalSpec":
        if not self.weekdays and not self.times:
            raise ValueError("a time interval needs weekdays, times or both")
        return self


@dataclass(frozen=True)
class TimeInterval:
    """A recurring UTC window: ``weekdays`` (0 = Monday; empty = every day) and ``times`` (minute-of-day
    ranges ``[start, end)``; empty = all day); ``source`` is the spec as given (for the APIs)."""

    weekdays: frozenset[int]
    times: tuple[tuple[int, int], ...]
    source: dict = field(compare=False)

    @classmethod
    def from_spec(cls, spec: TimeIntervalSpec) -> "TimeInterval":
        days = frozenset(d for text in spec.weekdays for d in weekday_numbers(text))
        times = tuple((minute_of_day(t.start_time), minute_of_day(t.end_time)) for t in spec.times)
        return cls(days, times, spec.model_dump())

    def contains(self, ms: int) -> bool:
        """True when ``ms`` (since the epoch) falls inside the window."""
        at = datetime.fromtimestamp(ms / 1000, timezone.utc)
        minute = at.hour * 60 + at.minute
        return ((not self.weekdays or at.weekday() in self.weekdays)
                and (not self.times or any(start <= minute < end for start, end in self.times)))


def parse_time_intervals(objs: Iterable[object], where: str = "time_intervals") -> tuple[TimeInterval, ...]:
    """Validate JSON/YAML objects as :class:`TimeIntervalSpec` and build the windows.

    :raises ValueError: one line per problem, naming the key (``time_intervals.0.weekdays: ...``).
    """
    out = []
    for i, obj in enumerate(objs):
        try:
            out.append(TimeInterval.from_spec(TimeIntervalSpec.model_validate(obj)))
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join([where, str(i), *map(str, e['loc'])])}: "
                                       f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())) from None
    return tuple(out)
