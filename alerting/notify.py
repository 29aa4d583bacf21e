"""Notifications: each incident change to the receiver routing chose, off the evaluation path, with
retries, a fallback receiver, and a log on disk so none is lost across a restart or sent twice.

Payload: Alertmanager's webhook payload, version "4"
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), one group per incident
(``groupKey`` = incident id), plus an ``incident`` object with OpsWatch's root causes and impact;
``payload["receiver"]`` names the one receiver it goes to. A receiver has integrations
(:mod:`alerting.notifiers`: webhook, Slack, email), each delivered and retried on its own.

:meth:`NotificationDispatcher.submit` writes the notification to the :class:`~alerting.notification_log.
NotificationLog` (dropping it when it duplicates the last one of its group) and returns; a worker
(:meth:`~NotificationDispatcher.run`) delivers what is due, a few at a time, so a slow or dead receiver
never blocks evaluation or the other receivers. A failed attempt is retried ``attempts`` times in all,
after ``backoff_seconds`` doubled each time, if the error is recoverable (5xx, 429, network errors, SMTP
4xx); a notification that still failed goes to the ``fallback_receiver``. Every notification is also
logged (the log notifier). Metrics:

* ``opswatch_notifications_total{receiver,integration,outcome}``: final outcome per notification,
  ``success``, ``failure``, ``deduplicated``, ``dropped`` (too many pending);
* ``opswatch_notification_requests_total{receiver,integration,outcome}``: every attempt, ``success`` or ``failure``;
* ``opswatch_notification_latency_seconds{receiver,integration}``: the time of each attempt;
* ``opswatch_notifications_pending``: queued or waiting for a retry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .incidents import Incident
from .model import Alert
from .notification_log import Entry, NotificationLog
from .notifiers.base import Integration, NotifyError

log = logging.getLogger(__name__)

LOG_RECEIVER = "log"
"""The receiver that only logs: always known to the dispatcher, for notifications routed nowhere else."""

PRUNE_EVERY_MS = 3_600_000


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


class NotifyMetrics:
    """The dispatcher's metrics on ``registry`` (see the module doc)."""

    def __init__(self, registry: CollectorRegistry):
        self.total = Counter("opswatch_notifications", "Notifications by final outcome.",
                             ["receiver", "integration", "outcome"], registry=registry)
        self.requests = Counter("opswatch_notification_requests", "Delivery attempts by outcome.",
                                ["receiver", "integration", "outcome"], registry=registry)
        self.latency = Histogram("opswatch_notification_latency_seconds", "Time of one delivery attempt.",
                                 ["receiver", "integration"], registry=registry)
        self.pending = Gauge("opswatch_notifications_pending", "Notifications queued or waiting for a retry.",
                             registry=registry)


