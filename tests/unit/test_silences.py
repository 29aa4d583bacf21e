"""Silences: matchers, time range, recurring windows, "until resolved", persistence, and bad input named.
Time is an explicit ms clock; a real JSON file in tmp_path is the store."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from alerting.matchers import format_matcher, from_api, parse_matcher, to_api
from alerting.model import rfc3339
from alerting.silences import Silences, parse_silence
from opswatch.errors import ConfigError

MIN, HOUR = 60_000, 3_600_000
# Saturday 2026-11-21 00:00 UTC
SAT = int(datetime(2026, 11, 21, tzinfo=timezone.utc).timestamp() * 1000)


def body(matchers, start_ms, end_ms, **extra) -> dict:
    return {"matchers": [to_api(parse_matcher(m)) for m in matchers], "startsAt": rfc3339(start_ms),
            "endsAt": rfc3339(end_ms), "createdBy": "ana", "comment": "maintenance", **extra}


@pytest.mark.parametrize("text, expected", [
    ('job="postgres"', ("job", "=", "postgres")),
    ("severity=critical", ("severity", "=", "critical")),
    ('job!="user"', ("job", "!=", "user")),
    (' alertname =~ "Latency.*" ', ("alertname", "=~", "Latency.*")),
    ('path!~"/a\\"b"', ("path", "!~", '/a"b')),
])
def test_matchers_parse_alertmanagers_text_form_and_round_trip_through_the_api_form(text, expected):
    m = parse_matcher(text)
    assert (m.name, m.op, m.value) == expected
    assert from_api(to_api(m)) == m and parse_matcher(format_matcher(m)) == m


@pytest.mark.parametrize("text", ["job", "=x", 'job=="x"', '1job="x"', 'job="unterminated'])
def test_a_bad_matcher_names_the_text(text):
    with pytest.raises(ValueError, match="is not like"):
        parse_matcher(text)


def test_a_silence_is_pending_then_active_then_expired_and_mutes_only_matching_labels(tmp_path):
    silences = Silences(tmp_path / "silences.json")
    matchers = ['job="postgres"', 'alertname=~"Latency.*"']
    sid = silences.upsert(parse_silence(body(matchers, SAT + HOUR, SAT + 2 * HOUR)), SAT)
    latency = {"job": "postgres", "alertname": "LatencyHigh"}
    assert silences.get(sid, SAT)["status"]["state"] == "pending"
    assert silences.muted_by(latency, SAT + HOUR - 1) == []
    assert silences.muted_by(latency, SAT + HOUR) == [sid]
    assert silences.muted_by({**latency, "alertname": "ErrorsHigh"}, SAT + HOUR) == []
    assert silences.muted_by({**latency, "alertname": "XLatencyHigh"}, SAT + HOUR) == []  # regexes are anchored
    assert silences.muted_by({**latency, "job": "user"}, SAT + HOUR) == []
    # updated in place while not expired: same id, new end
    longer = parse_silence({**body(matchers, SAT + HOUR, SAT + 3 * HOUR), "id": sid})
    assert silences.upsert(longer, SAT + HOUR) == sid and len(silences.list(SAT)) == 1
    assert silences.muted_by(latency, SAT + 3 * HOUR - 1) == [sid]
    assert silences.muted_by(latency, SAT + 3 * HOUR) == []
    assert silences.get(sid, SAT + 3 * HOUR)["status"]["state"] == "expired"


def test_api_shape_is_alertmanagers_gettable_silence(tmp_path):
    silences = Silences(tmp_path / "silences.json")
    sid = silences.upsert(parse_silence(body(['job!="user"', 'severity="critical"'], SAT, SAT + HOUR)), SAT)
    [s] = silences.list(SAT)
    assert s["id"] == sid and s["status"] == {"state": "active"}
    assert s["matchers"] == [{"name": "job", "value": "user", "isRegex": False, "isEqual": False},
                             {"name": "severity", "value": "critical", "isRegex": False, "isEqual": True}]
    assert (s["startsAt"], s["endsAt"], s["createdBy"], s["comment"]) == (
        "2026-11-21T00:00:00.000Z", "2026-11-21T01:00:00.000Z", "ana", "maintenance")


@pytest.mark.parametrize("change, message", [
    ({"matchers": [{"name": "job", "value": ".*", "isRegex": True}]}, "must not match the empty string"),
    ({"matchers": []}, "matchers"),
    ({"createdBy": ""}, "createdBy"),
    ({"comment": None}, "comment"),
    ({"endsAt": "2026-11-20T00:00:00Z"}, "endsAt 2026-11-20T00:00:00.000Z must be after startsAt"),
    ({"startsAt": "2026-11-21T00:00:00"}, "startsAt: .*time zone"),
    ({"matchers": [{"name": "job", "value": "(", "isRegex": True}]}, "bad regex"),
    ({"timeIntervals": [{"weekdays": ["funday"]}]}, "timeIntervals.0.weekdays: .*funday"),
    ({"timeIntervals": [{"times": [{"start_time": "04:00", "end_time": "02:00"}]}]}, "must be before end_time"),
    ({"timeIntervals": [{}]}, "needs weekdays, times or both"),
    ({"endsAt": None}, "endsAt"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_silences_are_refused_naming_the_key_and_nothing_is_stored(tmp_path, change, message):
    silences = Silences(tmp_path / "silences.json")
    with pytest.raises(ValueError, match=message):
        silences.upsert(parse_silence({**body(['job="postgres"'], SAT, SAT + HOUR), **change}), SAT)
    assert silences.list(SAT) == [] and not (tmp_path / "silences.json").exists()


def test_a_weekly_maintenance_window_mutes_only_inside_the_window_in_utc(tmp_path):
    silences = Silences(tmp_path / "silences.json")
    window = {"timeIntervals": [{"weekdays": ["saturday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]}]}
    sid = silences.upsert(parse_silence(body(['job="postgres"'], SAT, SAT + 21 * 24 * HOUR, **window)), SAT)
    labels = {"job": "postgres"}
    week = 7 * 24 * HOUR
    for offset, muted in [(2 * HOUR - 1, False), (2 * HOUR, True), (4 * HOUR - 1, True), (4 * HOUR, False),
                          (24 * HOUR + 3 * HOUR, False),  # Sunday 03:00
                          (week + 3 * HOUR, True), (2 * week + 2 * HOUR + 30 * MIN, True)]:
        assert (silences.muted_by(labels, SAT + offset) == [sid]) is muted, offset
        assert silences.get(sid, SAT + offset)["status"]["state"] == ("active" if muted else "pending")
    assert silences.get(sid, SAT)["timeIntervals"] == window["timeIntervals"]


def test_until_resolved_expires_when_the_alerts_it_muted_are_resolved(tmp_path):
    silences = Silences(tmp_path / "silences.json")
    sid = silences.upsert(parse_silence(body(['incident="INC-1"'], SAT, SAT + 24 * HOUR, untilResolved=True)), SAT)
    a = {"alertname": "LatencyHigh", "job": "postgres", "incident": "INC-1"}
    b = {"alertname": "LatencyHigh", "job": "user", "incident": "INC-1"}
    assert silences.observe(SAT + MIN, {}) == []  # nothing matched yet: it waits
    assert silences.observe(SAT + 2 * MIN, {"fa": a, "fb": b}) == []
    assert silences.observe(SAT + 3 * MIN, {"fb": b}) == []  # one left
    assert silences.muted_by(b, SAT + 3 * MIN) == [sid]
    assert silences.observe(SAT + 4 * MIN, {"fc": {"job": "other"}}) == [sid]
    assert silences.get(sid, SAT + 4 * MIN)["status"]["state"] == "expired"
    assert silences.get(sid, SAT + 4 * MIN)["endsAt"] == rfc3339(SAT + 4 * MIN)


def test_silences_survive_a_restart_and_expire_and_update_by_id(tmp_path):
    path = tmp_path / "silences.json"
    first = Silences(path)
    keep = first.upsert(parse_silence(body(['job="postgres"'], SAT, SAT + HOUR, untilResolved=True)), SAT)
    first.observe(SAT + 1, {"f1": {"job": "postgres"}})
    gone = first.upsert(parse_silence(body(['job="redis"'], SAT, SAT + HOUR)), SAT)
    first.expire(gone, SAT + MIN)
    with pytest.raises(ValueError, match="already expired"):
        first.expire(gone, SAT + 2 * MIN)
    with pytest.raises(KeyError):
        first.expire("nope", SAT)

    second = Silences(path)
    assert second.list(SAT + 2 * MIN) == first.list(SAT + 2 * MIN)
    assert second.muted_by({"job": "postgres"}, SAT + 2 * MIN) == [keep]
    assert second.observe(SAT + 3 * MIN, {}) == [keep]  # it remembered what it had muted
    # updating an expired silence creates a new one
    renewed = parse_silence({**body(['job="postgres"'], SAT, SAT + 5 * HOUR), "id": gone})
    assert second.upsert(renewed, SAT + 4 * MIN) != gone
    with pytest.raises(KeyError, match="no silence 'missing'"):
        second.upsert(parse_silence({**body(['job="x"'], SAT, SAT + HOUR), "id": "missing"}), SAT)
    # expired silences are forgotten after the retention
    third = Silences(path, retention_ms=HOUR)
    third.observe(SAT + 3 * HOUR, {})
    assert gone not in {s["id"] for s in third.list(SAT + 3 * HOUR)}


def test_an_unreadable_silences_file_names_the_file(tmp_path):
    path = tmp_path / "silences.json"
    path.write_text(json.dumps({"version": 1, "silences": [{"id": "x"}]}))
    with pytest.raises(ConfigError, match=f"{path}: cannot restore silences"):
        Silences(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="silences.json: cannot restore silences"):
        Silences(path)
