"""Alerts from Prometheus and Alertmanager (alerting/external.py): parsing with errors by index and field,
Alertmanager's start/end rules, resolve timeouts, node mapping and topology grouping, with an explicit clock."""

from __future__ import annotations

import pytest

from alerting.external import (
    AlertIntake,
    IntakeError,
    parse_postable_alerts,
    parse_webhook,
)
from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertStateFile, AlertTracker
from alerting.model import fingerprint, parse_rfc3339, rfc3339
from topology.graph import Topology

TOPOLOGY = Topology.load()
T0 = 1_800_000_000_000  # ms
S, M = 1000, 60_000


def at(ms: int) -> str:
    return rfc3339(ms)


def postable(labels: dict, starts: int | None = None, ends: int | None = None, **extra) -> dict:
    alert = {"labels": labels, "annotations": {"summary": "s"}, "generatorURL": "http://prom:9090/graph"}
    if starts is not None:
        alert["startsAt"] = at(starts)
    if ends is not None:
        alert["endsAt"] = at(ends)
    return {**alert, **extra}


def receive(intake, tracker, body, now_ms, source="api"):
    alerts, problems = (parse_postable_alerts if source == "api" else parse_webhook)(body)
    assert problems == []
    return intake.receive(tracker, alerts, source, now_ms)


def test_prometheus_alert_fires_with_its_start_and_resolves_when_ends_at_passes():
    tracker, intake = AlertTracker(), AlertIntake(TOPOLOGY)
    labels = {"alertname": "PostgresDown", "service": "postgres", "severity": "critical"}
    changed, refused = receive(intake, tracker, [postable(labels, T0 - 30 * S, T0 + 4 * M)], T0)
    [alert] = changed
    assert refused == [] and alert.state == "firing" and alert.source == "api"
    assert alert.fingerprint == fingerprint(labels) and alert.node == "postgres"
    assert alert.to_api()["startsAt"] == at(T0 - 30 * S) and alert.generator_url == "http://prom:9090/graph"

    tracker.update(T0 + 3 * M, [], set())  # no OpsWatch rule touches it; still before endsAt
    assert alert.state == "firing"
    # Prometheus re-sends with the same startsAt and a later endsAt: one alert, end pushed back
    changed, _ = receive(intake, tracker, [postable(labels, T0 - 30 * S, T0 + 7 * M)], T0 + 3 * M)
    assert changed == [] and tracker.alerts[alert.fingerprint] is alert and alert.ends_at_ms == T0 + 7 * M
    assert tracker.update(T0 + 6 * M, [], None) == []
    assert tracker.update(T0 + 7 * M, [], None) == [alert]
    assert alert.state == "resolved" and alert.resolved_at_ms == T0 + 7 * M


def test_missing_times_follow_alertmanager_and_resolve_timeout_applies():
    tracker, intake = AlertTracker(), AlertIntake(TOPOLOGY, resolve_timeout_ms=5 * M)
    [alert], _ = receive(intake, tracker, [{"labels": {"alertname": "A", "job": "redis"}}], T0)
    assert alert.active_at_ms == T0 and alert.ends_at_ms == T0 + 5 * M  # startsAt = now, endsAt = now + timeout
    tracker.update(T0 + 5 * M - 1, [], None)
    assert alert.state == "firing"
    tracker.update(T0 + 5 * M, [], None)
    assert alert.state == "resolved"
    # only endsAt given, in the past: startsAt = endsAt, stored resolved, joins no incident
    [old], _ = receive(intake, tracker, [{"labels": {"alertname": "B"}, "endsAt": at(T0 - M)}], T0)
    assert (old.state, old.active_at_ms, old.resolved_at_ms) == ("resolved", T0 - M, T0 - M)


def test_explicit_resolve_and_refire_after_resolution():
    tracker, intake = AlertTracker(), AlertIntake(TOPOLOGY)
    labels = {"alertname": "A", "service": "gift"}
    [alert], _ = receive(intake, tracker, [postable(labels, T0, T0 + 4 * M)], T0)
    [same], _ = receive(intake, tracker, [postable(labels, T0, T0 + 10 * S)], T0 + 10 * S)  # Prometheus resolved it
    assert same is alert and alert.state == "resolved" and alert.resolved_at_ms == T0 + 10 * S
    [again], _ = receive(intake, tracker, [postable(labels, T0 + M, T0 + 5 * M)], T0 + M)
    assert again is not alert and again.state == "firing" and again.active_at_ms == T0 + M


