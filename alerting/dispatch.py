"""Aggregation groups and their timers: Alertmanager's dispatcher and dedup stage, driven by a clock.

Each firing alert is routed (:class:`alerting.routing.Route`) and put in the aggregation group named by its
route and group labels. :meth:`GroupDispatcher.flush` is called with the time and every alert (firing or
resolved, muted or not); it updates the groups and returns the notifications due:

* a new group is first flushed ``group_wait`` after its first alert arrived (at once when that alert
  started more than ``group_wait`` ago, e.g. after a restart), then every ``group_interval``;
* at a flush a notification goes out when the group has a firing alert the receiver was not told about,
  or a resolved alert it was told was firing, or when ``repeat_interval`` has passed since the last
  notification of a group that still fires (Alertmanager's ``DedupStage.needsUpdate``);
* muted alerts (silenced or inhibited) are left out of notifications, so a group whose alerts are all
  muted sends nothing; their groups and timers live on, so a page follows soon after a silence ends;
* a group whose route is muted by its time intervals (:meth:`Route.muted_by`) sends nothing at a flush and
  logs nothing, so what it held back goes out at its first flush after the mute ends;
* a resolved alert leaves its group at the group's next flush, after being notified as resolved if the
  receiver knew it as firing; an empty group is dropped.

Flushes happen at the times :meth:`flush` is called (OpsWatch calls it at every evaluation), so a timer
fires up to one evaluation interval late. What was last notified per (group, receiver) is Alertmanager's
notification log; it is saved to ``data_dir/nflog.json`` so a restart does not page again for alerts that
were already notified (``nflog`` retention: 120 h, Alertmanager's default).

Source: Alertmanager ``dispatch/dispatch.go`` and ``notify/notify.go`` semantics, as documented in
https://prometheus.io/docs/alerting/latest/configuration/#route .
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from opswatch.errors import ConfigError

from .routing import Route
from .statefile import read_json_state, write_json_atomic

NFLOG_RETENTION_MS = 120 * 3_600_000


@dataclass(frozen=True)
class DispatchAlert:
    """What the dispatcher needs of an alert. ``labels`` are the routing labels (the alert's labels plus
    ``incident``); ``firing`` False means resolved; ``muted``: silenced or inhibited now."""

    fingerprint: str
    labels: Mapping[str, str]
    firing: bool
    starts_at_ms: int
    muted: bool = False


@dataclass(frozen=True)
class Notification:
    """One notification due for ``receiver``: the group's non-muted ``firing`` fingerprints and the
    ``resolved`` ones the receiver had been told were firing. ``repeat``: nothing changed, re-sent after
    ``repeat_interval``."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    route: Route
    firing: list[str]
    resolved: list[str]
    at_ms: int
    repeat: bool = False


@dataclass
class AggregationGroup:
    route: Route
    labels: dict[str, str]
    key: str
    next_flush_ms: int
    members: dict[str, DispatchAlert] = field(default_factory=dict)
    notified: set[str] = field(default_factory=set)  # told firing at some point, so owed a resolved notice


@dataclass
class LogEntry:
    """The last notification of one (group, receiver): Alertmanager's ``nflog`` entry."""

    firing: set[str]
    resolved: set[str]
    sent_at_ms: int
    labels: dict[str, str] = field(default_factory=dict)  # the group's labels


def group_key(route: Route, labels: Mapping[str, str]) -> str:
    """Alertmanager's group key: ``{}:{incident="INC-20261123-0001"}``."""
    return f"{route.key}:{{{', '.join(f'{n}={json.dumps(labels[n])}' for n in sorted(labels))}}}"


