"""The alert lifecycle: pending -> firing -> resolved, per fingerprint (Prometheus's alerting rule state
machine, ``rules/alerting.go``), and its persistence across restarts.

Every evaluation passes the conditions that hold now and the names of the rules that were evaluated:

* a new condition starts ``pending`` with ``activeAt = now``; once it has held for the rule's ``for`` it is
  ``firing`` (``startsAt``); a ``for`` of 0 fires at once;
* when a firing alert's condition stops holding it stays firing for the rule's ``keep_firing_for`` (counted
  from the first evaluation without it), then becomes ``resolved`` (``endsAt = now``); a pending alert that
  stops holding is dropped;
* an active alert whose rule was *not* evaluated (the rule failed, or is gone from the rules file after a
  restart) resolves once it has not been refreshed for ``resolve_timeout_ms`` (Alertmanager's
  ``resolve_timeout``, 5 m by default);
* an external alert (from Prometheus or an Alertmanager, :mod:`alerting.external`) is left to its sender:
  it resolves when its ``endsAt`` passes;
* resolved alerts are kept for ``retention_ms`` so receivers and incident reports can still see them; if a
  resolved alert's condition comes back only briefly (pending, then gone), the resolved alert is kept as it was.

:class:`AlertStateFile` writes the alerts and incidents to a JSON file in the data directory, atomically
(write to a temporary file, fsync, rename), and reads them back at start, so after a restart a firing alert
keeps firing with its original ``startsAt`` and its open incident is not opened (and paged) again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path

from detection.base import Score
from opswatch.errors import ConfigError
from topology.rca import Candidate, Evidence

from .incidents import Incident, IncidentManager, TimelineEntry
from .model import Alert
from .rules import Condition

RESOLVE_TIMEOUT_MS = 300_000
"""Alertmanager's default ``resolve_timeout``."""


class AlertTracker:
    """Holds every alert by fingerprint. Not thread-safe: one evaluation loop owns it.

    :param retention_ms: how long resolved alerts are kept; :param resolve_timeout_ms: see the module doc.
    """

    def __init__(self, retention_ms: int = 3_600_000, resolve_timeout_ms: int = RESOLVE_TIMEOUT_MS):
        self.retention_ms, self.resolve_timeout_ms = retention_ms, resolve_timeout_ms
        self.alerts: dict[str, Alert] = {}
        self._resolved_before: dict[str, Alert] = {}  # resolved alerts whose condition is pending again

    def update(self, now_ms: int, conditions: list[Condition], evaluated: set[str] | None = None) -> list[Alert]:
        """Apply one evaluation.

        :param conditions: the conditions that hold now (each carries its rule's ``for``/``keep_firing_for``).
        :param evaluated: names of the alerting rules evaluated now; None means every rule with an alert.
        :returns: the alerts whose state changed (became pending, firing or resolved).
        """
        changed: list[Alert] = []
        seen = set()
        for cond in conditions:
            alert = Alert(cond.labels, cond.annotations, "pending", now_ms, cond.value, cond.signal,
                          for_ms=cond.for_ms, keep_firing_for_ms=cond.keep_firing_for_ms)
            fp = alert.fingerprint
            seen.add(fp)
            current = self.alerts.get(fp)
            if current is None or current.state == "resolved":
                if current is not None:
                    self._resolved_before[fp] = current
                current = self.alerts[fp] = alert
                changed.append(current)
            current.value, current.annotations = cond.value, cond.annotations
            current.for_ms, current.keep_firing_for_ms = cond.for_ms, cond.keep_firing_for_ms
            current.last_evaluated_ms, current.keep_firing_since_ms = now_ms, None
            _explain(current, cond.score, cond.value)
            if current.state == "pending" and now_ms - current.active_at_ms >= cond.for_ms:
                current.state, current.fired_at_ms = "firing", now_ms
                self._resolved_before.pop(fp, None)
                changed.append(current)
        for fp, alert in list(self.alerts.items()):
            if fp in seen:
                continue
            if alert.state == "resolved":
                if now_ms - (alert.resolved_at_ms or now_ms) > self.retention_ms:
                    del self.alerts[fp]
                continue
            if alert.source != "rule":  # an external alert ends at its endsAt (alerting/external.py), not by rules
                if alert.ends_at_ms is not None and now_ms >= alert.ends_at_ms:
                    alert.state, alert.resolved_at_ms = "resolved", alert.ends_at_ms
                    changed.append(alert)
                continue
            if evaluated is not None and alert.name not in evaluated:
                last = alert.last_evaluated_ms if alert.last_evaluated_ms is not None else alert.active_at_ms
                if now_ms - last < self.resolve_timeout_ms:
                    continue  # its rule did not run now: leave it as it is, until the resolve timeout
            elif alert.state == "firing" and alert.keep_firing_for_ms > 0:
                if alert.keep_firing_since_ms is None:
                    alert.keep_firing_since_ms = now_ms
                if now_ms - alert.keep_firing_since_ms < alert.keep_firing_for_ms:
                    alert.last_evaluated_ms = now_ms
                    continue
            if alert.state == "pending":
                previous = self._resolved_before.pop(fp, None)
                if previous is None:
                    del self.alerts[fp]
                else:
                    self.alerts[fp] = previous
            else:
                alert.state, alert.resolved_at_ms = "resolved", now_ms
                changed.append(alert)
        return changed

    def active(self) -> list[Alert]:
        """Pending and firing alerts, oldest first."""
        return sorted((a for a in self.alerts.values() if a.state != "resolved"), key=lambda a: a.active_at_ms)


