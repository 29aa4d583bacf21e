"""The notification stages over real incidents (explicit ms clock): statuses in Alertmanager's shape, a
silence "until resolved" on an incident, announcements, and the ``opswatch silence add`` arguments."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from alerting.incidents import Incident, IncidentManager
from alerting.model import Alert, rfc3339
from alerting.routing import RouteConfig, build_route
from alerting.silences import Silences, parse_silence
from alerting.stages import NotificationStages
from opswatch.cli import build_parser
from opswatch.commands.silence import silence_body
from topology.graph import Topology

TOPOLOGY = Topology.load()
S, MIN = 1000, 60_000
T0 = 1_800_000_000_000


def firing(job: str) -> Alert:
    return Alert({"alertname": "LatencyHigh", "job": job}, {"summary": job}, "firing", T0, 2.0, fired_at_ms=T0)


def stages(tmp_path, **route) -> NotificationStages:
    tree = build_route(RouteConfig.model_validate({"receiver": "oncall", "group_wait": "0s", **route}))
    return NotificationStages(TOPOLOGY, tree, [], Silences(tmp_path / "silences.json"), tmp_path / "nflog.json",
                              "http://ops", tmp_path / "reports")


def test_statuses_pages_and_an_until_resolved_silence_on_an_incident(tmp_path):
    s = stages(tmp_path)
    incidents = IncidentManager(TOPOLOGY, resolve_after_ms=MIN)
    alerts = {a.fingerprint: a for a in (firing("postgres"), firing("user"))}
    postgres, user = alerts.values()
    [incident] = incidents.update(T0, alerts)
    result = s.run(T0, alerts, incidents)
    [out] = result.outgoing
    assert out.payload["receiver"] == "oncall" and not out.repeat
    assert out.payload["groupLabels"] == {"incident": incident.id}
    assert [a["fingerprint"] for a in out.payload["alerts"]] == [postgres.fingerprint]
    assert [i.id for i in result.paged] == [incident.id]
    assert s.status(postgres.fingerprint) == {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": [],
                                              "inhibitedReasons": []}
    assert s.status(user.fingerprint)["state"] == "suppressed"
    assert {i.id for i in result.status_changed} == {incident.id}

    # silence the incident until it is over: the next alert joining it pages nobody
    sid = s.silences.upsert(parse_silence({
        "matchers": [{"name": "incident", "value": incident.id}], "endsAt": rfc3339(T0 + 24 * 60 * MIN),
        "createdBy": "ana", "comment": "known", "untilResolved": True}), T0 + S)
    live = Alert({"alertname": "ErrorsHigh", "job": "message"}, {}, "firing", T0 + 2 * S, 1.0, fired_at_ms=T0 + 2 * S)
    alerts[live.fingerprint] = live
    incidents.update(T0 + 2 * S, alerts)
    assert s.run(T0 + 6 * MIN, alerts, incidents).outgoing == []
    assert s.status(live.fingerprint)["silencedBy"] == [sid]
    assert s.status(postgres.fingerprint)["silencedBy"] == [sid]

    # announcements go to the receivers that were told, and only them
    [told] = s.announce(incident, alerts)
    assert told.repeat and told.payload["groupKey"] == out.payload["groupKey"]
    assert s.announce(Incident("INC-x", T0), alerts) == []

    # every alert resolves; once the incident resolves, the silence expires
    for a in alerts.values():
        a.state, a.resolved_at_ms = "resolved", T0 + 7 * MIN
    s.run(T0 + 7 * MIN, alerts, incidents)
    assert s.silences.get(sid, T0 + 7 * MIN)["status"]["state"] == "active"  # its incident is still open
    incidents.update(T0 + 9 * MIN, alerts)
    assert incidents.incidents[incident.id].status == "resolved"
    s.run(T0 + 9 * MIN, alerts, incidents)
    assert s.silences.get(sid, T0 + 9 * MIN)["status"]["state"] == "expired"


def args(*argv: str):
    return build_parser().parse_args(["silence", "add", *argv])


def test_silence_add_arguments_become_alertmanagers_postable_silence():
    now = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
    body = silence_body(args('job="postgres"', "alertname=~Lat.*", "-c", "failover", "-a", "ana", "-d", "2h",
                             "--until-resolved", "--weekdays", "saturday", "--times", "02:00-04:00"), now)
    parsed = parse_silence(body)  # the server's own validation accepts it
    assert [(m.name, m.value, m.isRegex, m.isEqual) for m in parsed.matchers] == [
        ("job", "postgres", False, True), ("alertname", "Lat.*", True, True)]
    assert (parsed.endsAt - parsed.startsAt).total_seconds() == 7200 and parsed.untilResolved
    assert body["timeIntervals"] == [{"weekdays": ["saturday"],
                                      "times": [{"start_time": "02:00", "end_time": "04:00"}]}]


@pytest.mark.parametrize("argv, message", [
    (["job", "-c", "x"], "matcher 'job' is not like"),
    (["job=a", "-c", "x", "-d", "soon"], "--duration: duration 'soon'"),
    (["job=a", "-c", "x", "--end", "tomorrow"], "--end 'tomorrow' is not an RFC 3339 time"),
    (["job=a", "-c", "x", "--start", "2026-11-21T10:00:00"], "--start .* needs a time zone"),
    (["job=a", "-c", "x", "--times", "0200"], "--times '0200' is not like 02:00-04:00"),
])
def test_bad_silence_add_arguments_are_named(argv, message):
    with pytest.raises(SystemExit, match=message):
        silence_body(args(*argv), datetime(2026, 11, 21, tzinfo=timezone.utc))


def test_an_alert_whose_every_route_is_muted_by_time_shows_muted_by_and_pages_later(tmp_path):
    from detection.time_intervals import parse_time_intervals
    window = parse_time_intervals([{"times": [{"start_time": "07:00", "end_time": "08:01"}]}])  # T0: Friday 08:00
    tree = build_route(RouteConfig.model_validate({"receiver": "log", "routes": [
        {"receiver": "oncall", "group_wait": "0s", "group_interval": "1m", "mute_time_intervals": ["maint"]}]}),
        time_intervals={"maint": window})
    s = NotificationStages(TOPOLOGY, tree, [], Silences(tmp_path / "silences.json"), tmp_path / "nflog.json",
                           "http://ops", tmp_path / "reports")
    incidents = IncidentManager(TOPOLOGY, resolve_after_ms=MIN)
    alert = firing("postgres")
    alerts = {alert.fingerprint: alert}
    incidents.update(T0, alerts)
    assert s.run(T0, alerts, incidents).outgoing == []
    assert s.status(alert.fingerprint) == {"state": "suppressed", "silencedBy": [], "inhibitedBy": [],
                                           "mutedBy": ["maint"], "inhibitedReasons": []}
    [out] = s.run(T0 + MIN, alerts, incidents).outgoing
    assert out.payload["receiver"] == "oncall" and s.status(alert.fingerprint)["state"] == "active"
