"""The notification dispatcher against real local HTTP receivers and a real SQLite notification log:
payload shape, retries with backoff, the fallback receiver, dedup, and restarts on the same log file."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from alerting.incidents import IncidentManager
from alerting.lifecycle import AlertTracker
from alerting.notification_log import NotificationLog, content_hash
from alerting.notifiers.webhook import WebhookNotifier
from alerting.notify import LOG_RECEIVER, NotificationDispatcher, webhook_payload
from alerting.rules import Condition, load_rules
from detection.base import Score
from opswatch.errors import ConfigError
from tests.conftest import free_port
from topology.graph import Topology


class Recorder:
    """A real HTTP server on loopback answering ``statuses`` in turn (then the last one forever), after
    ``delay`` seconds, and recording every request's headers and raw body."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses) or [200]
        self.delay = 0.0
        self.busy = self.most_busy = 0  # requests being answered now, and the most at once
        lock = threading.Lock()
        self.requests: list[tuple[dict, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    recorder.busy += 1
                    recorder.most_busy = max(recorder.most_busy, recorder.busy)
                time.sleep(recorder.delay)
                with lock:
                    recorder.busy -= 1
                status = recorder.statuses.pop(0) if len(recorder.statuses) > 1 else recorder.statuses[0]
                recorder.requests.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def payloads(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    made: list[Recorder] = []

    def make(*statuses: int) -> Recorder:
        made.append(Recorder(*statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def one_incident():
    rule = next(r for r in load_rules() if r.name == "ErrorRatioAnomaly")
    tracker, incidents = AlertTracker(), IncidentManager(Topology.load())
    labels = {"alertname": rule.name, "job": "gift", "signal": "error_ratio", "severity": "warning"}
    incident = None
    for t in range(11):
        score = Score(t * 1000, 0.5, 50.0, 0.0, 0.01)
        tracker.update(t * 1000, [Condition(labels, {"summary": "gift: error ratio"}, 50.0, "error_ratio", score,
                                            rule.for_ms)])
        incident = next(iter(incidents.update(t * 1000, tracker.alerts)), incident)  # opens once the rule fires
    return incident, tracker.alerts


def payload(receiver: str = "oncall", status: str = "firing") -> dict:
    incident, alerts = one_incident()
    body = webhook_payload(incident, alerts, receiver, "http://opswatch.example")
    if status == "resolved":
        body["status"] = "resolved"
        body["alerts"] = [{**a, "status": "resolved"} for a in body["alerts"]]
    return body


def dispatcher(tmp_path, receivers, registry=None, **kwargs) -> NotificationDispatcher:
    kwargs.setdefault("backoff_seconds", 0.01)
    return NotificationDispatcher(receivers, registry or CollectorRegistry(), NotificationLog(tmp_path / "n.db"),
                                  **kwargs)


def run(d: NotificationDispatcher, *payloads: dict, timeout: float = 10) -> None:
    """Submit ``payloads``, run the worker until nothing is pending, stop it."""
    async def main():
        worker = asyncio.create_task(d.run())
        for p in payloads:
            d.submit(p)
        await d.drain(timeout_seconds=timeout)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    asyncio.run(main())


def value(registry, name, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_payload_is_alertmanager_webhook_version_4():
    incident, alerts = one_incident()
    body = webhook_payload(incident, alerts, "oncall", "http://opswatch.example")
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "oncall"
    assert body["groupLabels"] == {"incident": incident.id}
    assert body["commonLabels"]["job"] == "gift"
    [alert] = body["alerts"]
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"  # Alertmanager's zero time while firing
    assert body["incident"]["root_causes"] == ["gift"]


def test_retries_after_server_errors_then_success_with_metrics(tmp_path, recorder):
    hook = recorder(503, 502, 200)
    registry = CollectorRegistry()
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier(hook.url, timeout_seconds=2)]}, registry, attempts=3)
    run(d, payload())
    assert len(hook.requests) == 3 and hook.payloads[-1]["receiver"] == "oncall"
    labels = {"receiver": "oncall", "integration": "webhook"}
    assert value(registry, "opswatch_notification_requests_total", **labels, outcome="failure") == 2
    assert value(registry, "opswatch_notification_requests_total", **labels, outcome="success") == 1
    assert value(registry, "opswatch_notifications_total", **labels, outcome="success") == 1
    assert value(registry, "opswatch_notification_latency_seconds_count", **labels) == 3
    [row] = d.log.rows()
    assert (row["state"], row["attempts"]) == ("sent", 3)


def test_backoff_doubles_and_is_stored_with_the_injected_clock(tmp_path, recorder):
    hook = recorder(503)
    now = [1_000_000.0]
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier(hook.url)]}, attempts=4, backoff_seconds=30,
                   clock=lambda: now[0])
    delays = []

    async def main():
        worker = asyncio.create_task(d.run())
        d.submit(payload())
        for _ in range(3):  # each attempt fails; the next one is due 30 s, then 60 s, then 120 s later
            while len(hook.requests) == len(delays):
                await asyncio.sleep(0.01)
            while d._inflight:
                await asyncio.sleep(0.01)
            [row] = d.log.rows()
            delays.append(row["next_attempt_ms"] - int(now[0] * 1000))
            now[0] += delays[-1] / 1000
            d._wake.set()
        while d.log.pending():
            await asyncio.sleep(0.01)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    asyncio.run(main())
    assert delays == [30_000, 60_000, 120_000]
    assert len(hook.requests) == 4 and d.log.rows()[0]["state"] == "failed"


