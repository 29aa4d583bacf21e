"""Rules, the alert lifecycle, grouping into incidents, root-cause ranking and reports, driven with an
explicit clock (ms) instead of sleeping. Rules are evaluated with PromQL over a real SQLite store holding the
series the pipeline records (``job:<signal>``, ``opswatch_anomaly_score``)."""

from __future__ import annotations

import json
import math

import pytest

from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertStateFile, AlertTracker
from alerting.report import build_report, render_markdown
from alerting.rules import Condition, RuleEvaluator, load_rule_groups
from collectors.samples import STALE_NAN, Sample, labels_key
from detection.base import Score
from opswatch.config import load_config
from opswatch.errors import ConfigError
from opswatch.pipeline import Pipeline
from storage.sqlite import SQLiteStore
from topology.graph import Topology
from topology.rca import Evidence, rank_root_causes

TOPOLOGY = Topology.load()
S = 1000  # one second, in ms


class Recorded:
    """The series the pipeline records, written into a real store, and the default rules evaluated over it."""

    def __init__(self, path):
        self.store = SQLiteStore(path / "opswatch.db")
        self.rules = RuleEvaluator(load_rule_groups(), self.store)
        self.previous: dict[str, Sample] = {}

    def write(self, now_ms: int, samples: list[Sample]) -> None:
        written = {labels_key({"__name__": x.name, **x.labels}): x for x in samples}
        stale = [Sample(x.name, x.labels, now_ms, STALE_NAN) for k, x in self.previous.items() if k not in written]
        self.previous = written
        self.store.append(samples + stale)


@pytest.fixture
def recorded(tmp_path):
    env = Recorded(tmp_path)
    yield env
    env.store.close()


def evaluate(recorded, tracker, incidents, now_ms, anomalous: dict[str, float]):
    """One evaluation where each job in ``anomalous`` has that latency anomaly score (p99 and p90 alike)."""
    samples, scores = [], {}
    for job, score in anomalous.items():
        for signal in ("latency_p99_seconds", "latency_p90_seconds"):
            samples += [Sample(f"job:{signal}", {"job": job}, now_ms, 0.3),
                        Sample("opswatch_anomaly_score", {"job": job, "signal": signal}, now_ms, score)]
            scores[(job, signal)] = Score(now_ms, 0.3, score, 0.02, 0.005)
    recorded.write(now_ms, samples)
    result = recorded.rules.evaluate(now_ms, scores)
    assert not result.errors
    tracker.update(now_ms, result.conditions, result.evaluated)
    return incidents.update(now_ms, tracker.alerts)


def test_threshold_rule_over_recorded_series_and_annotation_template(recorded):
    recorded.write(0, [Sample("job:error_ratio", {"job": "gift"}, 0, 0.5),
                       Sample("job:error_ratio", {"job": "feed"}, 0, 0.01)])
    [cond] = [c for c in recorded.rules.evaluate(0).conditions if c.labels["alertname"] == "HighErrorRatio"]
    assert cond.labels == {"alertname": "HighErrorRatio", "job": "gift", "signal": "error_ratio", "severity": "critical"}
    assert cond.annotations["summary"] == "gift: 50% of requests fail"
    assert cond.for_ms == 15 * S and cond.value == 0.5
    # a series that went stale (the signal became NaN: no traffic) never fires a rule
    recorded.write(S, [Sample("job:error_ratio", {"job": "feed"}, S, 0.01)])
    assert not [c for c in recorded.rules.evaluate(S).conditions if c.labels["alertname"] == "HighErrorRatio"]


def latency_scores(job: str, p99: float, p90: float) -> list[Sample]:
    return [Sample("job:latency_p99_seconds", {"job": job}, 0, 0.3),
            Sample("opswatch_anomaly_score", {"job": job, "signal": "latency_p99_seconds"}, 0, p99),
            Sample("job:latency_p90_seconds", {"job": job}, 0, 0.2),
            Sample("opswatch_anomaly_score", {"job": job, "signal": "latency_p90_seconds"}, 0, p90)]


