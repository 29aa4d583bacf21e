"""Wiring the stages together: scrape -> store -> golden signals -> detectors -> rules -> alerts ->
incidents (grouping + root cause) -> reports, and notifications through Alertmanager's stages (inhibit ->
silence -> route -> group -> wait -> dedup, :mod:`alerting.stages`) to the notification dispatcher.

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

from alerting.changes import ChangeEvent, ChangeLog
from alerting.external import AlertIntake, ExternalAlert
from alerting.incidents import Incident, IncidentManager
from alerting.lifecycle import AlertStateFile, AlertTracker
from alerting.notify import NotificationDispatcher
from alerting.report import build_report, write_report
from alerting.rules import DEFAULT_RULES, AnomalyFunction, RuleEvaluator, load_rule_groups
from alerting.silences import Silences
from alerting.stages import NotificationStages, Outgoing
from collectors.discovery import TargetDiscovery
from collectors.samples import STALE_NAN, Sample, labels_key
from collectors.scrape import ScrapeManager, ScrapeMetrics, Target
from detection.calendar import Calendar
from detection.engine import ScoringEngine
from detection.feedback import FeedbackLog
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


DETECTOR_STATE_FILE = "detector_state.npz"
DETECTOR_SAVE_EVERY_MS = 60_000


def scoring_engine(config: OpsWatchConfig) -> ScoringEngine:
    """The live detector with the ``detection:`` settings: per-series policies, the calendar (configured events
    plus those added through the API, kept in ``data_dir/detection_calendar.json``), the feedback log
    (``data_dir/detection_feedback.jsonl``), re-baselining after ``rebaseline_after`` of a stable shift and
    anomalies kept out of the baselines from ``exclude_above``.
    Its baselines are restored from ``data_dir/detector_state.npz`` when the file exists; a file this
    engine cannot use (another detector or window) is logged, kept aside as ``.unusable`` and the
    baselines start afresh, so a configuration change never stops monitoring.

    :raises ValueError: when the calendar or feedback file is unreadable (names the file and the entry).
    """
    d, data_dir = config.detection, Path(config.data_dir)
    after = None if d.rebaseline_after is None else max(1, math.ceil(d.rebaseline_after / config.evaluation_seconds))
    state = data_dir / DETECTOR_STATE_FILE

    def make() -> ScoringEngine:
        return ScoringEngine(d.window, d.min_points, detector=d.detector, overrides=[s.to_override() for s in d.series],
                             calendar=Calendar([e.to_event() for e in d.calendar],
                                               data_dir / "detection_calendar.json"),
                             feedback=FeedbackLog(data_dir / "detection_feedback.jsonl"), rebaseline_after=after,
                             exclude_above=d.exclude_above, state_path=state)

    try:
        return make()
    except ValueError as exc:
        if not state.exists() or str(state) not in str(exc):
            raise
        log.error("%s; starting with fresh baselines (the file is kept as %s.unusable)", exc, state.name)
        state.replace(state.with_name(state.name + ".unusable"))
        return make()


class Pipeline:
    """The whole monitoring pipeline over a list of targets.

    :param config: validated configuration; :param targets: what to scrape besides ``config.scrape_configs``;
    :param clock: seconds since the epoch (injected in tests); :param registry: OpsWatch's own metrics;
    :param topology: the dependency graph (default: ``config.topology_file``, else the reference platform's);
    :param store: the store to read and record into (default: :func:`open_store` of ``config``; a backtest
        passes a read-only view of stored history, :class:`storage.replay.ReplayStore`); :param persist: save
        the alert state and detector baselines as evaluations go (False: a backtest, whose state is thrown away).
    """

    def __init__(self, config: OpsWatchConfig, targets: list[Target], clock: Callable[[], float] = time.time,
                 registry: CollectorRegistry | None = None, topology: Topology | None = None,
                 store: Store | None = None, persist: bool = True):
        self.config, self.clock, self.persist = config, clock, persist
        self.registry = registry or CollectorRegistry()
        self.data_dir = Path(config.data_dir)
        self.reports_dir = self.data_dir / "reports"
        self.store = store if store is not None else open_store(config, clock, self.registry)
        self.topology = topology or Topology.load(config.topology_file or REFERENCE_PLATFORM)
        self.rules = RuleEvaluator(load_rule_groups(config.rules_file or DEFAULT_RULES), self.store,
                                   AnomalyFunction(config.detection.window, config.detection.min_points),
                                   # a scrape is stored within its timeout of its start, plus queueing
                                   late_samples_ms=int((2 * config.scrape_interval
                                                        + config.scrape_timeout_seconds + 5) * 1000))
        self.discovery = TargetDiscovery(config.resolved_scrape_configs(), self.registry)
        self.scraper = ScrapeManager(targets, self.store.append, config.scrape_interval, config.scrape_timeout,
                                     clock, ScrapeMetrics(self.registry), discovery=self.discovery,
                                     queue_capacity_samples=config.append_queue_samples,
                                     append_columns=getattr(self.store, "append_columns", None))
        self.engine = scoring_engine(config)
        self._engine_saved_ms = int(clock() * 1000)
        self.tracker = AlertTracker()
        intake = config.intake
        self.intake = AlertIntake(self.topology, intake.node_labels, int(intake.resolve_timeout * 1000),
                                  int(intake.webhook_resolve_timeout * 1000), intake.max_alerts)
        self.changes = ChangeLog(self.data_dir / "changes.jsonl")  # deploys and config changes, kept across restarts
        self.incidents = IncidentManager(self.topology, int(config.resolve_after * 1000),
                                         onset_tolerance_ms=int(2 * config.evaluation_seconds * 1000),
                                         changes=self.changes)
        self.dispatcher = NotificationDispatcher.from_config(config.receivers, self.registry,
                                                             self.data_dir / "notifications.db",
                                                             config.fallback_receiver)
        # inhibit -> silence -> route -> group -> wait -> dedup; what is due goes to self.dispatcher
        self.silences = Silences(self.data_dir / "silences.json")
        self.paging = NotificationStages(self.topology, config.routing_tree(), config.inhibit_rules, self.silences,
                                         self.data_dir / "nflog.json", config.external_url, self.reports_dir,
                                         self.registry)
        self.snapshot = Snapshot()
        # Alerts and incidents survive a restart: a firing alert keeps its startsAt and is not paged again.
        self.alert_state = AlertStateFile(self.data_dir / "alerts.json")
        self.alert_state.load(self.tracker, self.incidents)
        self._recorded: dict[tuple[str, str], dict] = {}  # series written last evaluation, for staleness
        self.outbox: list[Outgoing] = []  # notifications of the last evaluations, handed to the dispatcher
        self._incident_views: dict[str, dict] = {
            i.id: {**build_report(i, self.tracker.alerts, self.store, int(clock() * 1000)),
                   "report": str(self.reports_dir / f"{i.id}.json")}
            for i in self.incidents.incidents.values()}
        self._refresh_incidents()
        self._lock = threading.Lock()  # evaluations (worker thread) and incident actions (API) take turns
        self._eval_duration = Histogram("opswatch_evaluation_duration_seconds",
                                        "Time of one evaluation (signals, detectors, rules, incidents).",
                                        registry=self.registry)

    def evaluate(self, now_ms: int | None = None, signals: dict[str, dict[str, float]] | None = None
                 ) -> list[Incident]:
        """One evaluation at ``now_ms`` (default: the clock). Returns the incidents that changed.

        :param signals: the golden signals at ``now_ms`` (:func:`~detection.signals.compute_golden_signals`
            over ``config.rate_window``) when the caller has them: a backtest of several rule files computes
            them once per step; default: computed from the store.
        """
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        with self._lock, self._eval_duration.time():
            if signals is None:
                signals = compute_golden_signals(self.store, now_ms, self.config.rate_window)
            scores = self.engine.update(now_ms, signals)
            self._record(now_ms, signals, scores)
            rules = self.rules.evaluate(now_ms, scores)
            self.tracker.update(now_ms, rules.conditions, rules.evaluated)
            changed = self.incidents.update(now_ms, self.tracker.alerts)
            self._route(now_ms, changed)
            if self.persist:
                self.alert_state.save(self.tracker, self.incidents, now_ms)
            self._snapshot(now_ms, signals, scores)
            if self.persist and now_ms - self._engine_saved_ms >= DETECTOR_SAVE_EVERY_MS:
                self._save_engine(now_ms)
        return changed

    def change_incident(self, incident_id: str, action: str, by: str, *, assignee: str | None = None,
                        text: str | None = None, now_ms: int | None = None) -> dict:
        """The one write path of incident changes (REST API, CLI through the API, wall screen): ``acknowledge``,
        ``assign`` (to ``assignee``), ``comment`` (``text``) or ``resolve`` as ``by``. The change lands in the
        incident's timeline, is saved with the alert state and its report rewritten; acknowledge and resolve
        are notified, like any status change. Returns the incident's updated report.

        :raises KeyError: no such incident; :raises ValueError: unknown action, a missing or empty field
            (named), or an action that does not apply (acknowledging a resolved incident).
        """
        actions = {"acknowledge": lambda i, t: self.incidents.acknowledge(i, t, by),
                   "assign": lambda i, t: self.incidents.assign(i, t, by, assignee),
                   "comment": lambda i, t: self.incidents.comment(i, t, by, text),
                   "resolve": lambda i, t: self.incidents.resolve(i, t, by)}
        if action not in actions:
            raise ValueError(f"action {action!r}: use one of {', '.join(actions)}")
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        with self._lock:
            incident = actions[action](incident_id, now_ms)
            self._publish(incident, now_ms, notify=action in ("acknowledge", "resolve"))
            self.alert_state.save(self.tracker, self.incidents, now_ms)
            self._refresh_incidents()
            return self._incident_views[incident_id]

    def record_change(self, event: ChangeEvent) -> tuple[ChangeEvent, bool]:
        """Add a deploy or configuration change to the change log; incidents it preceded (within the log's
        window before their first anomaly) list it and their reports are rewritten. An event whose id is
        already logged changes nothing. Returns the logged event and whether it is new.

        :raises OSError: the change log cannot be written.
        """
        now_ms = int(self.clock() * 1000)
        with self._lock:
            event, new = self.changes.add(event)
            if not new:
                return event, False
            window_ms = self.incidents.change_window_ms
            touched = [i for i in self.incidents.incidents.values() if i.status != "merged"
                       and i.first_anomaly_ms is not None and 0 <= i.first_anomaly_ms - event.at_ms <= window_ms
                       and self.incidents.attach_changes(i)]
            for incident in touched:
                self._publish(incident, now_ms, notify=False)
            if touched:
                self.alert_state.save(self.tracker, self.incidents, now_ms)
                self._refresh_incidents()
            return event, True

    def receive_alerts(self, alerts: list[ExternalAlert], source: str, now_ms: int | None = None) -> list[str]:
        """Take alerts sent by Prometheus (``source="api"``) or an Alertmanager webhook (``"webhook"``) into
        the alert tracker (see :mod:`alerting.external`). The next evaluation groups them into incidents,
        pages and saves them, as it does OpsWatch's own rule alerts: a burst of requests costs one grouping
        and one report rewrite, not one per request. Returns one problem per alert refused.

        :raises ValueError: for an unknown ``source``.
        """
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        with self._lock:
            _, refused = self.intake.receive(self.tracker, alerts, source, now_ms)
        return refused

    def _refresh_incidents(self) -> None:
        self.snapshot = dataclasses.replace(
            self.snapshot, incidents=[v for v in self._incident_views.values() if v["status"] != "merged"])

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

    def _route(self, now_ms: int, changed: list[Incident]) -> None:
        """Run the notification stages (:mod:`alerting.stages`) and queue what is due; rewrite the reports
        of the incidents that ``changed``, were paged, or hold an alert newly silenced, inhibited or freed."""
        result = self.paging.run(now_ms, self.tracker.alerts, self.incidents)
        for incident in result.paged:  # before the report, so the report's timeline has the page
            self.incidents.record_page(incident, now_ms)
        for incident in {i.id: i for i in [*changed, *result.paged, *result.status_changed]}.values():
            self._publish(incident, now_ms)
        self.outbox += result.outgoing

    def _publish(self, incident: Incident, now_ms: int, notify: bool = False) -> None:
        """Rewrite ``incident``'s report and view, each alert with its notification ``status`` (silenced,
        inhibited and why). Pages follow routing (:meth:`_route`); ``notify`` (a change made by hand) also
        tells the receivers already notified about the incident."""
        report = build_report(incident, self.tracker.alerts, self.store, now_ms)
        for alert in report["alerts"]:
            alert["status"] = self.paging.status(alert["fingerprint"])
        path = write_report(report, self.reports_dir)
        self._incident_views[incident.id] = {**report, "report": str(path)}
        if notify:
            self.outbox += self.paging.announce(incident, self.tracker.alerts)

    def _api_alerts(self) -> list[dict]:
        """Every alert in the API shape, with Alertmanager's ``status`` (state, silencedBy, inhibitedBy)."""
        return [{**a.to_api(), "status": self.paging.status(fp)} for fp, a in self.tracker.alerts.items()]

    def _snapshot(self, now_ms: int, signals: dict, scores: dict) -> None:
        self.snapshot = Snapshot(
            evaluated_at_ms=now_ms,
            signals={j: dict(v) for j, v in signals.items()},
            scores={j: {s: sc.score for (jj, s), sc in self.engine.latest.items() if jj == j} for j in signals},
            alerts=self._api_alerts(),
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
            with self._lock:  # incident actions (API threads) add announcements
                outbox, self.outbox = self.outbox, []
            for out in outbox:
                self.dispatcher.submit(out.payload, repeat=out.repeat)

    async def run(self) -> None:
        """Scrape, evaluate and notify until cancelled."""
        await asyncio.gather(self.scraper.run(), self._evaluation_loop(), self.dispatcher.run())

    def _save_engine(self, now_ms: int) -> None:
        """Persist the detector baselines (atomic write); a failure is logged, monitoring goes on."""
        self._engine_saved_ms = now_ms
        try:
            self.engine.save()
        except OSError:
            log.exception("could not save the detector state to %s", self.engine.state_path)

    def close(self) -> None:
        with self._lock:
            self._save_engine(int(self.clock() * 1000))
        self.store.close()
        self.dispatcher.close()
