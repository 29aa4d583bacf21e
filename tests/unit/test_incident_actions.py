"""Acknowledging and resolving incidents by hand (the incident page's and the API's write actions), with
an explicit clock, and the token those actions need."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from alerting.incidents import IncidentManager
from alerting.model import Alert
from opswatch.api_common import check_token
from topology.graph import Topology

S = 1000


def firing(job: str, at_ms: int) -> Alert:
    return Alert({"alertname": "LatencyAnomaly", "job": job, "severity": "warning"}, {"summary": f"{job} slow"},
                 "firing", at_ms, 7.0, signal="latency_p99_seconds", fired_at_ms=at_ms, max_score=7.0)


def test_an_acknowledged_incident_stays_active_and_a_resolved_one_lets_a_new_one_open():
    manager = IncidentManager(Topology.load(), resolve_after_ms=60 * S)
    alerts = {a.fingerprint: a for a in [firing("postgres", 0)]}
    [incident] = manager.update(0, alerts)
    manager.acknowledge(incident.id, 5 * S, "noc")
    assert incident.status == "acknowledged" and incident.timeline[-1].text == "acknowledged by noc"
    with pytest.raises(ValueError, match="only an open incident"):
        manager.acknowledge(incident.id, 6 * S, "noc")

    more = firing("user", 10 * S)  # user depends on postgres: it joins the acknowledged incident
    alerts[more.fingerprint] = more
    manager.update(10 * S, alerts)
    assert incident.alert_fingerprints == list(alerts) and len(manager.incidents) == 1

    manager.resolve(incident.id, 20 * S, "noc")
    assert (incident.status, incident.resolved_at_ms) == ("resolved", 20 * S)
    changed = manager.update(21 * S, alerts)  # still firing: a new incident, holding each alert once
    [reopened] = [i for i in changed if i.id != incident.id]
    assert reopened.status == "open" and sorted(reopened.alert_fingerprints) == sorted(alerts)
    assert manager.update(22 * S, alerts) == []  # and nothing is appended again on later evaluations
    with pytest.raises(KeyError):
        manager.resolve("INC-nope", 23 * S, "noc")


def test_write_actions_need_the_configured_token(monkeypatch):
    monkeypatch.delenv("OPSWATCH_API_TOKEN", raising=False)
    pipeline = SimpleNamespace(config=SimpleNamespace(api_token=None))
    with pytest.raises(PermissionError, match="disabled"):
        check_token(pipeline, "anything")
    monkeypatch.setenv("OPSWATCH_API_TOKEN", "from-the-environment")
    check_token(pipeline, "from-the-environment")
    pipeline.config.api_token = "from-the-config"
    check_token(pipeline, "from-the-config")
    for wrong in ("", None, "from-the-environment", "from-the-confi"):
        with pytest.raises(PermissionError, match="missing or wrong"):
            check_token(pipeline, wrong)