def test_anomaly_of_a_recorded_signal_reads_the_pipelines_score(recorded):
    # post: p99 and p90 both departed; feed: neither; origin: only its slowest request (p99), not the bulk
    recorded.write(0, latency_scores("post", 9.0, 6.0) + latency_scores("feed", 0.4, 0.1)
                   + latency_scores("origin", 40.0, 0.5))
    result = recorded.rules.evaluate(0)
    [cond] = [c for c in result.conditions if c.labels["alertname"] == "LatencyAnomaly"]
    assert cond.labels == {"alertname": "LatencyAnomaly", "job": "post", "signal": "latency_p99_seconds",
                           "severity": "warning"}
    assert cond.value == 9.0 and cond.annotations["summary"] == "post: p99 latency departed from its baseline (score 9)"
    assert "LatencyAnomaly" in result.evaluated and "TargetDown" in result.evaluated


def conditions(value: float = 9.0, for_ms: int = 10 * S, keep_firing_for_ms: int = 0) -> list[Condition]:
    labels = {"alertname": "LatencyAnomaly", "job": "post", "signal": "latency_p99_seconds"}
    return [Condition(labels, {}, value, "latency_p99_seconds", Score(0, 0.3, value, 0.02, 0.005),
                      for_ms, keep_firing_for_ms)]


def test_lifecycle_pending_firing_resolved():
    tracker = AlertTracker()
    tracker.update(0, conditions())
    [alert] = tracker.alerts.values()
    assert alert.state == "pending" and alert.active_at_ms == 0
    tracker.update(9 * S, conditions())
    assert alert.state == "pending"  # 9 s < for
    tracker.update(10 * S, conditions())
    assert alert.state == "firing" and alert.fired_at_ms == 10 * S
    assert alert.baseline == 0.02 and alert.max_score == 9.0
    tracker.update(11 * S, [])
    assert alert.state == "resolved" and alert.resolved_at_ms == 11 * S
    # a pending alert whose condition goes away is dropped, never resolved
    tracker.update(20 * S, conditions())
    tracker.update(21 * S, [])
    assert [a.state for a in tracker.alerts.values()] == ["resolved"]


def test_for_zero_fires_at_once_and_fingerprint_is_alertmanagers():
    tracker = AlertTracker()
    [pending, firing] = tracker.update(0, conditions(for_ms=0))
    assert pending is firing and firing.state == "firing" and firing.fired_at_ms == 0
    # Alertmanager's fingerprint: FNV-1a 64 over sorted names and values, each followed by 0xff
    assert firing.fingerprint == "%016x" % _fnv(b"alertname\xffLatencyAnomaly\xffjob\xffpost\xff"
                                               b"signal\xfflatency_p99_seconds\xff")