def test_webhook_alerts_use_status_and_their_own_timeout():
    tracker = AlertTracker()
    intake = AlertIntake(TOPOLOGY, resolve_timeout_ms=5 * M, webhook_resolve_timeout_ms=250 * M)
    labels = {"alertname": "Slow", "service": "feed"}
    firing = {"version": "4", "status": "firing", "receiver": "opswatch", "groupKey": "{}:{}", "alerts": [
        {"status": "firing", "labels": labels, "annotations": {}, "startsAt": at(T0 - M),
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint(labels)}]}
    [alert], _ = receive(intake, tracker, firing, T0, source="webhook")
    assert alert.source == "webhook" and alert.ends_at_ms == T0 + 250 * M and alert.node == "feed"
    tracker.update(T0 + 100 * M, [], None)
    assert alert.state == "firing"  # Alertmanager re-sends only every repeat_interval: no 5 m timeout here
    resolved = {**firing, "status": "resolved",
                "alerts": [{**firing["alerts"][0], "status": "resolved", "endsAt": at(T0 + 100 * M)}]}
    [same], _ = receive(intake, tracker, resolved, T0 + 101 * M, source="webhook")
    assert same is alert and alert.state == "resolved" and alert.resolved_at_ms == T0 + 100 * M


@pytest.mark.parametrize("labels, node", [
    ({"alertname": "A", "service": "postgres", "job": "node"}, "postgres"),
    ({"alertname": "A", "service": "billing", "job": "redis"}, "redis"),  # first label naming a known node
    ({"alertname": "A", "node": "kafka"}, "kafka"),
    ({"alertname": "A", "service": "billing"}, "billing"),  # unknown to the topology: its own key
    ({"alertname": "DiskFull", "instance": "h1"}, "DiskFull"),  # none of the labels: by alertname
])
def test_node_mapping(labels, node):
    assert AlertIntake(TOPOLOGY).node_of(labels) == node


def test_configured_node_labels():
    intake = AlertIntake(TOPOLOGY, node_labels=["app"])
    assert intake.node_of({"alertname": "A", "app": "gift", "service": "postgres"}) == "gift"


def test_external_alerts_join_topology_grouping_and_unmapped_stay_apart():
    tracker, intake = AlertTracker(), AlertIntake(TOPOLOGY)
    incidents = IncidentManager(TOPOLOGY)
    body = [postable({"alertname": "PostgresDown", "service": "postgres"}, T0, T0 + 4 * M),
            postable({"alertname": "GiftErrors", "service": "gift"}, T0 + 5 * S, T0 + 4 * M),
            postable({"alertname": "BillingDown", "service": "billing"}, T0, T0 + 4 * M),
            postable({"alertname": "DiskFull", "instance": "h1"}, T0, T0 + 4 * M)]
    receive(intake, tracker, body, T0 + 10 * S)
    incidents.update(T0 + 10 * S, tracker.alerts)
    groups = sorted(sorted(i.nodes) for i in incidents.open_incidents())
    assert groups == [["DiskFull"], ["billing"], ["gift", "postgres"]]
    [topo] = [i for i in incidents.open_incidents() if "postgres" in i.nodes]
    assert topo.root_causes[0].node == "postgres" and "send_gift" in topo.impacted_businesses