def test_client_errors_are_not_retried_and_go_to_the_fallback_receiver(tmp_path, recorder):
    primary, fallback = recorder(400), recorder(200)
    registry = CollectorRegistry()
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier(primary.url)], "backup": [WebhookNotifier(fallback.url)]},
                   registry, fallback_receiver="backup", attempts=5)
    run(d, payload("oncall"))
    assert len(primary.requests) == 1  # a 4xx would fail again
    assert [p["receiver"] for p in fallback.payloads] == ["backup"]
    assert value(registry, "opswatch_notifications_total", receiver="oncall", integration="webhook",
                 outcome="failure") == 1


def test_a_receiver_that_is_down_goes_to_the_fallback_and_does_not_stop_the_others(tmp_path, recorder):
    good, backup = recorder(200), recorder(200)
    down = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", timeout_seconds=1)
    d = dispatcher(tmp_path,
                   {"down": [down], "up": [WebhookNotifier(good.url)], "backup": [WebhookNotifier(backup.url)]},
                   fallback_receiver="backup", attempts=2)
    run(d, payload("down"), payload("up"))
    assert [p["receiver"] for p in good.payloads] == ["up"]
    assert [p["receiver"] for p in backup.payloads] == ["backup"]
    states = {(r["receiver"], r["state"]) for r in d.log.rows()}
    assert states == {("down", "failed"), ("up", "sent"), ("backup", "sent")}


def test_same_content_is_sent_once_a_change_or_a_repeat_again(tmp_path, recorder):
    hook = recorder(200)
    registry = CollectorRegistry()
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier(hook.url)]}, registry)
    firing = payload()
    run(d, firing, firing)
    run(d, {**firing, "incident": {**firing["incident"], "severity": "critical"}})  # same alerts and statuses
    assert len(hook.requests) == 1
    assert value(registry, "opswatch_notifications_total", receiver="oncall", integration="webhook",
                 outcome="deduplicated") == 2
    run(d, payload(status="resolved"))
    assert [p["status"] for p in hook.payloads] == ["firing", "resolved"]

    async def repeat():
        worker = asyncio.create_task(d.run())
        assert d.submit(payload(status="resolved"), repeat=True) == 1  # e.g. routing's repeat_interval
        await d.drain(10)
        worker.cancel()

    asyncio.run(repeat())
    assert len(hook.requests) == 3 and d.sent == 3


def test_a_newer_notification_of_the_group_supersedes_a_pending_one(tmp_path, recorder):
    hook = recorder(200)
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier(hook.url)]})
    d.submit(payload())  # queued, not yet delivered (the worker is not running)
    d.submit(payload(status="resolved"))
    run(d)
    assert [p["status"] for p in hook.payloads] == ["resolved"]
    assert [r["state"] for r in d.log.rows()] == ["superseded", "sent"]


def test_resolved_is_not_sent_to_an_integration_without_send_resolved(tmp_path, recorder):
    hook = recorder(200)
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier(hook.url, send_resolved=False)]})
    run(d, payload(), payload(status="resolved"))
    assert [p["status"] for p in hook.payloads] == ["firing"]


