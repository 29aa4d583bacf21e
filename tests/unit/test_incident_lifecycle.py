"""The incident lifecycle (acknowledge, assign, comment, resolve) with an explicit clock, its persistence
across a restart, and change events listed as candidate causes of the incidents they preceded."""

from __future__ import annotations

import json

import pytest

from alerting.changes import ChangeEvent, ChangeLog
from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertStateFile, AlertTracker
from alerting.model import Alert
from opswatch.config import load_config
from opswatch.pipeline import Pipeline
from topology.graph import Topology

S, MIN = 1000, 60_000
T0 = 1_800_000_000_000
TOPOLOGY = Topology.load()


def firing(job: str, active_ms: int, fired_ms: int) -> Alert:
    return Alert({"alertname": "ErrorRatioAnomaly", "job": job, "severity": "critical"}, {"summary": f"{job} errors"},
                 "firing", active_ms, 9.0, signal="error_ratio", fired_at_ms=fired_ms, max_score=9.0)


def one_incident(manager: IncidentManager, *jobs: str):
    alerts = {a.fingerprint: a for a in (firing(j, T0 - 20 * S, T0) for j in jobs)}
    [incident] = manager.update(T0, alerts)
    return incident, alerts


def test_every_action_lands_in_the_timeline_with_who_what_and_when():
    manager = IncidentManager(TOPOLOGY)
    incident, _ = one_incident(manager, "postgres")
    manager.acknowledge(incident.id, T0 + 90 * S, "noc")
    manager.assign(incident.id, T0 + 100 * S, "noc", " Alice Martin ")
    manager.comment(incident.id, T0 + 110 * S, "alice", "postgres connections saturated;\nfailing over")
    manager.resolve(incident.id, T0 + 300 * S, "alice")
    manager.comment(incident.id, T0 + 400 * S, "bob", "postmortem on Thursday")  # a resolved incident takes comments

    tail = [(e.at_ms - T0, e.kind, e.by, e.text) for e in incident.timeline[-5:]]
    assert tail == [
        (90 * S, "acknowledged", "noc", "acknowledged by noc"),
        (100 * S, "assigned", "noc", "assigned to Alice Martin by noc"),
        (110 * S, "comment", "alice", "alice: postgres connections saturated;\nfailing over"),
        (300 * S, "resolved", "alice", "resolved by alice"),
        (400 * S, "comment", "bob", "bob: postmortem on Thursday"),
    ]
    assert (incident.status, incident.acknowledged_at_ms, incident.acknowledged_by, incident.assignee,
            incident.resolved_at_ms, incident.resolved_by) == (
        "resolved", T0 + 90 * S, "noc", "Alice Martin", T0 + 300 * S, "alice")
    assert (incident.first_anomaly_ms, incident.first_alert_ms) == (T0 - 20 * S, T0)


def test_bad_actions_are_refused_naming_the_field_and_change_nothing():
    manager = IncidentManager(TOPOLOGY)
    incident, _ = one_incident(manager, "postgres")
    before = (len(incident.timeline), incident.version)
    with pytest.raises(ValueError, match="^by: "):
        manager.acknowledge(incident.id, T0, "  ")
    with pytest.raises(ValueError, match="^assignee: "):
        manager.assign(incident.id, T0, "noc", "")
    with pytest.raises(ValueError, match="^text: "):
        manager.comment(incident.id, T0, "noc", " \n")
    with pytest.raises(KeyError):
        manager.comment("INC-19700101-9999", T0, "noc", "hello")
    assert (len(incident.timeline), incident.version, incident.status) == (*before, "open")
    manager.resolve(incident.id, T0 + S, "noc")
    with pytest.raises(ValueError, match="only an open incident can be acknowledged"):
        manager.acknowledge(incident.id, T0 + 2 * S, "noc")
    with pytest.raises(ValueError, match="only an active incident can be resolved"):
        manager.resolve(incident.id, T0 + 2 * S, "noc")


def test_a_merged_incident_points_to_the_one_it_was_merged_into():
    manager = IncidentManager(TOPOLOGY)
    # kafka and postgres are unrelated: two incidents; post depends on both and merges them
    alerts = {a.fingerprint: a for a in (firing("kafka", T0, T0), firing("postgres", T0, T0 + S))}
    manager.update(T0, {k: v for k, v in alerts.items() if v.node == "kafka"})
    manager.update(T0 + S, alerts)
    joining = firing("post", T0 + 2 * S, T0 + 2 * S)
    manager.update(T0 + 2 * S, {**alerts, joining.fingerprint: joining})
    [merged] = [i for i in manager.incidents.values() if i.status == "merged"]
    [kept] = [i for i in manager.incidents.values() if i.status == "open"]
    with pytest.raises(ValueError, match=f"merged into {kept.id}; act on that one"):
        manager.assign(merged.id, T0 + 3 * S, "noc", "alice")


