"""``opswatch template render`` as a real process, over a data directory holding stored alerts and
incidents (``alerts.json`` written by the alert state file, as the pipeline writes it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertStateFile, AlertTracker
from alerting.notifiers.webhook import verify_signature
from tests.unit.test_notify import one_incident
from topology.graph import Topology

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir(tmp_path):
    incident, alerts = one_incident()
    tracker, incidents = AlertTracker(), IncidentManager(Topology.load())
    tracker.alerts = alerts
    incidents.restore([incident])
    AlertStateFile(tmp_path / "alerts.json").save(tracker, incidents, 11_000)
    return tmp_path, incident.id


def opswatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opswatch", "template", "render", *args], check=False,
                          capture_output=True, text=True, timeout=120)


def test_default_title_and_text_without_a_configuration(data_dir):
    directory, incident_id = data_dir
    result = opswatch("--data-dir", str(directory))
    assert result.returncode == 0, result.stderr
    assert f"[FIRING:1] {incident_id} warning: gift impacting send_gift" in result.stdout
    assert "- [firing] ErrorRatioAnomaly on gift: gift: error ratio" in result.stdout


def test_every_integration_of_a_receiver_and_a_template_file(data_dir, tmp_path):
    directory, incident_id = data_dir
    config = tmp_path / "opswatch.yaml"
    config.write_text("""
receivers:
  - name: oncall
    webhook_configs: [{url: "http://127.0.0.1:9/hook", hmac_secret: preview-secret}]
    slack_configs: [{api_url: "https://hooks.slack.invalid/services/T/B/X", channel: "#oncall",
                     title: "{{ incident.id }} on {{ commonLabels.job }}"}]
    email_configs: [{to: oncall@example.com, from: opswatch@example.com, smarthost: "smtp.example.com:587",
                     headers: {Subject: "page: {{ incident.id }}"}}]
  - name: other
""")
    result = opswatch("--data-dir", str(directory), "--config", str(config), "--receiver", "oncall",
                      "--incident", incident_id)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    webhook, slack, email = (out.split(f"== receiver 'oncall': {kind}_configs[0] ==")[1] for kind in
                             ("webhook", "slack", "email"))
    headers, _, body = webhook.split("== receiver")[0].strip().partition("\n\n")
    fields = dict(line.split(": ", 1) for line in headers.splitlines()[1:])
    sent = json.loads(body)
    assert sent["version"] == "4" and sent["receiver"] == "oncall"
    # The shown signature is the one the receiver would check (over the compact body on the wire).
    wire = json.dumps(sent, separators=(",", ":")).encode()
    verify_signature(b"preview-secret", wire, fields["X-OpsWatch-Timestamp"], fields["X-OpsWatch-Signature"],
                     now=int(fields["X-OpsWatch-Timestamp"]))
    message = json.loads(slack.split("== receiver")[0].split("\n\n", 1)[1])
    assert message["text"] == f"{incident_id} on gift" and message["channel"] == "#oncall"
    assert f"Subject: page: {incident_id}" in email and "Likely root cause: gift" in email
    assert "'other'" not in out

    template = tmp_path / "brief.j2"
    template.write_text("{{ receiver }}|{{ incident.id }}|{{ alerts | length }}|{{ commonLabels.job | upper }}")
    result = opswatch("--data-dir", str(directory), "--config", str(config), "--receiver", "oncall",
                      "--template", str(template))
    assert result.returncode == 0 and result.stdout.strip() == f"oncall|{incident_id}|1|GIFT"


@pytest.mark.parametrize("args, message", [
    (["--incident", "INC-nope"], "--incident 'INC-nope' is not in"),
    (["--receiver", "pager"], "--receiver 'pager' is not a receiver"),
    (["--template", "missing.j2"], "--template missing.j2: cannot read"),
])
def test_mistakes_are_named(data_dir, args, message):
    directory, _ = data_dir
    result = opswatch("--data-dir", str(directory), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_data_dir_without_alerts_is_named(tmp_path):
    result = opswatch("--data-dir", str(tmp_path / "empty"))
    assert result.returncode == 2 and "alerts.json: no stored alerts" in result.stderr