class NotificationDispatcher:
    """Delivers each submitted notification to the integrations of the receiver it names.

    :param receivers: integrations by receiver name (:data:`LOG_RECEIVER` is added when missing);
    :param notification_log: the queue and dedup log; :param fallback_receiver: where a notification goes
    when its receiver failed after all attempts; :param attempts: tries per integration;
    :param backoff_seconds: the first retry delay, doubled each time; :param max_pending: bound of the
    queue (a notification beyond it is dropped and counted); :param concurrency: deliveries at once;
    :param clock: unix seconds (injected in tests; retry times are stored as wall-clock ms).
    :raises ValueError: ``fallback_receiver`` is not one of ``receivers``.
    """

    def __init__(self, receivers: dict[str, list[Integration]], registry: CollectorRegistry,
                 notification_log: NotificationLog, fallback_receiver: str | None = None, attempts: int = 3,
                 backoff_seconds: float = 0.5, max_pending: int = 1000, concurrency: int = 4,
                 clock: Callable[[], float] = time.time):
        if fallback_receiver is not None and fallback_receiver not in receivers:
            raise ValueError(f"fallback receiver {fallback_receiver!r} is not a receiver ({', '.join(receivers)})")
        self.receivers = {LOG_RECEIVER: [], **receivers}
        self.log, self.fallback_receiver = notification_log, fallback_receiver
        self.attempts, self.backoff, self.max_pending = attempts, backoff_seconds, max_pending
        self.concurrency, self.clock = concurrency, clock
        self.metrics = NotifyMetrics(registry)
        self.sent = 0  # notifications accepted (not duplicates, not dropped): one per submit
        self._integrations = {(name, i.integration, i.index): i for name, ints in self.receivers.items() for i in ints}
        self._inflight: dict[int, tuple] = {}  # log entry id -> its dedup key, while being delivered
        self._wake = asyncio.Event()
        self.metrics.pending.set(self.log.pending())

    @classmethod
    def from_config(cls, receivers_config: Iterable[Any], registry: CollectorRegistry, log_path: str | Path,
                    fallback_receiver: str | None = None, **kwargs: Any) -> NotificationDispatcher:
        """A dispatcher for ``receivers_config`` (:class:`opswatch.config.ReceiverConfig` items), with its
        log at ``log_path`` (``data_dir/notifications.db``); ``kwargs`` go to the constructor."""
        from .notifiers.build import integrations

        receivers = {r.name: integrations(r) for r in receivers_config}
        return cls(receivers, registry, NotificationLog(log_path), fallback_receiver, **kwargs)

    def submit(self, payload: dict, repeat: bool = False) -> int:
        """Queue one notification to ``payload["receiver"]``; never waits for delivery.

        It is not queued for an integration whose last pending or sent notification of the same group
        had the same content (:func:`~alerting.notification_log.content_hash`), unless ``repeat`` (a
        deliberate re-notification, e.g. routing's ``repeat_interval``). Returns how many integrations
        it was queued for.

        :raises ValueError: the payload names no known receiver.
        """
        receiver = payload.get("receiver")
        if receiver not in self.receivers:
            raise ValueError(f"notification of {payload.get('groupKey')!r} names receiver {receiver!r}, "
                             f"which is not configured (receivers: {', '.join(self.receivers)})")
        if self.log.pending() >= self.max_pending:
            self.metrics.total.labels(receiver, "", "dropped").inc()
            log.error("%d notifications pending; dropped the one of %s to %s", self.max_pending,
                      payload.get("groupKey"), receiver)
            return 0
        queued = self._enqueue(receiver, payload, dedup=not repeat)
        if queued or not self.receivers[receiver]:
            self.sent += 1
            _log_notification(payload)
        return queued

    def _enqueue(self, receiver: str, payload: dict, dedup: bool) -> int:
        now_ms = self._now_ms()
        queued = 0
        for integration in self.receivers[receiver]:
            if payload.get("status") == "resolved" and not integration.send_resolved:
                continue
            if self.log.enqueue(receiver, integration.integration, integration.index, payload, now_ms, dedup) is None:
                self.metrics.total.labels(receiver, integration.integration, "deduplicated").inc()
            else:
                queued += 1
        if queued:
            self._wake.set()
        self.metrics.pending.set(self.log.pending())
        return queued

    async def run(self) -> None:
        """Deliver due notifications until cancelled (pending ones stay in the log for the next start)."""
        self._wake = asyncio.Event()  # bound to the running loop
        tasks: set[asyncio.Task] = set()
        last_prune_ms = -math.inf
        try:
            while True:
                now_ms = self._now_ms()
                if now_ms - last_prune_ms >= PRUNE_EVERY_MS:
                    self.log.prune(now_ms)
                    last_prune_ms = now_ms
                busy = set(self._inflight.values())  # one delivery at a time per group and integration
                for entry in self.log.due(now_ms):
                    if len(self._inflight) >= self.concurrency:
                        break
                    if entry.key in busy:
                        continue
                    busy.add(entry.key)
                    self._inflight[entry.id] = entry.key
                    task = asyncio.create_task(self._attempt(entry))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                self.metrics.pending.set(self.log.pending())
                next_ms = self.log.next_attempt_ms()
                # Due but waiting for a delivery slot: a finishing delivery wakes us. Cap: clocks jump.
                timeout = None if next_ms is None or next_ms <= now_ms else min(60.0, (next_ms - now_ms) / 1000)
                self._wake.clear()
                # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancel that races the event.
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait([waiter], timeout=timeout)
                finally:
                    waiter.cancel()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _attempt(self, entry: Entry) -> None:
        labels = (entry.receiver, entry.integration)
        attempts = entry.attempts + 1
        try:
            integration = self._integrations.get((entry.receiver, entry.integration, entry.index))
            started = time.perf_counter()
            try:
                if integration is None:
                    raise NotifyError(f"{entry.integration}_configs[{entry.index}] of receiver {entry.receiver!r} "
                                      f"is no longer configured", recoverable=False)
                await integration.send(entry.payload)
                error = None
            except NotifyError as exc:
                error = exc
            except Exception as exc:  # a bug in an integration must not stop the worker
                log.exception("notifier %s of %s raised", entry.integration, entry.receiver)
                error = NotifyError(f"{type(exc).__name__}: {exc}", recoverable=False)
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
            self.metrics.requests.labels(*labels, "failure" if error else "success").inc()
            now_ms = self._now_ms()
            if error is None:
                self.log.mark_sent(entry.id, attempts, now_ms)
                self.metrics.total.labels(*labels, "success").inc()
            elif error.recoverable and attempts < self.attempts:
                delay_ms = int(self.backoff * 2 ** (attempts - 1) * 1000)
                self.log.mark_retry(entry.id, attempts, now_ms + delay_ms, str(error), now_ms)
                log.warning("notifying %s (%s) of %s failed (attempt %d of %d), retrying in %.3gs: %s", entry.receiver,
                            entry.integration, entry.group_key, attempts, self.attempts, delay_ms / 1000, error)
            else:
                current = self.log.mark_failed(entry.id, attempts, str(error), now_ms)
                self.metrics.total.labels(*labels, "failure").inc()
                log.error("notifying %s (%s) of %s failed after %d attempt(s): %s", entry.receiver, entry.integration,
                          entry.group_key, attempts, error)
                if current:  # else a newer notification of the group replaced it and gets its own chances
                    self._fall_back(entry)
        finally:
            self._inflight.pop(entry.id, None)
            self._wake.set()

    def _fall_back(self, entry: Entry) -> None:
        fallback = self.fallback_receiver
        if fallback is None or entry.receiver == fallback:
            return
        queued = self._enqueue(fallback, {**entry.payload, "receiver": fallback}, dedup=True)
        log.warning("notification of %s to %s goes to the fallback receiver %s (%d integration(s))",
                    entry.group_key, entry.receiver, fallback, queued)
        if not self.receivers[fallback]:
            _log_notification({**entry.payload, "receiver": fallback})

    async def drain(self, timeout_seconds: float = 10.0) -> None:
        """Wait (at most ``timeout_seconds``) until nothing is pending or being delivered; what is left
        stays in the log and is delivered after the next start. Needs :meth:`run` running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while self._inflight or self.log.pending():
            if loop.time() >= deadline:
                log.error("gave up waiting for %d pending notification(s); they stay in %s for the next start",
                          self.log.pending(), self.log.path)
                return
            await asyncio.sleep(0.05)

    def close(self) -> None:
        """Close the log (pending notifications stay in it)."""
        self.log.close()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _log_notification(payload: dict) -> None:
    """The log notifier: one line per notification."""
    inc = payload.get("incident", {})
    log.warning("notify %s: incident %s %s severity=%s root_causes=%s impacted=%s alerts=%d", payload.get("receiver"),
                inc.get("id", payload.get("groupKey")), payload.get("status"), inc.get("severity"),
                inc.get("root_causes", [])[:3], inc.get("impacted_businesses", []), len(payload.get("alerts", [])))