def test_alerts_from_rules_and_outside_do_not_overwrite_each_other():
    tracker, intake = AlertTracker(), AlertIntake(TOPOLOGY)
    from alerting.rules import Condition

    rule_labels = {"alertname": "TargetDown", "job": "redis"}
    tracker.update(T0, [Condition(rule_labels, {}, 1.0, "", None)], {"TargetDown"})
    _, refused = receive(intake, tracker, [postable(rule_labels, T0, T0 + M)], T0)
    assert len(refused) == 1 and "[0]" in refused[0] and "TargetDown" in refused[0]
    tracker.update(T0 + S, [], {"TargetDown"})  # the rule alert resolves: the labels are free again
    assert receive(intake, tracker, [postable(rule_labels, T0, T0 + M)], T0 + S)[1] == []
    assert tracker.alerts[fingerprint(rule_labels)].source == "api"
    # an OpsWatch evaluation without the external alert's name does not resolve it
    receive(intake, tracker, [postable({"alertname": "X", "job": "redis"}, T0, T0 + 4 * M)], T0)
    tracker.update(T0 + 2 * S, [], {"TargetDown", "X"})
    assert {a.name: a.state for a in tracker.alerts.values()} == {"TargetDown": "firing", "X": "firing"}


def test_max_alerts_refuses_new_ones_and_keeps_the_rest():
    tracker, intake = AlertTracker(), AlertIntake(TOPOLOGY, max_alerts=2)
    body = [{"labels": {}}] + [postable({"alertname": f"A{i}"}, T0, T0 + M) for i in range(3)]
    alerts, problems = parse_postable_alerts(body)
    changed, refused = intake.receive(tracker, alerts, "api", T0)
    assert len(problems) == 1 and len(changed) == 2
    assert len(refused) == 1 and refused[0].startswith("[3]: 2 external alerts are active already (intake.max_alerts)")
    # a resolved one frees a place
    receive(intake, tracker, [postable({"alertname": "A0"}, T0, T0 + S)], T0 + S)
    assert receive(intake, tracker, [postable({"alertname": "A2"}, T0, T0 + M)], T0 + S)[1] == []


@pytest.mark.parametrize("item, field", [
    ({}, "[0].labels: Field required"),
    ({"labels": {}}, "[0].labels: Dictionary should have at least 1 item"),
    ({"labels": {"job": 5}}, "[0].labels.job: Input should be a valid string"),
    ({"labels": {"bad-name": "x"}}, "[0].labels.bad-name (the name): String should match pattern"),
    ({"labels": {"a": "b"}, "annotations": ["x"]}, "[0].annotations: Input should be a valid dictionary"),
    ({"labels": {"a": "b"}, "startsAt": "yesterday"}, "[0].startsAt: 'yesterday' is not an RFC 3339 time"),
    ({"labels": {"a": "b"}, "startsAt": "2026-11-23T10:00:00"}, "[0].startsAt: '2026-11-23T10:00:00' is not an RFC"),
    ({"labels": {"a": "b"}, "endsAt": 1700000000}, "[0].endsAt: must be an RFC 3339 time string"),
    ({"labels": {"a": "b"}, "startsAt": "2026-11-23T10:00:00Z", "endsAt": "2026-11-23T09:00:00Z"},
     "[0].endsAt: is before startsAt"),
    ({"labels": {"a": "b"}, "generatorURL": 3}, "[0].generatorURL: Input should be a valid string"),
    ("not an alert", "[0]: Input should be a valid dictionary"),
])
def test_bad_postable_alert_is_named_and_the_others_are_kept(item, field):
    good = postable({"alertname": "Good"}, T0, T0 + M)
    alerts, problems = parse_postable_alerts([item, good])
    assert [a.labels for a in alerts] == [{"alertname": "Good"}]
    assert len(problems) == 1 and problems[0].startswith(field), problems


def test_postable_body_must_be_a_list():
    with pytest.raises(IntakeError, match="body: must be a JSON list of alerts"):
        parse_postable_alerts({"labels": {"a": "b"}})


@pytest.mark.parametrize("change, message", [
    ({"version": "3"}, "version: Input should be '4'"),
    ({"alerts": None}, "alerts: Input should be a valid list"),
    ({"status": "ok"}, "status: Input should be 'firing' or 'resolved'"),
])
def test_bad_webhook_envelope_is_refused_whole(change, message):
    payload = {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"a": "b"}}], **change}
    with pytest.raises(IntakeError) as info:
        parse_webhook(payload)
    assert message in str(info.value)