class GroupDispatcher:
    """The aggregation groups of one routing tree, and the notification log.

    :param route: the root of the routing tree; :param nflog_path: where the notification log is kept
        (None: in memory only); :param retention_ms: how long notification log entries are kept.
    :raises ConfigError: when ``nflog_path`` exists but cannot be restored (naming the file).
    """

    VERSION = 1

    def __init__(self, route: Route, nflog_path: str | Path | None = None, retention_ms: int = NFLOG_RETENTION_MS):
        self.route, self.retention_ms = route, retention_ms
        self.path = Path(nflog_path) if nflog_path else None
        self.groups: dict[tuple[str, frozenset], AggregationGroup] = {}
        self.nflog: dict[tuple[str, str], LogEntry] = {}
        self._load()

    def flush(self, now_ms: int, alerts: Iterable[DispatchAlert]) -> list[Notification]:
        """Put ``alerts`` (every alert known now) in their groups and return the notifications due at ``now_ms``."""
        self._regroup(now_ms, alerts)
        due: list[Notification] = []
        for gid, group in list(self.groups.items()):
            if group.next_flush_ms > now_ms:
                continue
            note = self._flush_group(group, now_ms)
            if note is not None:
                due.append(note)
            group.members = {fp: a for fp, a in group.members.items() if a.firing}
            group.next_flush_ms = now_ms + group.route.group_interval_ms
            if not group.members:
                del self.groups[gid]
        expired = self._expire_log(now_ms)
        if due or expired:
            self._save(now_ms)
        return due

    def _regroup(self, now_ms: int, alerts: Iterable[DispatchAlert]) -> None:
        seen: dict[tuple[str, frozenset], set[str]] = {}
        resolved = []
        for alert in alerts:
            if not alert.firing:
                resolved.append(alert)
                continue
            for route in self.route.match(alert.labels):
                labels = route.group_labels(alert.labels)
                gid = (route.path, frozenset(labels.items()))
                group = self.groups.get(gid)
                if group is None:
                    wait = route.group_wait_ms
                    start = now_ms if alert.starts_at_ms + wait <= now_ms else now_ms + wait
                    key = group_key(route, labels)
                    entry = self.nflog.get((key, route.receiver))
                    group = self.groups[gid] = AggregationGroup(route, labels, key, start,
                                                                notified=set(entry.firing) if entry else set())
                group.members[alert.fingerprint] = alert
                seen.setdefault(gid, set()).add(alert.fingerprint)
        for alert in resolved:  # a resolved alert stays in the groups it was firing in, until their next flush
            for gid, group in self.groups.items():
                if alert.fingerprint in group.members:
                    group.members[alert.fingerprint] = alert
                    seen.setdefault(gid, set()).add(alert.fingerprint)
        for gid, group in list(self.groups.items()):  # alerts that moved (incidents merged) or were forgotten
            group.members = {fp: a for fp, a in group.members.items() if fp in seen.get(gid, ())}
            if not group.members:
                del self.groups[gid]

    def _flush_group(self, group: AggregationGroup, now_ms: int) -> Notification | None:
        if group.route.muted_by(now_ms):  # a muted route sends nothing and logs nothing: it is owed later
            return None
        receiver = group.route.receiver
        entry = self.nflog.get((group.key, receiver))
        firing = sorted(fp for fp, a in group.members.items() if a.firing and not a.muted)
        resolved = sorted(fp for fp, a in group.members.items() if not a.firing and fp in group.notified)
        if entry is None:
            send, repeat = bool(firing), False
        else:
            changed = bool(set(firing) - entry.firing or set(resolved) - entry.resolved)
            repeat = not changed and bool(firing) and now_ms - entry.sent_at_ms >= group.route.repeat_interval_ms
            send = changed or repeat
        if not send:
            return None
        self.nflog[(group.key, receiver)] = LogEntry(set(firing), set(resolved), now_ms, dict(group.labels))
        group.notified |= set(firing)
        return Notification(receiver, group.key, dict(group.labels), group.route, firing, resolved, now_ms, repeat)

    def _expire_log(self, now_ms: int) -> bool:
        old = [k for k, e in self.nflog.items() if now_ms - e.sent_at_ms > self.retention_ms]
        for k in old:
            del self.nflog[k]
        return bool(old)

    def _save(self, now_ms: int) -> None:
        if self.path is None:
            return
        write_json_atomic(self.path, {"version": self.VERSION, "saved_at_ms": now_ms, "entries": [
            {"group_key": k, "receiver": r, "firing": sorted(e.firing), "resolved": sorted(e.resolved),
             "sent_at_ms": e.sent_at_ms, "labels": e.labels} for (k, r), e in self.nflog.items()]})

    def _load(self) -> None:
        if self.path is None:
            return
        state = read_json_state(self.path, self.VERSION, "the notification log")
        if state is None:
            return
        try:
            self.nflog = {(e["group_key"], e["receiver"]): LogEntry(set(e["firing"]), set(e["resolved"]),
                                                                    int(e["sent_at_ms"]), dict(e["labels"]))
                          for e in state["entries"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot restore the notification log: {exc}; move the file away "
                              f"(alerts already notified may then be notified again)") from exc
