"""The standardized incident report over a real SQLite store: valid against the published JSON Schema,
impact computed from the stored golden signals, MTTD/MTTA/MTTR from an explicit clock, and the Markdown
and self-contained HTML renderings."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from alerting.changes import ChangeEvent, ChangeLog
from alerting.incidents import IncidentManager
from alerting.model import Alert
from alerting.report import SCHEMA_PATH, build_report, render_html, render_markdown, schema
from collectors.samples import Sample
from storage.sqlite import SQLiteStore
from topology.graph import Topology

S, MIN = 1000, 60_000
T0 = 1_800_000_000_000
VALIDATOR = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture
def store(tmp_path):
    """postgres serves 10 requests/s; 10 % fail from T0 - 20 s (the anomaly) to T0 + 60 s."""
    store = SQLiteStore(tmp_path / "opswatch.db", 15 * 86_400_000, clock=lambda: T0 / 1000)
    samples = []
    for t in range(T0 - 15 * MIN, T0 + 5 * MIN, S):
        bad = T0 - 20 * S <= t <= T0 + 60 * S
        samples += [Sample("job:request_rate", {"job": "postgres"}, t, 10.0),
                    Sample("job:error_ratio", {"job": "postgres"}, t, 0.1 if bad else 0.0)]
    store.append(samples)
    yield store
    store.close()


def incident_with_history(tmp_path):
    """An incident on postgres: anomaly at T0-20s, alert at T0, acknowledged at T0+90s, resolved at T0+300s."""
    changes = ChangeLog(tmp_path / "changes.jsonl")
    changes.add(ChangeEvent("c1", "deploy", "postgres", "15.4", "minor upgrade", "dba-team", T0 - 10 * MIN))
    manager = IncidentManager(Topology.load(), changes=changes)
    alert = Alert({"alertname": "ErrorRatioAnomaly", "job": "postgres", "severity": "critical"},
                  {"summary": "postgres errors <b>up</b>"}, "firing", T0 - 20 * S, 9.0, signal="error_ratio",
                  baseline=0.0, observed=0.1, fired_at_ms=T0, max_score=9.0)
    alerts = {alert.fingerprint: alert}
    [incident] = manager.update(T0, alerts)
    manager.record_page(incident, T0 + 2 * S)
    manager.acknowledge(incident.id, T0 + 90 * S, "noc")
    manager.assign(incident.id, T0 + 95 * S, "noc", "alice")
    manager.comment(incident.id, T0 + 100 * S, "alice", "failing over <script>alert(1)</script>")
    alert.state, alert.resolved_at_ms = "resolved", T0 + 60 * S
    manager.resolve(incident.id, T0 + 300 * S, "alice")
    return incident, alerts


def test_the_published_schema_is_valid_draft_2020_12():
    assert json.loads(SCHEMA_PATH.read_text())["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema())


def test_report_numbers_times_and_schema(tmp_path, store):
    incident, alerts = incident_with_history(tmp_path)
    report = build_report(incident, alerts, store, now_ms=T0 + 400 * S)
    VALIDATOR.validate(report)

    assert report["metrics"] == {"mttd_seconds": 20.0, "mtta_seconds": 90.0, "mttr_seconds": 320.0}
    assert report["key_times"] == {"first_anomaly": "2027-01-15T07:59:40.000Z", "first_alert": "2027-01-15T08:00:00.000Z",
                                   "opened": "2027-01-15T08:00:00.000Z", "paged": "2027-01-15T08:00:02.000Z",
                                   "acknowledged": "2027-01-15T08:01:30.000Z", "resolved": "2027-01-15T08:05:00.000Z"}
    # 10 requests/s for the 80 s the alert was active, 10 % of them failed
    impact = report["impact"]
    assert (impact["requests_affected"], impact["requests_failed"], impact["duration_seconds"]) == (800, 80, 320.0)
    assert impact["users_affected"] is None and impact["businesses"] == report["impacted_businesses"] != []
    assert [c["id"] for c in report["preceding_changes"]] == ["c1"]
    assert report["root_causes"][0]["confidence"] == report["root_causes"][0]["score"]
    assert [t["kind"] for t in report["timeline"]] == [
        "anomaly", "opened", "alert", "page", "acknowledged", "assigned", "comment", "resolved"]
    [chart] = report["charts"]
    assert chart["series"] == 'job:error_ratio{job="postgres"}' and 2 <= len(chart["points"]) <= 240
    assert chart["points"][0][0] >= T0 - 20 * S - 10 * MIN


def test_schema_rejects_local_times_and_missing_sections(tmp_path, store):
    incident, alerts = incident_with_history(tmp_path)
    report = build_report(incident, alerts, store, now_ms=T0 + 400 * S)
    VALIDATOR.validate(report)
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        VALIDATOR.validate({**report, "opened_at": "2027-01-15T09:00:00+01:00"})  # times are UTC
    del report["follow_up"]
    with pytest.raises(jsonschema.ValidationError, match="'follow_up' is a required property"):
        VALIDATOR.validate(report)


def test_an_open_incident_without_store_has_unknown_impact_and_no_times_it_has_not_reached(tmp_path):
    manager = IncidentManager(Topology.load())
    alert = Alert({"alertname": "LatencyAnomaly", "job": "redis"}, {}, "firing", T0, 7.0, signal="latency_p99_seconds",
                  fired_at_ms=T0 + 10 * S, max_score=7.0)
    [incident] = manager.update(T0 + 10 * S, {alert.fingerprint: alert})
    report = build_report(incident, {alert.fingerprint: alert}, None, now_ms=T0 + 70 * S)
    VALIDATOR.validate(report)
    assert report["metrics"] == {"mttd_seconds": 10.0, "mtta_seconds": None, "mttr_seconds": None}
    assert report["impact"]["requests_affected"] is None and report["impact"]["duration_seconds"] == 70.0
    assert report["charts"] == [] and report["preceding_changes"] == []


def test_markdown_holds_every_section_in_blameless_wording(tmp_path, store):
    incident, alerts = incident_with_history(tmp_path)
    md = render_markdown(build_report(incident, alerts, store, now_ms=T0 + 400 * S))
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings == ["Impact", "Response times", "Root-cause candidates", "Changes that preceded it",
                        "Timeline (UTC)", "Alerts", "What went well", "What went badly", "Action items"]
    assert "blameless" in md
    assert "| MTTA (opened to acknowledged) | 90 s |" in md
    assert "Requests affected: 800; failed: 80" in md
    assert "deploy of `postgres` to 15.4 by dba-team, 580 s before the first anomaly" in md
    assert "2027-01-15T08:01:40.000Z [comment] alice: failing over" in md
    assert "| _(to fill in)_ | | |" in md


def test_html_is_self_contained_with_svg_charts_and_escapes_what_people_wrote(tmp_path, store):
    incident, alerts = incident_with_history(tmp_path)
    html = render_html(build_report(incident, alerts, store, now_ms=T0 + 400 * S))
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 1
    assert re.search(r"<svg[^>]*>.*<path", html, flags=re.S), "the evidence chart has no drawn path"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import|<link|<script""",
                         html, flags=re.I), "the page loads something from outside"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "postgres errors &lt;b&gt;up&lt;/b&gt;" in html
    for section in ("Impact", "Response times", "Root-cause candidates", "Evidence charts", "Changes that preceded it",
                    "Timeline (UTC)", "What went well", "What went badly", "Action items"):
        assert f">{section}</h" in html