def test_bad_webhook_alert_is_named():
    payload = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"a": "b"}}, {"status": "pending", "labels": {"a": "c"}}]}
    alerts, problems = parse_webhook(payload)
    assert len(alerts) == 1 and problems == ["alerts[1].status: Input should be 'firing' or 'resolved' (got 'pending')"]


def test_nanosecond_times_and_offsets_parse():
    [alert], _ = parse_postable_alerts([{"labels": {"a": "b"}, "startsAt": "2026-11-23T18:00:00.123456789+01:00"}])
    assert alert.starts_at_ms == parse_rfc3339("2026-11-23T17:00:00.123Z")


def test_external_alert_survives_a_restart(tmp_path):
    tracker, intake = AlertTracker(), AlertIntake(TOPOLOGY)
    incidents = IncidentManager(TOPOLOGY)
    receive(intake, tracker, [postable({"alertname": "A", "service": "postgres"}, T0, T0 + 4 * M)], T0)
    incidents.update(T0, tracker.alerts)
    AlertStateFile(tmp_path / "alerts.json").save(tracker, incidents, T0)
    restored, restored_incidents = AlertTracker(), IncidentManager(TOPOLOGY)
    AlertStateFile(tmp_path / "alerts.json").load(restored, restored_incidents)
    [alert] = restored.alerts.values()
    assert (alert.source, alert.node, alert.ends_at_ms) == ("api", "postgres", T0 + 4 * M)
    restored.update(T0 + 4 * M, [], None)
    assert alert.state == "resolved"


def test_pipeline_groups_received_alerts_at_its_next_evaluation(tmp_path):
    from opswatch.config import load_config
    from opswatch.pipeline import Pipeline

    pipeline = Pipeline(load_config(None, data_dir=str(tmp_path)), targets=[], clock=lambda: T0 / 1000)
    try:
        body = [postable({"alertname": "PostgresDown", "service": "postgres"}, T0, T0 + 4 * M), {"labels": {}}]
        alerts, problems = parse_postable_alerts(body)
        assert pipeline.receive_alerts(alerts, "api", T0) == [] and len(problems) == 1
        assert pipeline.incidents.open_incidents() == []  # grouping waits for the evaluation
        pipeline.evaluate(T0 + S)
        [incident] = pipeline.snapshot.incidents
        assert incident["root_causes"][0]["node"] == "postgres" and incident["alerts"][0]["source"] == "api"
        assert [a["labels"]["alertname"] for a in pipeline.snapshot.alerts] == ["PostgresDown"]
        pipeline.evaluate(T0 + 4 * M)  # endsAt passed without a re-send
        assert pipeline.snapshot.alerts[0]["state"] == "resolved"
    finally:
        pipeline.close()


@pytest.mark.parametrize("text, fragment", [
    ("intake: {node_label: [app]}", "key 'intake.node_label' is not a known setting; did you mean 'node_labels'?"),
    ("intake: {resolve_timeout: soon}", "key 'intake.resolve_timeout': duration 'soon' is not like 15s"),
    ("intake: {node_labels: []}", "key 'intake.node_labels': List should have at least 1 item"),
    ("topology_discovery: {callee_lable: to}", "did you mean 'callee_label'?"),
])
def test_intake_and_discovery_config_errors(tmp_path, text, fragment):
    from opswatch.config import load_config
    from opswatch.errors import ConfigError

    path = tmp_path / "opswatch.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), str(info.value)


def test_intake_config_reaches_the_pipeline(tmp_path):
    from opswatch.config import load_config
    from opswatch.pipeline import Pipeline

    path = tmp_path / "opswatch.yaml"
    path.write_text(f"data_dir: {tmp_path}\nintake: {{node_labels: [app], resolve_timeout: 90s, "
                    f"webhook_resolve_timeout: 5h, max_alerts: 7}}\n")
    pipeline = Pipeline(load_config(path), targets=[], clock=lambda: T0 / 1000)
    try:
        intake = pipeline.intake
        assert (intake.node_labels, intake.timeouts_ms, intake.max_alerts) == (
            ("app",), {"api": 90_000, "webhook": 5 * 3600_000}, 7)
    finally:
        pipeline.close()
