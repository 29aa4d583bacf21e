"""Rules, the alert lifecycle, grouping into incidents, root-cause ranking and reports, driven with an
explicit clock (ms) instead of sleeping."""

from __future__ import annotations

import math

import pytest

from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertTracker
from alerting.report import build_report, render_markdown
from alerting.rules import load_rules
from detection.base import Score
from topology.graph import Topology
from topology.rca import Evidence, rank_root_causes

TOPOLOGY = Topology.load()
RULES = {r.name: r for r in load_rules()}
S = 1000  # one second, in ms


def latency_score(job: str, at_ms: int, score: float) -> dict:
    return {(job, "latency_p99_seconds"): Score(at_ms, 0.3, score, 0.02, 0.005)}


def evaluate(tracker, incidents, now_ms, anomalous: dict[str, float]):
    """One evaluation where each job in ``anomalous`` has that latency anomaly score."""
    signals = {job: {"latency_p99_seconds": 0.3} for job in anomalous}
    scores = {}
    for job, score in anomalous.items():
        scores.update(latency_score(job, now_ms, score))
    rule = RULES["LatencyAnomaly"]
    tracker.update(now_ms, [(c, rule.for_ms) for c in rule.evaluate(signals, scores)])
    return incidents.update(now_ms, tracker.alerts)


def test_rule_threshold_and_annotation_template():
    rule = RULES["HighErrorRatio"]
    [cond] = rule.evaluate({"gift": {"error_ratio": 0.5}, "feed": {"error_ratio": 0.01}}, {})
    assert cond.labels == {"alertname": "HighErrorRatio", "job": "gift", "signal": "error_ratio", "severity": "critical"}
    assert cond.annotations["summary"] == "gift: 50% of requests fail"
    # NaN (no traffic) never fires a rule
    assert rule.evaluate({"gift": {"error_ratio": math.nan}}, {}) == []


def test_lifecycle_pending_firing_resolved():
    rule = RULES["LatencyAnomaly"]  # for: 10s
    tracker = AlertTracker()
    conds = lambda: [(c, rule.for_ms) for c in rule.evaluate({"post": {}}, latency_score("post", 0, 9.0))]
    tracker.update(0, conds())
    [alert] = tracker.alerts.values()
    assert alert.state == "pending" and alert.active_at_ms == 0
    tracker.update(9 * S, conds())
    assert alert.state == "pending"  # 9 s < for
    tracker.update(10 * S, conds())
    assert alert.state == "firing" and alert.fired_at_ms == 10 * S
    assert alert.baseline == 0.02 and alert.max_score == 9.0
    tracker.update(11 * S, [])
    assert alert.state == "resolved" and alert.resolved_at_ms == 11 * S
    # a pending alert whose condition goes away is dropped, never resolved
    tracker.update(20 * S, conds())
    tracker.update(21 * S, [])
    assert [a.state for a in tracker.alerts.values()] == ["resolved"]


def test_fault_spreading_from_postgres_is_one_incident_rooted_at_postgres():
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY, resolve_after_ms=60 * S, onset_tolerance_ms=2 * S)
    evaluate(tracker, incidents, 0, {"postgres": 40})
    evaluate(tracker, incidents, 1 * S, {"postgres": 40, "user": 20})
    evaluate(tracker, incidents, 3 * S, {"postgres": 40, "user": 20, "gateway": 8, "gift": 12})
    for t in range(4, 16):
        evaluate(tracker, incidents, t * S, {"postgres": 40, "user": 20, "gateway": 8, "gift": 12})
    [incident] = incidents.incidents.values()
    assert incident.status == "open"
    assert [c.node for c in incident.root_causes][0] == "postgres"
    assert set(incident.nodes) == {"postgres", "user", "gateway", "gift"}
    assert set(incident.impacted_businesses) == {n for n in TOPOLOGY.nodes("business")}
    # the victims say what explains them
    user = next(c for c in incident.root_causes if c.node == "user")
    assert "postgres" in user.reasons[0]


def test_unrelated_faults_stay_separate_and_incidents_resolve_after_quiet_time():
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY, resolve_after_ms=30 * S)
    for t in range(0, 12):
        evaluate(tracker, incidents, t * S, {"kafka": 30, "redis": 30})  # two infra nodes: no path between them
    assert sorted(i.nodes[0] for i in incidents.incidents.values()) == ["kafka", "redis"]
    for t in range(12, 12 + 29):
        evaluate(tracker, incidents, t * S, {})
    assert all(i.status == "open" for i in incidents.incidents.values())  # quiet for 29 s < 30 s
    changed = evaluate(tracker, incidents, 42 * S, {})
    assert {i.status for i in changed} == {"resolved"} and len(changed) == 2


def test_an_alert_linking_two_incidents_merges_them_into_the_oldest():
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    for t in range(0, 11):
        evaluate(tracker, incidents, t * S, {"kafka": 30})
    for t in range(11, 22):
        evaluate(tracker, incidents, t * S, {"kafka": 30, "redis": 30})
    for t in range(22, 33):
        evaluate(tracker, incidents, t * S, {"kafka": 30, "redis": 30, "post": 9})  # post depends on both
    open_ = incidents.open_incidents()
    assert len(open_) == 1 and set(open_[0].nodes) == {"kafka", "redis", "post"}
    assert sum(i.status == "merged" for i in incidents.incidents.values()) == 1


@pytest.mark.parametrize("evidence, expected", [
    # error burst on gift, seen at the gateway too: gift, not its caller
    ([("gift", 0, 50), ("gateway", 0, 5)], "gift"),
    # the dependency departed first, the dependant later: the dependency
    ([("redis", 0, 10), ("user", 3, 30)], "redis"),
    # a chain gateway -> feed -> post, all at once: the deepest anomalous node
    ([("gateway", 0, 9), ("feed", 0, 15), ("post", 0, 12)], "post"),
])
def test_root_cause_ranking(evidence, expected):
    ev = [Evidence(node, "latency_p99_seconds", node, at * S, 0.01, 0.3, score) for node, at, score in evidence]
    ranked = rank_root_causes(TOPOLOGY, ev, onset_tolerance_ms=2 * S)
    assert ranked[0].node == expected
    assert ranked[0].evidence and ranked[0].reasons


def test_report_has_every_section():
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    for t in range(0, 11):
        evaluate(tracker, incidents, t * S, {"postgres": 40, "post": 12})
    [incident] = incidents.incidents.values()
    report = build_report(incident, tracker.alerts)
    assert report["summary"].startswith("likely root cause postgres")
    top = report["root_causes"][0]
    assert top["node"] == "postgres"
    assert top["evidence"][0]["series"] == 'job:latency_p99_seconds{job="postgres"}'
    assert top["evidence"][0]["baseline"] == 0.02 and top["evidence"][0]["observed"] == 0.3
    md = render_markdown(report)
    for heading in ("## Impacted businesses", "## Root-cause candidates", "## Timeline", "## Alerts"):
        assert heading in md
    assert "`postgres`" in md


def test_alerts_firing_together_open_one_incident_not_several_merged():
    # post and live share only redis; fired in one evaluation, redis opens the incident and both join it
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    changed = []
    for t in range(0, 11):
        changed += evaluate(tracker, incidents, t * S, {"post": 9, "live": 9, "redis": 30})
    assert len(incidents.incidents) == 1
    assert {i.id for i in changed} == {next(iter(incidents.incidents))}