def _explain(alert: Alert, score: Score | None, value: float) -> None:
    """Record the detector's explanation on the alert (baseline, observed, peak score)."""
    if score is not None and not math.isnan(score.score):
        alert.baseline, alert.observed, alert.score = score.baseline, score.value, score.score
    else:
        alert.observed = value
    if not math.isnan(alert.score):
        alert.max_score = alert.score if math.isnan(alert.max_score) else max(alert.max_score, alert.score)


class AlertStateFile:
    """Alerts and incidents persisted as JSON at ``path`` (``data_dir/alerts.json``).

    Shape: ``{"version": 1, "saved_at_ms": int, "alerts": [Alert fields], "incidents": [Incident fields]}``;
    NaN is written as null. Writes are atomic (temporary file in the same directory, fsync, rename), so a
    crash leaves the previous state or the new one, never a torn file.
    """

    VERSION = 1

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def save(self, tracker: AlertTracker, incidents: IncidentManager, now_ms: int) -> None:
        """Write the current state. :raises OSError: when the directory cannot be written."""
        state = {"version": self.VERSION, "saved_at_ms": now_ms,
                 "alerts": [_clean(dataclasses.asdict(a)) for a in tracker.alerts.values()],
                 "incidents": [_clean(dataclasses.asdict(i)) for i in incidents.incidents.values()]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, tracker: AlertTracker, incidents: IncidentManager) -> int:
        """Restore a saved state into ``tracker`` and ``incidents`` (nothing when no file exists).

        :returns: how many alerts were restored.
        :raises ConfigError: the file exists but is not a state this version wrote (naming the file and why;
            move it away to start with no alerts).
        """
        if not self.path.exists():
            return 0
        try:
            state = json.loads(self.path.read_text())
            if state.get("version") != self.VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {self.VERSION}")
            alerts = [Alert(**_nan(a)) for a in state["alerts"]]
            restored = [_incident(i) for i in state["incidents"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path}: cannot restore alert state: {exc}; move the file away to start "
                              f"without the previous alerts") from exc
        tracker.alerts = {a.fingerprint: a for a in alerts}
        incidents.restore(restored)
        return len(alerts)


def _clean(value):
    """JSON has no NaN: NaN becomes null (restored as NaN by :func:`_nan`)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


_FLOAT_FIELDS = {f.name for f in dataclasses.fields(Alert) if f.type in ("float", float)}


def _nan(fields: dict) -> dict:
    return {k: (math.nan if v is None and k in _FLOAT_FIELDS else v) for k, v in fields.items()}


def _incident(fields: dict) -> Incident:
    def evidence(e: dict) -> Evidence:
        return Evidence(**{k: (math.nan if v is None else v) for k, v in e.items()})

    fields = dict(fields)
    fields["timeline"] = [TimelineEntry(**e) for e in fields["timeline"]]
    fields["root_causes"] = [Candidate(c["node"], c["score"], c["reasons"], [evidence(e) for e in c["evidence"]])
                             for c in fields["root_causes"]]
    return Incident(**fields)
