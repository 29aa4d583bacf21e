"""Wiring the stages together: scrape -> store -> golden signals -> detectors -> rules -> alerts ->
incidents (grouping + root cause) -> reports and notifications.

:meth:`Pipeline.evaluate` is one synchronous evaluation at an explicit time, so tests drive it without
sleeping; :meth:`Pipeline.run` runs the scrape loop, the evaluation loop and the notification worker.
Readers (REST API, wall screen) use :attr:`Pipeline.snapshot`, replaced whole after every evaluation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from prometheus_client import CollectorRegistry, Histogram

from alerting.incidents import Incident, IncidentManager
from alerting.lifecycle import AlertStateFile, AlertTracker
from alerting.notify import LogNotifier, NotificationDispatcher, WebhookNotifier, webhook_payload
from alerting.report import build_report, write_report
from alerting.rules import DEFAULT_RULES, AnomalyFunction, RuleEvaluator, load_rule_groups
from collectors.discovery import TargetDiscovery
from collectors.samples import STALE_NAN, Sample, labels_key
from collectors.scrape import ScrapeManager, ScrapeMetrics, Target
from detection.engine import ScoringEngine
from detection.signals import RECORDED_NAME, compute_golden_signals
from storage.base import Store
from storage.remote import RemoteStore
from storage.sqlite import SQLiteStore
from topology.graph import REFERENCE_PLATFORM, Topology

from .config import OpsWatchConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What readers see, as of ``evaluated_at_ms``: JSON-ready dicts only."""

    evaluated_at_ms: int | None = None
    signals: dict[str, dict[str, float]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)
    targets: list[dict] = field(default_factory=list)


def open_store(config: OpsWatchConfig, clock: Callable[[], float], registry: CollectorRegistry) -> Store:
    """The store chosen by ``config.storage``: ``data_dir/opswatch.db``, or a remote (its metrics on ``registry``).

    :raises StorageError: when the SQLite file cannot be opened.
    """
    storage = config.storage
    if storage.backend == "remote":
        remote = storage.remote
        return RemoteStore(remote.url, remote.query_url, remote.remote_timeout, remote.max_samples_per_send,
                           remote.capacity, remote.max_retries, registry=registry, clock=clock)
    return SQLiteStore(Path(config.data_dir) / "opswatch.db", int(storage.retention * 1000), clock)


