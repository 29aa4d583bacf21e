"""The alert lifecycle: pending -> firing -> resolved, per fingerprint (Prometheus's rule manager).

Every evaluation passes the conditions that hold now. A new condition starts ``pending`` with
``activeAt = now``; once it has held for the rule's ``for`` it is ``firing``; when it stops holding a
firing alert becomes ``resolved`` (``endsAt = now``) and a pending one is dropped. Resolved alerts are
kept for ``retention_ms`` so receivers and incident reports can still see them; if a resolved alert's
condition comes back only briefly (pending, then gone), the resolved alert is kept as it was.
"""

from __future__ import annotations

import math

from detection.base import Score

from .model import Alert
from .rules import Condition


class AlertTracker:
    """Holds every alert by fingerprint. Not thread-safe: one evaluation loop owns it."""

    def __init__(self, retention_ms: int = 3_600_000):
        self.retention_ms = retention_ms
        self.alerts: dict[str, Alert] = {}
        self._resolved_before: dict[str, Alert] = {}  # resolved alerts whose condition is pending again

    def update(self, now_ms: int, conditions: list[tuple[Condition, int]]) -> list[Alert]:
        """Apply one evaluation: ``conditions`` are (condition, the rule's ``for`` in ms) that hold now.

        :returns: the alerts whose state changed (became pending, firing or resolved).
        """
        changed: list[Alert] = []
        seen = set()
        for cond, for_ms in conditions:
            alert = Alert(cond.labels, cond.annotations, "pending", now_ms, cond.value, cond.signal)
            fp = alert.fingerprint
            seen.add(fp)
            current = self.alerts.get(fp)
            if current is None or current.state == "resolved":
                if current is not None:
                    self._resolved_before[fp] = current
                current = self.alerts[fp] = alert
                changed.append(current)
            current.value, current.annotations = cond.value, cond.annotations
            _explain(current, cond.score, cond.value)
            if current.state == "pending" and now_ms - current.active_at_ms >= for_ms:
                current.state, current.fired_at_ms = "firing", now_ms
                self._resolved_before.pop(fp, None)
                changed.append(current)
        for fp, alert in list(self.alerts.items()):
            if fp in seen:
                continue
            if alert.state == "pending":
                previous = self._resolved_before.pop(fp, None)
                if previous is None:
                    del self.alerts[fp]
                else:
                    self.alerts[fp] = previous
            elif alert.state == "firing":
                alert.state, alert.resolved_at_ms = "resolved", now_ms
                changed.append(alert)
            elif now_ms - (alert.resolved_at_ms or now_ms) > self.retention_ms:
                del self.alerts[fp]
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
