"""Alertmanager's notification pipeline over OpsWatch's alerts and incidents:
inhibit -> silence -> route -> group -> wait -> dedup, producing webhook payloads for one receiver each.

:meth:`NotificationStages.run` is called after every evaluation (alerts updated, incidents regrouped). It
labels each alert with its incident (``incident``, see :mod:`alerting.routing`), computes inhibitions
(:mod:`alerting.inhibition`) and silences (:mod:`alerting.silences`), hands every alert with its muted flag
to the aggregation groups (:mod:`alerting.dispatch`) and turns the notifications due into Alertmanager
webhook payloads (:func:`alerting.notify.webhook_payload`, ``receiver`` set, ``groupKey``/``groupLabels``/
``status`` of the group).

Each alert's ``status`` is Alertmanager's API v2 ``alertStatus``: ``state`` = ``active`` | ``suppressed`` |
``unprocessed`` (pending alerts, which are not routed yet), ``silencedBy`` (silence ids), ``inhibitedBy``
(fingerprints), ``mutedBy`` (names of the time intervals muting the routes it matches; it is ``suppressed``
by them only when every route it matches is muted), plus OpsWatch's
``inhibitedReasons`` (one sentence per inhibiting alert, in ``inhibitedBy``'s order).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from prometheus_client import CollectorRegistry, Gauge

from topology.graph import Topology

from .dispatch import DispatchAlert, GroupDispatcher, Notification
from .incidents import ACTIVE_STATUSES, Incident, IncidentManager
from .inhibition import Inhibitor, InhibitRuleConfig
from .model import Alert
from .notify import webhook_payload
from .routing import INCIDENT_LABEL, Route
from .silences import Silences

_ACTIVE = {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": [], "inhibitedReasons": []}


@dataclass(frozen=True)
class Outgoing:
    """A payload for :meth:`alerting.notify.NotificationDispatcher.submit`; ``repeat``: a deliberate
    re-notification (``repeat_interval``, or an incident acknowledged or resolved by hand)."""

    payload: dict
    repeat: bool = False


@dataclass
class StageResult:
    """What one :meth:`NotificationStages.run` produced: the payloads, the incidents paged by them, and the
    incidents with an alert whose status changed (their reports need rewriting)."""

    outgoing: list[Outgoing] = field(default_factory=list)
    paged: list[Incident] = field(default_factory=list)
    status_changed: list[Incident] = field(default_factory=list)


class NotificationStages:
    """The stages between alerts and receivers.

    :param topology: for inhibition along the dependency graph; :param route: the routing tree;
    :param inhibit_rules: label-equality rules; :param silences: the silence store;
    :param nflog_path: the notification log (``data_dir/nflog.json``); :param external_url: for links in
    payloads; :param reports_dir: where incident reports are written (linked from payloads);
    :param registry: where ``opswatch_alerts{state}``, ``opswatch_silences{state}`` and
    ``opswatch_aggregation_groups`` are exported.
    """

    def __init__(self, topology: Topology, route: Route, inhibit_rules: Iterable[InhibitRuleConfig],
                 silences: Silences, nflog_path: Path | None, external_url: str, reports_dir: Path,
                 registry: CollectorRegistry | None = None):
        self.inhibitor = Inhibitor(topology, inhibit_rules)
        self.silences = silences
        self.groups = GroupDispatcher(route, nflog_path)
        self.external_url, self.reports_dir = external_url, reports_dir
        self.statuses: dict[str, dict] = {}
        registry = registry or CollectorRegistry()
        self._alerts_gauge = Gauge("opswatch_alerts", "Firing alerts by notification state (active, suppressed).",
                                   ["state"], registry=registry)
        self._silences_gauge = Gauge("opswatch_silences", "Silences by state.", ["state"], registry=registry)
        self._groups_gauge = Gauge("opswatch_aggregation_groups", "Aggregation groups of the routing tree.",
                                   registry=registry)

    def status(self, fingerprint: str) -> dict:
        """The alert's ``status`` as of the last :meth:`run` (active when unknown)."""
        return self.statuses.get(fingerprint, _ACTIVE)

    def run(self, now_ms: int, alerts: dict[str, Alert], incidents: IncidentManager) -> StageResult:
        """One pass of every stage at ``now_ms`` over every known alert (the tracker's ``alerts``)."""
        incident_of = _incident_of(incidents)
        labels = {fp: {**a.labels, INCIDENT_LABEL: incident_of[fp].id} if fp in incident_of else dict(a.labels)
                  for fp, a in alerts.items()}
        inhibited = self.inhibitor.inhibit(alerts.values())
        statuses: dict[str, dict] = {}
        for fp, alert in alerts.items():
            silenced = self.silences.muted_by(labels[fp], now_ms) if alert.state != "resolved" else []
            inhibitions = inhibited.get(fp, [])
            routes_muted = [r.muted_by(now_ms) for r in self.groups.route.match(labels[fp])]
            muted = sorted({name for names in routes_muted for name in names})
            suppressed = silenced or inhibitions or (alert.state != "resolved" and all(routes_muted))
            state = "unprocessed" if alert.state == "pending" else "suppressed" if suppressed else "active"
            statuses[fp] = {"state": state, "silencedBy": silenced, "inhibitedBy": [i.source for i in inhibitions],
                            "mutedBy": muted, "inhibitedReasons": [i.reason for i in inhibitions]}
        unresolved = {fp: labels[fp] for fp, a in alerts.items() if a.state != "resolved"
                      or (fp in incident_of and incident_of[fp].status in ACTIVE_STATUSES)}
        self.silences.observe(now_ms, unresolved)

        result = StageResult()
        changed = {fp for fp in statuses.keys() | self.statuses.keys()
                   if statuses.get(fp, _ACTIVE) != self.statuses.get(fp, _ACTIVE)}
        self.statuses = statuses
        result.status_changed = _unique(incident_of[fp] for fp in changed if fp in incident_of)

        # time intervals mute routes, not alerts: the dispatcher holds a muted route's groups back itself
        routed = [DispatchAlert(fp, labels[fp], a.state == "firing", a.fired_at_ms or a.active_at_ms,
                                bool(statuses[fp]["silencedBy"] or statuses[fp]["inhibitedBy"]))
                  for fp, a in alerts.items() if a.state in ("firing", "resolved")]
        for note in self.groups.flush(now_ms, routed):
            payload = self._payload(note, alerts, incident_of)
            if payload is not None:
                result.outgoing.append(Outgoing(payload, note.repeat))
                result.paged += [incident_of[fp] for fp in note.firing if fp in incident_of]
        result.paged = _unique(result.paged)
        self._export(now_ms, alerts)
        return result

    def announce(self, incident: Incident, alerts: dict[str, Alert]) -> list[Outgoing]:
        """Payloads telling the receivers already notified about ``incident``'s alerts of its new state (an
        acknowledgement or resolution by hand), one per (group, receiver) that was told; none when it was
        never notified."""
        mine = set(incident.alert_fingerprints)
        incident_of = {fp: incident for fp in mine}
        out = []
        for (key, receiver), entry in self.groups.nflog.items():
            told = sorted(entry.firing & mine)
            if told:
                firing = [fp for fp in told if fp in alerts and alerts[fp].state == "firing"]
                resolved = [fp for fp in told if fp in alerts and alerts[fp].state == "resolved"]
                note = Notification(receiver, key, dict(entry.labels), self.groups.route, firing, resolved, 0, True)
                payload = self._payload(note, alerts, incident_of)
                if payload is not None:
                    out.append(Outgoing(payload, repeat=True))
        return out

    def _payload(self, note: Notification, alerts: dict[str, Alert], incident_of: dict[str, Incident]) -> dict | None:
        present = [fp for fp in note.firing + note.resolved if fp in alerts]
        owners = [incident_of[fp] for fp in present if fp in incident_of]
        if not present or not owners:
            return None
        named = note.group_labels.get(INCIDENT_LABEL)
        incident = next((i for i in owners if i.id == named), owners[0])
        payload = webhook_payload(dataclasses.replace(incident, alert_fingerprints=present),
                                  {fp: alerts[fp] for fp in present}, note.receiver, self.external_url,
                                  str(self.reports_dir / f"{incident.id}.json"))
        payload.update(groupKey=note.group_key, groupLabels=note.group_labels,
                       status="firing" if note.firing else "resolved")
        return payload

    def _export(self, now_ms: int, alerts: dict[str, Alert]) -> None:
        firing = [self.statuses[fp]["state"] for fp, a in alerts.items() if a.state == "firing"]
        for state in ("active", "suppressed"):
            self._alerts_gauge.labels(state).set(firing.count(state))
        states = [s["status"]["state"] for s in self.silences.list(now_ms)]
        for state in ("active", "pending", "expired"):
            self._silences_gauge.labels(state).set(states.count(state))
        self._groups_gauge.set(len(self.groups.groups))


def _incident_of(incidents: IncidentManager) -> dict[str, Incident]:
    """Fingerprint -> the incident holding it: the newest one that was not merged away."""
    found: dict[str, Incident] = {}
    for incident in incidents.incidents.values():
        if incident.status != "merged":
            found.update(dict.fromkeys(incident.alert_fingerprints, incident))
    return found


def _unique(incidents: Iterable[Incident]) -> list[Incident]:
    return list({i.id: i for i in incidents}.values())