class Pipeline:
    """The whole monitoring pipeline over a list of targets.

    :param config: validated configuration; :param targets: what to scrape besides ``config.scrape_configs``;
    :param clock: seconds since the epoch (injected in tests); :param registry: OpsWatch's own metrics;
    :param topology: the dependency graph (default: ``config.topology_file``, else the reference platform's).
    """

    def __init__(self, config: OpsWatchConfig, targets: list[Target], clock: Callable[[], float] = time.time,
                 registry: CollectorRegistry | None = None, topology: Topology | None = None):
        self.config, self.clock = config, clock
        self.registry = registry or CollectorRegistry()
        self.data_dir = Path(config.data_dir)
        self.reports_dir = self.data_dir / "reports"
        self.store = open_store(config, clock, self.registry)
        self.topology = topology or Topology.load(config.topology_file or REFERENCE_PLATFORM)
        self.rules = RuleEvaluator(load_rule_groups(config.rules_file or DEFAULT_RULES), self.store,
                                   AnomalyFunction(config.detection.window, config.detection.min_points),
                                   # a scrape is stored within its timeout of its start, plus queueing
                                   late_samples_ms=int((2 * config.scrape_interval
                                                        + config.scrape_timeout_seconds + 5) * 1000))
        self.discovery = TargetDiscovery(config.resolved_scrape_configs(), self.registry)
        self.scraper = ScrapeManager(targets, self.store.append, config.scrape_interval, config.scrape_timeout,
                                     clock, ScrapeMetrics(self.registry), discovery=self.discovery,
                                     queue_capacity_samples=config.append_queue_samples)
        self.engine = ScoringEngine(config.detection.window, config.detection.min_points)
        self.tracker = AlertTracker()
        self.incidents = IncidentManager(self.topology, int(config.resolve_after * 1000),
                                         onset_tolerance_ms=int(2 * config.evaluation_seconds * 1000))
        receivers = [LogNotifier()] + [WebhookNotifier(r.name, r.webhook_url, r.timeout) for r in config.receivers]
        self.dispatcher = NotificationDispatcher(receivers, self.registry)
        self.snapshot = Snapshot()
        # Alerts and incidents survive a restart: a firing alert keeps its startsAt and is not paged again.
        self.alert_state = AlertStateFile(self.data_dir / "alerts.json")
        self.alert_state.load(self.tracker, self.incidents)
        self._recorded: dict[tuple[str, str], dict] = {}  # series written last evaluation, for staleness
        self.outbox: list[dict] = []  # notifications of the last evaluations, handed to the dispatcher
        self._incident_views: dict[str, dict] = {i.id: {**build_report(i, self.tracker.alerts),
                                                        "report": str(self.reports_dir / f"{i.id}.json")}
                                                 for i in self.incidents.incidents.values()}
        self._lock = threading.Lock()  # evaluations (worker thread) and incident actions (API) take turns
        self._eval_duration = Histogram("opswatch_evaluation_duration_seconds",
                                        "Time of one evaluation (signals, detectors, rules, incidents).",
                                        registry=self.registry)

    def evaluate(self, now_ms: int | None = None) -> list[Incident]:
        """One evaluation at ``now_ms`` (default: the clock). Returns the incidents that changed."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        with self._lock, self._eval_duration.time():
            signals = compute_golden_signals(self.store, now_ms, self.config.rate_window)
            scores = self.engine.update(now_ms, signals)
            self._record(now_ms, signals, scores)
            rules = self.rules.evaluate(now_ms, scores)
            self.tracker.update(now_ms, rules.conditions, rules.evaluated)
            changed = self.incidents.update(now_ms, self.tracker.alerts)
            for incident in changed:
                self._publish(incident)
            self.alert_state.save(self.tracker, self.incidents, now_ms)
            self._snapshot(now_ms, signals, scores)
        return changed

    def change_incident(self, incident_id: str, action: str, by: str, now_ms: int | None = None) -> dict:
        """``acknowledge`` or ``resolve`` an incident as ``by``; returns its updated report (also written
        to the reports directory and notified, like any incident change).

        :raises KeyError: no such incident; :raises ValueError: unknown action, or it does not apply.
        """
        actions = {"acknowledge": self.incidents.acknowledge, "resolve": self.incidents.resolve}
        if action not in actions:
            raise ValueError(f"action {action!r}: use one of {', '.join(actions)}")
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        with self._lock:
            incident = actions[action](incident_id, now_ms, by)
            self._publish(incident)
            self.alert_state.save(self.tracker, self.incidents, now_ms)
            self.snapshot = dataclasses.replace(
                self.snapshot, incidents=[v for v in self._incident_views.values() if v["status"] != "merged"])
            return self._incident_views[incident_id]

    def _record(self, now_ms: int, signals: dict, scores: dict) -> None:
        """Write the signals and scores back to the store, like recording rules, with the detector's
        explanation (baseline and spread, for the dashboards' expected bands). A series written last time
        but not now gets a staleness marker, as Prometheus's recording rules do, so rules reading it (with a
        5 m lookback) see it end at once instead of its last value."""
        samples = [Sample(RECORDED_NAME.format(signal=s), {"job": job}, now_ms, v)
                   for job, values in signals.items() for s, v in values.items() if not math.isnan(v)]
        for (job, s), sc in scores.items():
            if not math.isnan(sc.score):
                labels = {"job": job, "signal": s}
                samples += [Sample("opswatch_anomaly_score", labels, now_ms, sc.score),
                            Sample("opswatch_anomaly_baseline", labels, now_ms, sc.baseline),
                            Sample("opswatch_anomaly_scale", labels, now_ms, sc.scale)]
        written = {(x.name, labels_key(x.labels)): x.labels for x in samples}
        samples += [Sample(name, labels, now_ms, STALE_NAN) for (name, key), labels in self._recorded.items()
                    if (name, key) not in written]
        self._recorded = written
        self.rules.push(samples)  # the rules read these from memory rather than back from the store
        self.store.append(samples)

    def _publish(self, incident: Incident) -> None:
        report = build_report(incident, self.tracker.alerts)
        path = write_report(report, self.reports_dir)
        self._incident_views[incident.id] = {**report, "report": str(path)}
        self.outbox.append(webhook_payload(incident, self.tracker.alerts, "", self.config.external_url, str(path)))

    def _snapshot(self, now_ms: int, signals: dict, scores: dict) -> None:
        self.snapshot = Snapshot(
            evaluated_at_ms=now_ms,
            signals={j: dict(v) for j, v in signals.items()},
            scores={j: {s: sc.score for (jj, s), sc in self.engine.latest.items() if jj == j} for j in signals},
            alerts=[a.to_api() for a in self.tracker.alerts.values()],
            incidents=[v for v in self._incident_views.values() if v["status"] != "merged"],
            targets=[vars(h).copy() for h in self.scraper.health.values()],
        )

    async def _evaluation_loop(self) -> None:
        interval = self.config.evaluation_seconds
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            try:
                await asyncio.to_thread(self.evaluate)
            except Exception:  # one bad evaluation must not stop monitoring
                log.exception("evaluation failed; continuing with the next one")
            # The dispatcher's queue belongs to the event loop: submit from here, not from the worker.
            outbox, self.outbox = self.outbox, []
            for payload in outbox:
                self.dispatcher.submit(payload)

    async def run(self) -> None:
        """Scrape, evaluate and notify until cancelled."""
        await asyncio.gather(self.scraper.run(), self._evaluation_loop(), self.dispatcher.run())

    def close(self) -> None:
        self.store.close()
