"""Notification delivery to a real local HTTP receiver: payload shape, retries, and a receiver that is down."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertTracker
from alerting.notify import NotificationDispatcher, WebhookNotifier, webhook_payload
from alerting.rules import Condition, load_rules
from detection.base import Score
from tests.conftest import WebhookReceiver, free_port
from topology.graph import Topology


def one_incident():
    rule = next(r for r in load_rules() if r.name == "ErrorRatioAnomaly")
    tracker, incidents = AlertTracker(), IncidentManager(Topology.load())
    labels = {"alertname": rule.name, "job": "gift", "signal": "error_ratio", "severity": "warning"}
    for t in range(0, 11):
        score = Score(t * 1000, 0.5, 50.0, 0.0, 0.01)
        tracker.update(t * 1000, [Condition(labels, {"summary": "gift: error ratio"}, 50.0, "error_ratio", score,
                                            rule.for_ms)])
        changed = incidents.update(t * 1000, tracker.alerts)
    return changed[0], tracker.alerts


def deliver(receivers, payload, attempts=3):
    registry = CollectorRegistry()

    async def main():
        dispatcher = NotificationDispatcher(receivers, registry, attempts=attempts, backoff_seconds=0.01)
        worker = asyncio.create_task(dispatcher.run())
        dispatcher.submit(payload)
        await dispatcher.drain(timeout_seconds=10)
        worker.cancel()

    asyncio.run(main())
    return registry


def test_payload_is_alertmanager_webhook_version_4():
    incident, alerts = one_incident()
    payload = webhook_payload(incident, alerts, "oncall", "http://opswatch.example")
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["groupLabels"] == {"incident": incident.id}
    assert payload["commonLabels"]["job"] == "gift"
    [alert] = payload["alerts"]
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"  # Alertmanager's zero time while firing
    assert payload["incident"]["root_causes"] == ["gift"]


def test_webhook_delivery_and_retry_after_server_errors():
    incident, alerts = one_incident()
    receiver = WebhookReceiver(status=503)
    try:
        notifier = WebhookNotifier("oncall", receiver.url, timeout_seconds=2)
        registry = deliver([notifier], webhook_payload(incident, alerts, "", "http://x"), attempts=2)
        assert registry.get_sample_value("opswatch_notifications_total", {"receiver": "oncall", "outcome": "failure"}) == 1
        receiver.status = 200
        registry = deliver([notifier], webhook_payload(incident, alerts, "", "http://x"))
        assert registry.get_sample_value("opswatch_notifications_total", {"receiver": "oncall", "outcome": "success"}) == 1
        [payload] = receiver.payloads
        assert payload["receiver"] == "oncall"
    finally:
        receiver.close()


def test_a_receiver_that_is_down_does_not_stop_the_others():
    incident, alerts = one_incident()
    good = WebhookReceiver()
    try:
        down = WebhookNotifier("down", f"http://127.0.0.1:{free_port()}/hook", timeout_seconds=1)
        up = WebhookNotifier("up", good.url)
        registry = deliver([down, up], webhook_payload(incident, alerts, "", "http://x"), attempts=2)
        assert registry.get_sample_value("opswatch_notifications_total", {"receiver": "down", "outcome": "failure"}) == 1
        assert len(good.payloads) == 1
    finally:
        good.close()