def _fnv(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return h


def test_keep_firing_for_holds_a_firing_alert_after_its_condition_stops():
    tracker = AlertTracker()
    tracker.update(0, conditions(for_ms=0, keep_firing_for_ms=5 * S))
    [alert] = tracker.alerts.values()
    tracker.update(1 * S, [])
    assert alert.state == "firing" and alert.keep_firing_since_ms == 1 * S
    tracker.update(5 * S, [])
    assert alert.state == "firing"  # 4 s < 5 s since the condition stopped
    tracker.update(6 * S, [])
    assert alert.state == "resolved" and alert.resolved_at_ms == 6 * S
    # the condition coming back while held resets the hold
    tracker = AlertTracker()
    tracker.update(0, conditions(for_ms=0, keep_firing_for_ms=5 * S))
    tracker.update(4 * S, [])
    tracker.update(8 * S, conditions(for_ms=0, keep_firing_for_ms=5 * S))
    [alert] = tracker.alerts.values()
    assert alert.keep_firing_since_ms is None
    tracker.update(12 * S, [])
    assert alert.state == "firing" and alert.fired_at_ms == 0


def test_resolve_timeout_resolves_alerts_of_rules_no_longer_evaluated():
    tracker = AlertTracker(resolve_timeout_ms=60 * S)
    tracker.update(0, conditions(for_ms=0), evaluated={"LatencyAnomaly"})
    [alert] = tracker.alerts.values()
    tracker.update(30 * S, [], evaluated={"SomeOtherRule"})  # its rule failed or was removed: left as is
    assert alert.state == "firing"
    tracker.update(59 * S, [], evaluated=set())
    assert alert.state == "firing"
    tracker.update(60 * S, [], evaluated=set())
    assert alert.state == "resolved" and alert.resolved_at_ms == 60 * S


def test_alert_state_file_round_trip_is_atomic_and_keeps_nan(tmp_path):
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    tracker.update(0, conditions(for_ms=0))
    incidents.update(0, tracker.alerts)
    state = AlertStateFile(tmp_path / "alerts.json")
    state.save(tracker, incidents, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["alerts.json"]  # no temporary file left behind
    assert json.loads((tmp_path / "alerts.json").read_text())["version"] == 1
    tracker2, incidents2 = AlertTracker(), IncidentManager(TOPOLOGY)
    assert state.load(tracker2, incidents2) == 1
    [alert] = tracker2.alerts.values()
    [original] = tracker.alerts.values()
    assert alert.fingerprint == original.fingerprint and alert.fired_at_ms == 0 and alert.state == "firing"
    assert math.isnan(alert.resolved_at_ms if alert.resolved_at_ms is not None else math.nan)
    assert [i.id for i in incidents2.incidents.values()] == [i.id for i in incidents.incidents.values()]
    assert incidents2.incidents[next(iter(incidents2.incidents))].root_causes[0].node == "post"
    # numbering goes on after the restored incidents
    assert incidents2._new_id(0).endswith("-0002")
    (tmp_path / "alerts.json").write_text("{not json")
    with pytest.raises(ConfigError, match="alerts.json: cannot restore alert state"):
        state.load(AlertTracker(), IncidentManager(TOPOLOGY))


RESTART_RULES = """
groups:
  - name: availability
    rules:
      - alert: TargetDown
        expr: up == 0
        for: 3s
        labels: {severity: critical, signal: up}
        annotations: {summary: "{{ $labels.job }} is down"}
"""


def test_restart_keeps_firing_alert_and_its_incident_without_paging_again(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RESTART_RULES)
    t0 = 1_800_000_000_000
    now = {"ms": t0}
    config = load_config(None, data_dir=str(tmp_path / "data"), scrape_interval="1s", rules_file=str(rules),
                         route={"receiver": "log", "group_wait": "0s"})  # page at once

    def run(pipeline, seconds):
        for _ in range(seconds):
            now["ms"] += S
            pipeline.store.append([Sample("up", {"job": "postgres", "instance": "db:5432"}, now["ms"], 0.0)])
            pipeline.evaluate(now["ms"])

    first = Pipeline(config, targets=[], clock=lambda: now["ms"] / 1000)
    run(first, 5)
    [alert] = first.tracker.alerts.values()
    assert alert.state == "firing" and alert.fired_at_ms == t0 + 4 * S
    assert len(first.outbox) == 1  # one page
    first.close()

    second = Pipeline(config, targets=[], clock=lambda: now["ms"] / 1000)  # a real restart: same data dir
    [restored] = second.tracker.alerts.values()
    assert (restored.fingerprint, restored.state, restored.fired_at_ms, restored.active_at_ms) == \
        (alert.fingerprint, "firing", t0 + 4 * S, t0 + 1 * S)
    # readers (API, wall screen) see the restored incident before the first evaluation
    assert [i["id"] for i in second.snapshot.incidents] == list(second._incident_views) and len(second._incident_views) == 1
    run(second, 10)
    assert second.outbox == []  # still firing, same incident: not paged again
    [api] = second.snapshot.alerts
    assert api["state"] == "firing" and api["startsAt"] == "2027-01-15T08:00:04.000Z"
    assert len(second.snapshot.incidents) == 1
    second.close()


def test_fault_spreading_from_postgres_is_one_incident_rooted_at_postgres(recorded):
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY, resolve_after_ms=60 * S, onset_tolerance_ms=2 * S)
    evaluate(recorded, tracker, incidents, 0, {"postgres": 40})
    evaluate(recorded, tracker, incidents, 1 * S, {"postgres": 40, "user": 20})
    evaluate(recorded, tracker, incidents, 3 * S, {"postgres": 40, "user": 20, "gateway": 8, "gift": 12})
    for t in range(4, 16):
        evaluate(recorded, tracker, incidents, t * S, {"postgres": 40, "user": 20, "gateway": 8, "gift": 12})
    [incident] = incidents.incidents.values()
    assert incident.status == "open"
    assert [c.node for c in incident.root_causes][0] == "postgres"
    assert set(incident.nodes) == {"postgres", "user", "gateway", "gift"}
    assert set(incident.impacted_businesses) == set(TOPOLOGY.impacted_businesses("postgres"))
    # the victims say what explains them
    user = next(c for c in incident.root_causes if c.node == "user")
    assert "postgres" in user.reasons[0]


def test_unrelated_faults_stay_separate_and_incidents_resolve_after_quiet_time(recorded):
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY, resolve_after_ms=30 * S)
    for t in range(0, 12):
        evaluate(recorded, tracker, incidents, t * S, {"kafka": 30, "redis": 30})  # two infra nodes: no path between them
    assert sorted(i.nodes[0] for i in incidents.incidents.values()) == ["kafka", "redis"]
    t = 12  # the rule holds its alerts for a while after the last anomalous evaluation (its 30 s window)
    while any(a.state != "resolved" for a in tracker.alerts.values()):
        assert t <= 12 + 31, "the alerts outlived their rule's hold"
        evaluate(recorded, tracker, incidents, t * S, {})
        t += 1
    quiet_from = t - 1  # the evaluation that resolved the alerts
    for t in range(quiet_from + 1, quiet_from + 30):
        evaluate(recorded, tracker, incidents, t * S, {})
    assert all(i.status == "open" for i in incidents.incidents.values())  # quiet for 29 s < 30 s
    changed = evaluate(recorded, tracker, incidents, (quiet_from + 30) * S, {})
    assert {i.status for i in changed} == {"resolved"} and len(changed) == 2


