"""Notifications: one per incident change, to every receiver, off the evaluation path.

Payload: Alertmanager's webhook payload, version "4"
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), one group per incident
(``groupKey`` = incident id), plus an ``incident`` object with OpsWatch's root causes and impact.

Delivery runs in a worker with a bounded queue, so a slow or dead receiver never blocks evaluation.
Each receiver gets ``attempts`` tries with exponential backoff; 5xx and connection errors are retried,
4xx are not (the payload would not get better). Outcomes are counted in
``opswatch_notifications_total{receiver,outcome}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Protocol

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

from .incidents import Incident
from .model import Alert

log = logging.getLogger(__name__)


def webhook_payload(incident: Incident, alerts: dict[str, Alert], receiver: str, external_url: str,
                    report_path: str = "") -> dict:
    """Alertmanager webhook payload (version 4) for one incident's alerts."""
    mine = [alerts[fp] for fp in incident.alert_fingerprints if fp in alerts]
    api = [
        {
            "status": "resolved" if a.state == "resolved" else "firing",
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": a.to_api()["startsAt"],
            "endsAt": a.to_api()["endsAt"] or "0001-01-01T00:00:00Z",
            "generatorURL": f"{external_url}/api/v1/alerts",
            "fingerprint": a.fingerprint,
        }
        for a in mine
    ]
    common_labels = dict(set.intersection(*(set(a.labels.items()) for a in mine))) if mine else {}
    common_annotations = dict(set.intersection(*(set(a.annotations.items()) for a in mine))) if mine else {}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{incident="{incident.id}"}}',
        "truncatedAlerts": 0,
        "status": "resolved" if incident.status in ("resolved", "merged") else "firing",
        "receiver": receiver,
        "groupLabels": {"incident": incident.id},
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": external_url,
        "alerts": api,
        "incident": {
            "id": incident.id,
            "status": incident.status,
            "severity": incident.severity,
            "root_causes": [c.node for c in incident.root_causes],
            "impacted_businesses": incident.impacted_businesses,
            "url": f"{external_url}/api/v1/incidents/{incident.id}",
            "report": report_path,
        },
    }


class NotifyError(Exception):
    """A delivery failed; ``recoverable`` says whether a retry may succeed."""

    def __init__(self, message: str, recoverable: bool):
        super().__init__(message)
        self.recoverable = recoverable


class Notifier(Protocol):
    name: str

    async def notify(self, payload: dict) -> None:
        """Deliver one payload or raise :class:`NotifyError`."""


class LogNotifier:
    """Writes one log line per notification (always configured)."""

    def __init__(self, name: str = "log"):
        self.name = name

    async def notify(self, payload: dict) -> None:
        inc = payload["incident"]
        log.warning("incident %s %s severity=%s root_causes=%s impacted=%s alerts=%d", inc["id"], payload["status"],
                    inc["severity"], inc["root_causes"][:3], inc["impacted_businesses"], len(payload["alerts"]))


class WebhookNotifier:
    """POSTs the payload as JSON to ``url`` with a ``timeout_seconds`` deadline."""

    def __init__(self, name: str, url: str, timeout_seconds: float = 10.0):
        self.name, self.url = name, url
        self._client = httpx.AsyncClient(timeout=timeout_seconds)

    async def notify(self, payload: dict) -> None:
        try:
            response = await self._client.post(self.url, content=json.dumps(payload),
                                               headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise NotifyError(f"webhook {self.url}: {type(exc).__name__}: {exc}", recoverable=True) from exc
        if response.status_code // 100 != 2:
            raise NotifyError(f"webhook {self.url}: HTTP {response.status_code}",
                              recoverable=response.status_code >= 500 or response.status_code == 429)


@dataclass
class NotifyMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.total = Counter("opswatch_notifications", "Notification deliveries by outcome.",
                             ["receiver", "outcome"], registry=self.registry)
        self.latency = Histogram("opswatch_notification_latency_seconds", "Time to deliver one notification.",
                                 ["receiver"], registry=self.registry)
        self.dropped = Counter("opswatch_notifications_dropped", "Notifications dropped on a full queue.",
                               registry=self.registry)


class NotificationDispatcher:
    """Queues incident notifications and delivers them to every receiver with retries.

    :param receivers: the notifiers; :param attempts: tries per receiver; :param backoff_seconds: first
    retry delay, doubled each time; :param queue_size: bound of the queue (overflow is counted, dropped).
    """

    def __init__(self, receivers: list[Notifier], registry: CollectorRegistry, attempts: int = 3,
                 backoff_seconds: float = 0.5, queue_size: int = 1000):
        self.receivers, self.attempts, self.backoff = receivers, attempts, backoff_seconds
        self.metrics = NotifyMetrics(registry)
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=queue_size)
        self.sent = 0  # incident changes notified (one per change, whatever the number of receivers)

    def submit(self, payload: dict) -> None:
        """Queue one incident change; never blocks."""
        try:
            self.queue.put_nowait(payload)
            self.sent += 1
        except asyncio.QueueFull:
            self.metrics.dropped.inc()
            log.error("notification queue full; dropped the notification of %s", payload["incident"]["id"])

    async def _deliver(self, receiver: Notifier, payload: dict) -> None:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            with self.metrics.latency.labels(receiver.name).time():
                try:
                    await receiver.notify({**payload, "receiver": receiver.name})
                    self.metrics.total.labels(receiver.name, "success").inc()
                    return
                except NotifyError as exc:
                    error = exc
            if not error.recoverable or attempt == self.attempts:
                break
            await asyncio.sleep(delay)
            delay *= 2
        self.metrics.total.labels(receiver.name, "failure").inc()
        log.error("notifying %s of incident %s failed after %d attempt(s): %s", receiver.name,
                  payload["incident"]["id"], attempt, error)

    async def run(self) -> None:
        """Deliver queued notifications until cancelled."""
        while True:
            payload = await self.queue.get()
            await asyncio.gather(*(self._deliver(r, payload) for r in self.receivers))
            self.queue.task_done()

    async def drain(self, timeout_seconds: float = 10.0) -> None:
        """Wait (bounded) until every queued notification has been attempted."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout_seconds)
        except asyncio.TimeoutError:
            log.error("gave up waiting for %d queued notification(s)", self.queue.qsize())
