"""Recurring expected events (issue 5, deliverable 5): Alertmanager's weekdays/times windows, shared with silences
(detection/time_intervals.py), in the calendar, its file, the configuration and the analyst's explain()."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from detection.calendar import Calendar, ExpectedEvent
from detection.explain import explain
from detection.time_intervals import parse_time_intervals
from storage.matchers import Matcher

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
WEEK = 7 * DAY
FRI = int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp() * 1000)  # Friday 2026-11-20 00:00 UTC
LIVE = {"job": "live", "signal": "request_rate"}
CELEBRITY = [{"weekdays": ["friday:sunday"], "times": [{"start_time": "20:00", "end_time": "21:30"}]}]


def weekly(intervals=CELEBRITY, start=FRI, end=None, **extra) -> ExpectedEvent:
    return ExpectedEvent("celebrity-live", "expect", start, end, (Matcher("job", "=", "live"),), kind="surge",
                         direction="up", max_relative_deviation=3, time_intervals=parse_time_intervals(intervals),
                         **extra)


@pytest.mark.parametrize("offset, on", [
    (20 * HOUR - 1, False), (20 * HOUR, True),  # Friday 19:59:59.999, 20:00
    (21 * HOUR + 29 * MIN + 59_999, True), (21 * HOUR + 30 * MIN, False),  # end_time is excluded
    (DAY + 20 * HOUR + 45 * MIN, True), (2 * DAY + 21 * HOUR, True),  # Saturday, Sunday
    (3 * DAY + 20 * HOUR + 45 * MIN, False), (6 * DAY + 20 * HOUR + 45 * MIN, False),  # Monday, Thursday
    (WEEK + 20 * HOUR, True), (10 * WEEK + DAY + 21 * HOUR, True),  # every week, no end
    (-WEEK + 20 * HOUR + 30 * MIN, False),  # the Friday before the event starts
])
def test_a_recurring_event_covers_the_matching_times_only(offset, on):
    event = weekly()
    calendar = Calendar([event])
    assert event.covers(FRI + offset, LIVE) is on
    assert calendar.active(FRI + offset) == ([event] if on else [])
    assert not event.covers(FRI + offset, {"job": "feed", "signal": "request_rate"})


def test_weekday_ranges_several_times_and_an_end_bound_the_windows():
    event = weekly([{"weekdays": ["monday:wednesday", "saturday"],
                     "times": [{"start_time": "02:00", "end_time": "04:00"}, {"start_time": "23:00", "end_time": "24:00"}]},
                    {"weekdays": ["thursday"]}], end=FRI + 2 * WEEK)
    on_days = {0, 1, 2, 5}  # Monday..Wednesday and Saturday
    for day in range(14):
        at = FRI + day * DAY
        weekday = datetime.fromtimestamp(at / 1000, timezone.utc).weekday()
        assert event.covers(at + 3 * HOUR, LIVE) is (weekday in on_days or weekday == 3), day
        assert event.covers(at + 23 * HOUR + 59 * MIN, LIVE) is (weekday in on_days or weekday == 3), day
        assert event.covers(at + 12 * HOUR, LIVE) is (weekday == 3), day  # Thursday: all day
        assert not event.covers(at + 4 * HOUR, LIVE) or weekday == 3
    assert not event.covers(FRI + 2 * WEEK + 4 * DAY + 3 * HOUR, LIVE)  # a Monday after the end


@pytest.mark.parametrize("intervals, message", [
    ([{"weekdays": ["funday"]}], r"time_intervals\.0\.weekdays: .*'funday' is not a day name"),
    ([{"weekdays": ["friday:monday"]}], r"time_intervals\.0\.weekdays: .*ends before it starts"),
    ([{"times": [{"start_time": "21:30", "end_time": "20:00"}]}], r"time_intervals\.0\.times\.0: .*must be before"),
    ([{"times": [{"start_time": "20:00", "end_time": "25:00"}]}], r"time_intervals\.0\.times\.0: .*'25:00'"),
    ([{"times": [{"start_time": "8pm", "end_time": "21:00"}]}], r"time_intervals\.0\.times\.0: .*'8pm' is not HH:MM"),
    ([{"weekdays": ["friday"]}, {}], r"time_intervals\.1: .*needs weekdays, times or both"),
    ([{"weekdays": ["friday"], "location": "Europe/Paris"}], r"time_intervals\.0\.location: .*not permitted"),
])
def test_bad_time_intervals_are_refused_naming_the_field(intervals, message):
    with pytest.raises(ValueError, match=message):
        parse_time_intervals(intervals)


def test_an_event_without_an_end_must_recur():
    with pytest.raises(ValueError, match=r"'mw': end: required unless the event recurs \(time_intervals\)"):
        ExpectedEvent("mw", "suppress", FRI, None)
    with pytest.raises(ValueError, match="end .* must be after start"):
        weekly(end=FRI)


def test_the_calendar_file_keeps_recurring_events_and_names_a_bad_one(tmp_path):
    path = tmp_path / "calendar.json"
    event = weekly(description="every weekend evening")
    Calendar(path=path).add(event)
    stored = json.loads(path.read_text())["events"]
    assert stored[0]["end_ms"] is None and stored[0]["time_intervals"] == CELEBRITY
    [again] = Calendar(path=path).events
    assert again == event and again.covers(FRI + WEEK + 20 * HOUR, LIVE)
    stored[0]["time_intervals"] = [{"weekdays": ["fri"]}]
    path.write_text(json.dumps({"version": 1, "events": stored}))
    with pytest.raises(ValueError, match=r"calendar .*calendar\.json: not a calendar file: expected event "
                                         r"'celebrity-live': time_intervals\.0\.weekdays: .*'fri'"):
        Calendar(path=path)


def test_a_weekly_surge_is_expected_on_its_days_and_detected_on_another(tmp_path):
    """One recurring expect event: the Friday- and Saturday-evening surges (x4, as the platform's celebrity live)
    score 0 and are not learnt; the same surge on the Monday after, which the calendar does not plan, is detected."""
    index = pd.date_range(pd.Timestamp(FRI - 2 * DAY, unit="ms", tz="UTC"), periods=6 * 24 * 12, freq="5min")
    values = 100 + np.random.default_rng(5).normal(0, 2, len(index))
    minute = index.hour * 60 + index.minute
    evening = (minute >= 20 * 60) & (minute < 21 * 60 + 30)
    planned, unplanned = evening & index.day_of_week.isin([4, 5]), evening & (index.day_of_week == 0)
    values[planned | unplanned] *= 4
    frame = explain(pd.Series(values, index=index), labels=LIVE, calendar=Calendar([weekly()]))
    assert frame["raw_score"][planned].max() >= 1.1 and not frame["anomalous"][planned].any()
    assert set(frame["reason"][planned]) <= {"expected", ""} and "celebrity-live" in set(frame["event"][planned])
    assert frame["anomalous"][unplanned].any() and set(frame["reason"][unplanned]) == {""}


def test_a_recurring_event_in_the_configuration(tmp_path):
    from opswatch.config import load_config
    from opswatch.errors import ConfigError

    path = tmp_path / "opswatch.yaml"
    path.write_text("""\
detection:
  calendar:
    - {id: celebrity-live, kind: surge, mode: expect, direction: up, max_relative_deviation: 3,
       start: "2026-11-20T00:00:00Z", matchers: ['job="live"'],
       time_intervals: [{weekdays: ["friday:sunday"], times: [{start_time: "20:00", end_time: "21:30"}]}]}
""")
    [event] = [e.to_event() for e in load_config(path).detection.calendar]
    assert event == weekly(source="config") and event.end_ms is None
    assert event.covers(FRI + 5 * WEEK + DAY + 21 * HOUR, LIVE) and not event.covers(FRI + 21 * HOUR + 30 * MIN, LIVE)
    for text, named in [
        ("{id: a, mode: suppress, start: '2026-11-20T00:00:00Z'}",
         "key 'detection.calendar.0': calendar event 'a': end is required unless the event recurs"),
        ("{id: a, mode: suppress, start: '2026-11-20T00:00:00Z', time_intervals: [{weekdays: [fri]}]}",
         "key 'detection.calendar.0.time_intervals.0.weekdays'"),
        ("{id: a, mode: suppress, start: '2026-11-20T00:00:00Z', "
         "time_intervals: [{times: [{start_time: '04:00', end_time: '02:00'}]}]}",
         "key 'detection.calendar.0.time_intervals.0.times.0'"),
    ]:
        path.write_text(f"detection: {{calendar: [{text}]}}")
        with pytest.raises(ConfigError, match=re.escape(named)):
            load_config(path)