def test_an_alert_linking_two_incidents_merges_them_into_the_oldest(recorded):
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    for t in range(0, 11):
        evaluate(recorded, tracker, incidents, t * S, {"kafka": 30})
    for t in range(11, 22):
        evaluate(recorded, tracker, incidents, t * S, {"kafka": 30, "redis": 30})
    for t in range(22, 33):
        evaluate(recorded, tracker, incidents, t * S, {"kafka": 30, "redis": 30, "post": 9})  # post depends on both
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


def test_report_has_every_section(recorded):
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    for t in range(0, 11):
        evaluate(recorded, tracker, incidents, t * S, {"postgres": 40, "post": 12})
    [incident] = incidents.incidents.values()
    report = build_report(incident, tracker.alerts)
    assert report["summary"].startswith("likely root cause postgres")
    top = report["root_causes"][0]
    assert top["node"] == "postgres"
    assert top["evidence"][0]["series"] == 'job:latency_p99_seconds{job="postgres"}'
    assert top["evidence"][0]["baseline"] == 0.02 and top["evidence"][0]["observed"] == 0.3
    md = render_markdown(report)
    for heading in ("## Impact", "## Root-cause candidates", "## Timeline (UTC)", "## Alerts"):
        assert heading in md
    assert "`postgres`" in md


def test_alerts_firing_together_open_one_incident_not_several_merged(recorded):
    # post and live share only redis; fired in one evaluation, redis opens the incident and both join it
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    changed = []
    for t in range(0, 11):
        changed += evaluate(recorded, tracker, incidents, t * S, {"post": 9, "live": 9, "redis": 30})
    assert len(incidents.incidents) == 1
    assert {i.id for i in changed} == {next(iter(incidents.incidents))}


def test_a_new_fault_does_not_join_an_incident_whose_alerts_have_resolved(recorded):
    # post (and its caller gateway) fail, recover; the incident waits out resolve_after. A fault on giftdb-0,
    # linked to post only through gateway, is a second incident; post failing again is the first one.
    tracker, incidents = AlertTracker(), IncidentManager(TOPOLOGY, resolve_after_ms=300 * S)
    for t in range(0, 10):
        evaluate(recorded, tracker, incidents, t * S, {"post": 30, "gateway": 8})
    t = 10
    while any(a.state != "resolved" for a in tracker.alerts.values()):
        evaluate(recorded, tracker, incidents, t * S, {})
        t += 1
    [first] = incidents.open_incidents()
    for t in range(t, t + 10):
        evaluate(recorded, tracker, incidents, t * S, {"giftdb-0": 30})
    assert len(incidents.open_incidents()) == 2
    second = next(i for i in incidents.open_incidents() if i is not first)
    assert second.nodes == ["giftdb-0"] and set(first.nodes) == {"post", "gateway"}
    for t in range(t + 1, t + 5):
        evaluate(recorded, tracker, incidents, t * S, {"giftdb-0": 30, "post": 30})  # post flaps
    assert "post" not in second.nodes and len(incidents.open_incidents()) == 2
