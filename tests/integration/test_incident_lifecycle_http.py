"""The incident lifecycle and change events over real HTTP, against a real ``opswatch run`` process whose
data directory holds an open incident (saved the way the pipeline saves it), and the ``opswatch incident``
and ``opswatch report`` commands run as subprocesses against it. Restarting the process keeps every change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertStateFile, AlertTracker
from alerting.model import Alert, parse_rfc3339, rfc3339
from alerting.report import schema
from opswatch.processes import stop_process_group
from tests.conftest import free_port
from topology.graph import REFERENCE_PLATFORM, Topology

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests"
ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def seed_incident(data_dir: Path) -> tuple[str, int]:
    """An open incident on postgres whose alert started two minutes ago, saved as ``alerts.json``."""
    now_ms = int(time.time() * 1000)
    alert = Alert({"alertname": "ErrorRatioAnomaly", "job": "postgres", "severity": "critical"},
                  {"summary": "postgres errors"}, "firing", now_ms - 130_000, 9.0, signal="error_ratio",
                  baseline=0.0, observed=0.2, fired_at_ms=now_ms - 120_000, max_score=9.0)
    tracker, incidents = AlertTracker(), IncidentManager(Topology.load())
    tracker.alerts = {alert.fingerprint: alert}
    [incident] = incidents.update(now_ms - 120_000, tracker.alerts)
    AlertStateFile(data_dir / "alerts.json").save(tracker, incidents, now_ms - 120_000)
    return incident.id, alert.active_at_ms


def start_opswatch(spawn, data_dir: Path, port: int) -> tuple[subprocess.Popen, str]:
    """``opswatch run`` scraping its own /metrics, with a token; returns once it answers."""
    config = data_dir / "opswatch.yaml"
    config.write_text(f"api_token: {TOKEN}\nresolve_after: 10m\ntopology_file: {REFERENCE_PLATFORM}\n"
                      f"scrape_configs:\n  - job_name: opswatch\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
    proc = spawn([sys.executable, "-m", "opswatch", "run", "--config", str(config), "--data-dir", str(data_dir),
                  "--port", str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"opswatch run exited with {proc.returncode}"
        try:
            if httpx.get(f"{base}/-/healthy", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("opswatch run did not answer within 60 s")


def post(base: str, path: str, body=None, token: str | None = TOKEN, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{base}{path}", json=body, headers=headers, timeout=10, **kwargs)


def test_lifecycle_and_changes_over_http_survive_a_restart(spawn, tmp_path):
    incident_id, onset_ms = seed_incident(tmp_path)
    port = free_port()
    proc, base = start_opswatch(spawn, tmp_path, port)
    ack = f"/api/v1/incidents/{incident_id}/acknowledge"

    # refused: no token, a wrong token, an unknown incident or action, bodies that do not fit
    assert post(base, ack, {"by": "noc"}, token=None).status_code == 401
    assert post(base, ack, {"by": "noc"}, token="wrong-token-123").status_code == 401
    missing = post(base, "/api/v1/incidents/INC-20000101-0001/acknowledge", {"by": "noc"})
    assert missing.status_code == 404 and "INC-20000101-0001" in missing.json()["error"]
    assert post(base, f"/api/v1/incidents/{incident_id}/reopen", {"by": "noc"}).status_code == 404
    for body, status, named in [
        ({"by": "noc"}, 422, "body.assignee: Field required"),
        ({"by": "noc", "assignee": "alice", "priority": 1}, 422, "body.priority: Extra inputs are not permitted"),
        ({"by": "   ", "assignee": "alice"}, 422, "body.by: String should match pattern"),
        ({"by": ["noc"], "assignee": "alice"}, 422, "body.by: Input should be a valid string"),
    ]:
        r = post(base, f"/api/v1/incidents/{incident_id}/assign", body)
        assert (r.status_code, r.json()["status"]) == (status, "error") and named in r.json()["error"], r.text
    not_json = httpx.post(f"{base}{ack}", content=b"{by: noc", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not a JSON object" in not_json.json()["error"]
    assert post(base, f"/api/v1/incidents/{incident_id}/comment", {"by": "x", "text": "y" * 70_000}).status_code == 413
    assert httpx.get(f"{base}/api/v1/incidents/{incident_id}", timeout=10).json()["data"]["status"] == "open"

    # ack -> assign -> comment -> resolve, each in the timeline with who and when
    started_ms = int(time.time() * 1000)
    assert post(base, ack, {"by": "noc"}).json()["data"]["status"] == "acknowledged"
    assert post(base, ack, {"by": "noc"}).status_code == 409
    assert post(base, f"/api/v1/incidents/{incident_id}/assign", {"by": "noc", "assignee": "alice"}).status_code == 200
    assert post(base, f"/api/v1/incidents/{incident_id}/comment",
                {"by": "alice", "text": "failing over to the replica"}).status_code == 200
    resolved = post(base, f"/api/v1/incidents/{incident_id}/resolve", {"by": "alice"}).json()["data"]
    assert resolved["status"] == "resolved" and resolved["people"] == {
        "acknowledged_by": "noc", "assignee": "alice", "resolved_by": "alice"}
    actions = [t for t in resolved["timeline"] if t["by"]]
    assert [(t["kind"], t["by"]) for t in actions] == [
        ("acknowledged", "noc"), ("assigned", "noc"), ("comment", "alice"), ("resolved", "alice")]
    assert all(t["at"].endswith("Z") and started_ms - 1000 <= parse_rfc3339(t["at"]) <= int(time.time() * 1000) for t in actions)
    assert resolved["metrics"]["mtta_seconds"] >= 120

    # a deploy of postgres five minutes before the first anomaly becomes a candidate cause
    change = {"id": "deploy-42", "kind": "deploy", "node": "postgres", "version": "15.4", "author": "dba-team",
              "description": "minor upgrade", "time": rfc3339(onset_ms - 300_000)}
    assert post(base, "/api/v1/changes", change, token=None).status_code == 401
    assert post(base, "/api/v1/changes", change).status_code == 201
    assert post(base, "/api/v1/changes", change).status_code == 200  # the same id again: stored once
    for bad, named in [({**change, "id": "x1", "node": "nowhere"}, "body.node: 'nowhere' is not a node"),
                       ({**change, "id": "x2", "time": "2026-11-23T10:00:00"}, "body.time: Input should have timezone"),
                       ({**change, "id": "x3", "kind": "reboot"}, "body.kind: Input should be 'deploy' or 'config'")]:
        r = post(base, "/api/v1/changes", bad)
        assert r.status_code == 422 and named in r.json()["error"], r.text
    listed = httpx.get(f"{base}/api/v1/changes", params={"node": "postgres"}, timeout=10).json()["data"]
    assert [c["id"] for c in listed] == ["deploy-42"]
    assert httpx.get(f"{base}/api/v1/changes", params={"start": "yesterday"}, timeout=10).status_code == 400
    report = httpx.get(f"{base}/api/v1/incidents/{incident_id}/report", params={"format": "json"}, timeout=10).json()
    VALIDATOR.validate(report)
    assert [(c["id"], c["seconds_before_onset"]) for c in report["preceding_changes"]] == [("deploy-42", 300.0)]
    html = httpx.get(f"{base}/api/v1/incidents/{incident_id}/report", params={"format": "html"}, timeout=30)
    assert html.headers["content-type"].startswith("text/html") and "failing over to the replica" in html.text
    assert "minor upgrade" in html.text

    # restart: the timeline and the change log are read back
    stop_process_group(proc)
    _, base = start_opswatch(spawn, tmp_path, port)
    again = httpx.get(f"{base}/api/v1/incidents/{incident_id}", timeout=10).json()["data"]
    assert [(t["kind"], t["by"], t["at"]) for t in again["timeline"] if t["by"]] == [
        (t["kind"], t["by"], t["at"]) for t in actions]
    assert again["preceding_changes"][0]["id"] == "deploy-42"
    assert [c["id"] for c in httpx.get(f"{base}/api/v1/changes", timeout=10).json()["data"]] == ["deploy-42"]


def opswatch_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opswatch", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120)


def test_incident_and_report_commands(spawn, tmp_path):
    incident_id, _ = seed_incident(tmp_path)
    _, base = start_opswatch(spawn, tmp_path, free_port())
    server = ["--server", base]

    listed = opswatch_cli("incident", "list", *server)
    assert listed.returncode == 0 and incident_id in listed.stdout and "open" in listed.stdout, listed.stderr
    wrong = opswatch_cli("incident", "ack", incident_id, *server, "--token", "not-the-token", "--by", "cli")
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    done = opswatch_cli("incident", "ack", incident_id, *server, "--token", TOKEN, "--by", "cli")
    assert done.returncode == 0 and f"{incident_id} is acknowledged" in done.stdout, done.stderr
    again = opswatch_cli("incident", "ack", incident_id, *server, "--token", TOKEN, "--by", "cli")
    assert again.returncode == 1 and "HTTP 409" in again.stderr and "only an open incident" in again.stderr
    for args in (["assign", incident_id, "alice"], ["comment", incident_id, "replica promoted"],
                 ["resolve", incident_id]):
        r = opswatch_cli("incident", *args, *server, "--token", TOKEN, "--by", "cli")
        assert r.returncode == 0, r.stderr
    shown = opswatch_cli("incident", "show", incident_id, *server)
    assert shown.returncode == 0 and "assigned to alice by cli" in shown.stdout and "[comment] cli: replica promoted" \
        in shown.stdout
    unreachable = opswatch_cli("incident", "list", "--server", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr

    out = tmp_path / "out" / "report.html"
    r = opswatch_cli("report", incident_id, "--format", "html", *server, "--output", str(out))
    assert r.returncode == 0 and out.read_text().startswith("<!DOCTYPE html>"), r.stderr
    offline = opswatch_cli("report", incident_id, "--format", "json", "--data-dir", str(tmp_path))
    assert offline.returncode == 0, offline.stderr
    report = json.loads(offline.stdout)
    VALIDATOR.validate(report)
    assert report["status"] == "resolved" and report["people"]["assignee"] == "alice"
    md = opswatch_cli("report", incident_id, "--format", "md", "--data-dir", str(tmp_path))
    assert md.returncode == 0 and "## Action items" in md.stdout
    unknown = opswatch_cli("report", "INC-20000101-0001", "--data-dir", str(tmp_path))
    assert unknown.returncode == 1 and incident_id in unknown.stderr