def test_unknown_receiver_and_unknown_fallback_are_errors_naming_them(tmp_path):
    d = dispatcher(tmp_path, {"oncall": []})
    with pytest.raises(ValueError, match="'pager'.*oncall"):
        d.submit(payload("pager"))
    assert d.submit(payload(LOG_RECEIVER)) == 0 and d.sent == 1  # the log receiver only logs
    with pytest.raises(ValueError, match="fallback receiver 'nobody'"):
        dispatcher(tmp_path, {"oncall": []}, fallback_receiver="nobody")


def test_a_full_log_drops_new_notifications_and_counts_them(tmp_path):
    registry = CollectorRegistry()
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier("http://127.0.0.1:9/")]}, registry, max_pending=1)
    first = payload()
    assert d.submit(first) == 1
    assert d.submit({**first, "groupKey": "other"}) == 0
    assert value(registry, "opswatch_notifications_total", receiver="oncall", integration="", outcome="dropped") == 1


def test_restart_sends_what_was_queued_or_in_retry_exactly_once(tmp_path, recorder):
    hook = recorder(503, 200)
    now = [1_000_000.0]
    receivers = {"oncall": [WebhookNotifier(hook.url)]}
    first = dispatcher(tmp_path, receivers, attempts=5, backoff_seconds=60, clock=lambda: now[0])
    in_retry = payload()
    queued = {**payload(), "groupKey": "{}:{incident=\"INC-other\"}"}

    async def until_first_attempt_failed():
        worker = asyncio.create_task(first.run())
        first.submit(in_retry)
        while not hook.requests or first._inflight:
            await asyncio.sleep(0.01)
        first.submit(queued)  # submitted, then the process stops before its delivery
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    asyncio.run(until_first_attempt_failed())
    first.close()
    assert len(hook.requests) == 1  # the 503
    assert [r["state"] for r in NotificationLog(tmp_path / "n.db").rows()] == ["pending"] * 2

    now[0] += 61  # the retry is due after the restart
    second = dispatcher(tmp_path, receivers, attempts=5, backoff_seconds=60, clock=lambda: now[0])
    run(second)
    assert len(hook.requests) == 3
    assert sorted(p["groupKey"] for p in hook.payloads[1:]) == sorted([in_retry["groupKey"], queued["groupKey"]])
    second.close()

    third = dispatcher(tmp_path, receivers, clock=lambda: now[0])  # a later restart: the same changes come again
    run(third, in_retry, queued)
    assert len(hook.requests) == 3 and third.sent == 0
    assert [r["state"] for r in third.log.rows()] == ["sent", "sent"]


def test_content_hash_covers_status_fingerprints_and_alert_statuses():
    firing, resolved = payload(), payload(status="resolved")
    assert content_hash(firing) == content_hash({**firing, "incident": {}})  # other fields do not count
    assert content_hash(firing) != content_hash(resolved)
    assert content_hash(firing) != content_hash({**firing, "alerts": firing["alerts"] * 0})


def test_log_prunes_finished_rows_after_retention_and_names_a_bad_file(tmp_path):
    log = NotificationLog(tmp_path / "n.db", retention_ms=1000)
    sent = log.enqueue("oncall", "webhook", 0, payload(), now_ms=0)
    log.mark_sent(sent, 1, now_ms=0)
    log.enqueue("oncall", "webhook", 0, {**payload(), "groupKey": "other"}, now_ms=0)  # still pending
    assert log.prune(now_ms=999) == 0 and log.prune(now_ms=2000) == 1
    assert [r["state"] for r in log.rows()] == ["pending"]
    (tmp_path / "bad.db").write_text("not a database, " * 100)
    with pytest.raises(ConfigError, match="bad.db: cannot open the notification log.*move the file away"):
        NotificationLog(tmp_path / "bad.db")


def test_a_group_is_delivered_in_order_one_notification_at_a_time(tmp_path, recorder):
    hook = recorder(200)
    hook.delay = 0.3
    d = dispatcher(tmp_path, {"oncall": [WebhookNotifier(hook.url)]})

    async def main():
        worker = asyncio.create_task(d.run())
        d.submit(payload())
        while not d._inflight:
            await asyncio.sleep(0.01)
        d.submit(payload(status="resolved"))  # arrives while the firing one is on the wire
        await d.drain(10)
        worker.cancel()

    asyncio.run(main())
    assert [p["status"] for p in hook.payloads] == ["firing", "resolved"] and hook.most_busy == 1
    assert [r["state"] for r in d.log.rows()] == ["sent", "sent"]