def test_the_lifecycle_and_the_changes_survive_a_restart(tmp_path):
    changes = ChangeLog(tmp_path / "changes.jsonl")
    changes.add(ChangeEvent("c1", "deploy", "postgres", "15.4", "minor upgrade", "dba-team", T0 - 10 * MIN))
    manager = IncidentManager(TOPOLOGY, changes=changes)
    tracker = AlertTracker()
    incident, tracker.alerts = one_incident(manager, "user")
    manager.acknowledge(incident.id, T0 + 60 * S, "noc")
    manager.assign(incident.id, T0 + 61 * S, "noc", "alice")
    manager.comment(incident.id, T0 + 62 * S, "alice", "looking")
    state = AlertStateFile(tmp_path / "alerts.json")
    state.save(tracker, manager, T0 + 62 * S)

    restarted = IncidentManager(TOPOLOGY, changes=ChangeLog(tmp_path / "changes.jsonl"))
    state.load(AlertTracker(), restarted)
    again = restarted.incidents[incident.id]
    assert [(e.kind, e.by, e.text) for e in again.timeline] == [(e.kind, e.by, e.text) for e in incident.timeline]
    assert (again.status, again.assignee, again.acknowledged_at_ms) == ("acknowledged", "alice", T0 + 60 * S)
    assert [c["id"] for c in again.preceding_changes] == ["c1"]
    assert restarted.changes.events() == changes.events()


def test_changes_on_the_nodes_or_their_dependencies_before_the_onset_are_candidate_causes(tmp_path):
    changes = ChangeLog(tmp_path / "changes.jsonl")
    onset = T0 - 20 * S  # the first alert's activeAt
    for event in [
        ChangeEvent("dep", "deploy", "postgres", "15.4", "minor upgrade", "dba-team", onset - 10 * MIN),
        ChangeEvent("own", "config", "user", "", "pool size 50 -> 5", "alice", onset - 2 * MIN),
        ChangeEvent("unrelated", "deploy", "gift", "2.0", "new gift shop", "bob", onset - 3 * MIN),
        ChangeEvent("after", "deploy", "user", "1.1", "after the onset", "bob", onset + S),
        ChangeEvent("too-old", "deploy", "redis", "7.2", "long before", "carol", onset - 61 * MIN),
    ]:
        assert changes.add(event)[1]
    assert changes.add(ChangeEvent("dep", "deploy", "postgres", "x", "resent", "x", 0)) == (changes.events()[1], False)

    manager = IncidentManager(TOPOLOGY, changes=changes)
    incident, _ = one_incident(manager, "user")
    listed = [(c["id"], c["seconds_before_onset"], c["relation"]) for c in incident.preceding_changes]
    assert listed == [("own", 120.0, "on user, a node of this incident"),
                      ("dep", 600.0, "on postgres, a dependency of user")]
    [user] = incident.root_causes
    assert any(r.startswith("changed shortly before: config by alice") and "120 s before" in r for r in user.reasons)

    # a change sent late (after the incident opened) is listed once attached, and only once
    changes.add(ChangeEvent("late", "deploy", "redis", "7.2.1", "patch", "carol", onset - 5 * MIN))
    assert manager.attach_changes(incident) and not manager.attach_changes(incident)
    assert [c["id"] for c in incident.preceding_changes] == ["own", "late", "dep"]
    assert sum(r.startswith("changed shortly before") for r in user.reasons) == 1


def test_a_corrupt_change_log_names_the_file_and_line(tmp_path):
    path = tmp_path / "changes.jsonl"
    good = ChangeEvent("c1", "deploy", "user", "1", "d", "a", T0).to_api()
    path.write_text(json.dumps(good) + "\n{\"id\": \"c2\"}\n")
    with pytest.raises(ValueError, match=f"{path}:2: not a change event"):
        ChangeLog(path)


def test_the_pipeline_is_the_one_write_path_and_persists_every_change(tmp_path):
    clock = [T0 / 1000]
    config = load_config(None, data_dir=str(tmp_path))
    pipeline = Pipeline(config, targets=[], clock=lambda: clock[0])
    incident, pipeline.tracker.alerts = one_incident(pipeline.incidents, "postgres")
    pipeline.incidents.record_page(incident, T0)  # routing pages (Pipeline._route); here by hand
    pipeline._publish(incident, T0)
    clock[0] += 45
    view = pipeline.change_incident(incident.id, "acknowledge", "noc")
    assert view["metrics"]["mtta_seconds"] == 45.0 and view["key_times"]["paged"] == view["opened_at"]
    notified = len(pipeline.outbox)
    pipeline.change_incident(incident.id, "assign", "noc", assignee="alice")
    pipeline.change_incident(incident.id, "comment", "alice", text="failing over")
    assert len(pipeline.outbox) == notified  # assigning and commenting are not paged
    with pytest.raises(ValueError, match="action 'reopen'"):
        pipeline.change_incident(incident.id, "reopen", "noc")
    # a deploy that arrives after the incident opened joins its report
    _, new = pipeline.record_change(ChangeEvent("d1", "deploy", "postgres", "15.4", "upgrade", "dba", T0 - 5 * MIN))
    assert new and [c["id"] for c in pipeline.snapshot.incidents[0]["preceding_changes"]] == ["d1"]
    pipeline.close()

    restarted = Pipeline(config, targets=[], clock=lambda: clock[0])
    [view] = restarted.snapshot.incidents  # readers see the restored incidents before the first evaluation
    assert [(t["kind"], t["by"]) for t in view["timeline"] if t["by"]] == [
        ("acknowledged", "noc"), ("assigned", "noc"), ("comment", "alice")]
    assert view["people"]["assignee"] == "alice" and view["preceding_changes"][0]["id"] == "d1"
    assert json.loads((tmp_path / "reports" / f"{incident.id}.json").read_text())["people"]["assignee"] == "alice"
    restarted.close()
