"""Webhook signatures and the Slack integration against a real local HTTP server; templates; the
receivers' configuration and its errors."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path

import pytest

from alerting.notifiers.base import NotifyError
from alerting.notifiers.build import integrations
from alerting.notifiers.slack import SlackNotifier
from alerting.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    WebhookNotifier,
    verify_signature,
)
from alerting.templates import TemplateError, compile_template, default_template, render
from opswatch.config import load_config
from opswatch.errors import ConfigError
from tests.unit.test_notify import payload, recorder  # noqa: F401  (recorder is a fixture)

SECRET = b"s3cret-shared-with-the-receiver"


def test_webhook_signature_verifies_over_the_exact_body_received(recorder):  # noqa: F811
    hook = recorder(200)
    notifier = WebhookNotifier(hook.url, hmac_secret=SECRET, clock=lambda: 1_700_000_000.0)
    asyncio.run(notifier.send(payload()))
    [(headers, body)] = hook.requests
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()  # independent of sign()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    verify_signature(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=1_700_000_030)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, body.replace(b"firing", b"resolved"), headers[TIMESTAMP_HEADER],
                         headers[SIGNATURE_HEADER], now=1_700_000_030)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(b"another secret", body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], 1_700_000_030)
    with pytest.raises(SignatureError, match="tolerance"):  # a replay an hour later
        verify_signature(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=1_700_003_600)
    with pytest.raises(SignatureError, match="missing"):
        verify_signature(SECRET, body, None, headers[SIGNATURE_HEADER], now=1_700_000_030)


def test_webhook_without_secret_sends_no_signature(recorder):  # noqa: F811
    hook = recorder(200)
    asyncio.run(WebhookNotifier(hook.url).send(payload()))
    [(headers, _)] = hook.requests
    assert SIGNATURE_HEADER not in headers and TIMESTAMP_HEADER not in headers


def test_slack_message_with_default_and_configured_templates(recorder):  # noqa: F811
    hook = recorder(200)
    firing = payload()
    asyncio.run(SlackNotifier(hook.url, channel="#oncall", username="opswatch").send(firing))
    title = compile_template("{{ status }} {{ commonLabels.job }} {{ incident.id }}", "title")
    text = compile_template("{% for a in alerts %}{{ a.annotations.summary }};{% endfor %}", "text")
    asyncio.run(SlackNotifier(hook.url, title=title, text=text).send(payload(status="resolved")))
    default, custom = hook.payloads
    incident_id = firing["incident"]["id"]
    assert default["channel"] == "#oncall" and default["username"] == "opswatch"
    assert default["text"] == f"[FIRING:1] {incident_id} warning: gift impacting send_gift"
    [attachment] = default["attachments"]
    assert attachment["color"] == "danger" and attachment["title_link"] == firing["incident"]["url"]
    assert "Likely root cause: gift" in attachment["text"] and "gift: error ratio" in attachment["text"]
    assert "channel" not in custom
    assert custom["text"] == f"resolved gift {incident_id}" and custom["attachments"][0]["color"] == "good"
    assert custom["attachments"][0]["text"] == "gift: error ratio;"


def test_slack_client_error_is_not_recoverable_and_hides_the_url_path(recorder):  # noqa: F811
    hook = recorder(404)
    with pytest.raises(NotifyError) as info:
        asyncio.run(SlackNotifier(hook.url + "/T0/B0/secret-token").send(payload()))
    assert not info.value.recoverable and "HTTP 404" in str(info.value) and "secret-token" not in str(info.value)
    hook.statuses = [503]
    with pytest.raises(NotifyError) as info:
        asyncio.run(SlackNotifier(hook.url).send(payload()))
    assert info.value.recoverable


def test_default_templates_render_firing_and_resolved():
    title, text = default_template("title"), default_template("text")
    resolved = payload(status="resolved")
    assert render(title, resolved, "title").startswith("[RESOLVED] INC-")
    body = render(text, resolved, "text")
    assert "[resolved] ErrorRatioAnomaly on gift" in body and "Impacted businesses: send_gift" in body
    assert render(title, {"status": "firing", "alerts": []}, "title") == "[FIRING:0] : unknown root cause"


def test_template_errors_name_where():
    with pytest.raises(TemplateError, match=r"slack\.title: line 1: .*"):
        compile_template("{{ status ", "slack.title")
    with pytest.raises(TemplateError, match="No filter named 'shout'"):
        compile_template("{{ status | shout }}", "x")
    assert render(compile_template("{{ status.__class__.__mro__ }}", "t"), {"status": "firing"}, "t") == ""  # sandbox
    with pytest.raises(TemplateError, match="text: ZeroDivisionError"):
        render(compile_template("{{ alerts | length / 0 }}", "text"), {"alerts": []}, "text")
    with pytest.raises(TemplateError, match="text: OverflowError: Range too big"):  # the sandbox bounds work too
        render(compile_template("{{ range(10**9) | list | length }}", "text"), {}, "text")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "opswatch.yaml"
    path.write_text(text)
    return path


def test_receivers_configuration_builds_every_integration(tmp_path):
    (tmp_path / "hook.secret").write_text("file-secret\n")
    config = load_config(write(tmp_path, """
receivers:
  - name: oncall
    webhook_configs:
      - {url: "http://127.0.0.1:9000/hook", hmac_secret_file: hook.secret, timeout: 3s}
      - {url: "http://127.0.0.1:9001/hook", hmac_secret: inline, send_resolved: false}
    slack_configs: [{api_url: "https://hooks.slack.invalid/services/T/B/X", channel: "#oncall", title: "{{ status }}"}]
    email_configs:
      - {to: oncall@example.com, from: opswatch@example.com, smarthost: "smtp.example.com:587",
         headers: {Subject: "{{ incident.id }}"}, require_tls: false}
  - name: log-only
fallback_receiver: log-only
"""))
    assert config.fallback_receiver == "log-only"
    found = integrations(config.receivers[0])
    assert [(i.integration, i.index) for i in found] == [("webhook", 0), ("webhook", 1), ("slack", 0), ("email", 0)]
    assert found[0].secret == b"file-secret" and found[0].timeout == 3.0 and found[1].secret == b"inline"
    assert not found[1].send_resolved and found[0].send_resolved and not found[2].send_resolved
    assert found[3].smarthost == ("smtp.example.com", 587) and found[3].sender == "opswatch@example.com"
    assert integrations(config.receivers[1]) == []


@pytest.mark.parametrize("receivers, expected", [
    ("[{name: a, webhook_url: 'http://x/hook'}]",
     ["receivers.0", "'webhook_url' was replaced", "webhook_configs: [{url: http://x/hook}]"]),
    ("[{name: a, webhook_configs: [{url: 'ftp://x'}]}]", ["receivers.0.webhook_configs.0.url", "http://"]),
    ("[{name: a, webhook_configs: [{url: 'http://x', hmac_secret: s, hmac_secret_file: f}]}]",
     ["receivers.0.webhook_configs.0", "not both"]),
    ("[{name: a, webhook_configs: [{url: 'http://x', hmac_secret_file: missing.secret}]}]",
     ["receivers.0.webhook_configs.0", "cannot read", "missing.secret"]),
    ("[{name: a, slack_configs: [{api_url: 'http://x', title: '{{ status '}]}]",
     ["receivers.0.slack_configs.0.title", "line 1"]),
    ("[{name: a, slack_configs: [{api_url: 'http://x', chanel: '#a'}]}]",
     ["receivers.0.slack_configs.0.chanel", "did you mean 'channel'"]),
    ("[{name: a, email_configs: [{to: a@b.c, from: d@e.f, smarthost: smtp.example.com}]}]",
     ["receivers.0.email_configs.0.smarthost", "host:port"]),
    ("[{name: a, email_configs: [{to: a@b.c, from: d@e.f, smarthost: 'h:25', headers: {Subject: '{% if %}'}}]}]",
     ["receivers.0.email_configs.0.headers", "headers.Subject"]),
    ("[{name: a}, {name: a}]", ["name 'a' is used more than once"]),
    ("[{name: a}]\nfallback_receiver: b", ["fallback_receiver 'b' is not a receiver", "'a'"]),
])
def test_receiver_configuration_errors_name_the_key(tmp_path, receivers, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"receivers: {receivers}\n"))
    message = str(info.value)
    assert "opswatch.yaml" in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"
