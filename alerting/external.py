"""Alerts from existing stacks: Prometheus sending to OpsWatch as to an Alertmanager, and an Alertmanager
forwarding to OpsWatch's webhook.

Two payloads are read:

* **Alertmanager API v2** ``postableAlerts`` (``api/v2/openapi.yaml``; what Prometheus's notifier POSTs to
  ``/api/v2/alerts``): a JSON list of ``{labels, annotations, startsAt, endsAt, generatorURL}``; only
  ``labels`` is required.
* **Alertmanager webhook payload, version "4"** (``webhook_config``): ``{version, groupKey, status,
  receiver, groupLabels, commonLabels, commonAnnotations, externalURL, truncatedAlerts, alerts: [{status,
  labels, annotations, startsAt, endsAt, generatorURL, fingerprint}]}``; a firing alert's ``endsAt`` is
  Go's zero time ``0001-01-01T00:00:00Z``.

Times are RFC 3339 with a time zone; Go's zero time means "not set". Label names follow Prometheus's
``[a-zA-Z_][a-zA-Z0-9_]*``. Each alert is checked on its own: a bad one is reported by index and field
(``alerts[2].labels.job: ...``) and the others are still taken, as Alertmanager does.

What an alert becomes follows Alertmanager's API (``api/v2/api.go``, ``types.Alert.Merge``): a missing
``startsAt`` is ``endsAt`` if given, else now; a missing ``endsAt`` is now + ``resolve_timeout`` (5 m; the
webhook's own, longer timeout for forwarded alerts, which an Alertmanager re-sends only every
``repeat_interval``); the alert is resolved once ``endsAt`` passes, or at once when a resolved alert
arrives. A re-sent alert keeps the earliest ``startsAt`` and takes the new ``endsAt``. The fingerprint is
Alertmanager's (:func:`alerting.model.fingerprint`), so an alert keeps its identity across the three.

An alert's topology node is the value of the first of ``node_labels`` (``service``, ``job``, ``node``)
that names a node of the topology; an alert that names none is kept out of the topology grouping: it
groups only with alerts carrying the same unknown value (the first of ``node_labels`` it has), or, having
none of them, with alerts of the same ``alertname`` (Alertmanager's usual ``group_by``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from topology.graph import Topology

from .lifecycle import RESOLVE_TIMEOUT_MS, AlertTracker
from .model import Alert, fingerprint

SOURCES = ("api", "webhook")
_GO_ZERO_TIME_MS = -62135596800000  # 0001-01-01T00:00:00Z


def _rfc3339_ms(value: Any) -> int | None:
    """An RFC 3339 string -> ms since the epoch; Go's zero time and "" -> None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        # pydantic turns a ValueError (not a TypeError) into a validation error naming the field
        raise ValueError(f"must be an RFC 3339 time string like 2026-11-23T18:00:00Z, got {type(value).__name__}")  # noqa: TRY004
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or "T" not in value.upper() or parsed.tzinfo is None:
        raise ValueError(f"{value!r} is not an RFC 3339 time with a time zone, like 2026-11-23T18:00:00Z")
    ms = math.floor(parsed.timestamp() * 1000)
    return None if ms <= _GO_ZERO_TIME_MS else ms


LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
Timestamp = Annotated[int | None, BeforeValidator(_rfc3339_ms)]


class PostableAlert(BaseModel):
    """Alertmanager's ``postableAlert``; unknown fields are ignored, as Alertmanager does."""

    model_config = ConfigDict(extra="ignore")
    labels: dict[LabelName, StrictStr] = Field(min_length=1)
    annotations: dict[LabelName, StrictStr] = Field(default_factory=dict)
    startsAt: Timestamp = None
    endsAt: Timestamp = None
    generatorURL: StrictStr = ""


class WebhookAlert(PostableAlert):
    """One alert of a webhook payload: a ``postableAlert`` with its ``status``."""

    status: Literal["firing", "resolved"]


class WebhookPayload(BaseModel):
    """The envelope of Alertmanager's webhook payload version 4; ``alerts`` are checked one by one."""

    model_config = ConfigDict(extra="ignore")
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: StrictStr = ""
    groupKey: StrictStr = ""
    truncatedAlerts: StrictInt = 0
    alerts: list[Any]


@dataclass(frozen=True)
class ExternalAlert:
    """One valid incoming alert; times in ms since the epoch (None: not given); ``resolved``: the webhook
    said so; ``where``: its place in the request (``[2]``, ``alerts[0]``), for messages."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_ms: int | None
    ends_at_ms: int | None
    generator_url: str = ""
    resolved: bool = False
    where: str = ""


class IntakeError(ValueError):
    """A payload, or some of its alerts, could not be read; ``problems`` name each index and field."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _describe(prefix: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = prefix + "".join(f"[{p}]" if isinstance(p, int) else " (the name)" if p == "[key]" else f".{p}"
                                 for p in err["loc"])
        given = err.get("input")
        shown = "" if isinstance(given, (dict, list)) or err["type"] == "missing" else f" (got {given!r:.80})"
        problems.append(f"{where.lstrip('.')}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return problems


def _one(model: type[PostableAlert], item: Any, where: str) -> tuple[ExternalAlert | None, list[str]]:
    try:
        alert = model.model_validate(item)
    except ValidationError as exc:
        return None, _describe(where, exc)
    if alert.startsAt is not None and alert.endsAt is not None and alert.endsAt < alert.startsAt:
        return None, [f"{where}.endsAt: is before startsAt; an alert cannot end before it starts"]
    resolved = getattr(alert, "status", "firing") == "resolved"
    return ExternalAlert(alert.labels, alert.annotations, alert.startsAt, alert.endsAt, alert.generatorURL,
                         resolved, where), []


def parse_postable_alerts(body: Any) -> tuple[list[ExternalAlert], list[str]]:
    """Read a ``POST /api/v2/alerts`` body (parsed JSON).

    :returns: the valid alerts and one problem per invalid field (``[1].labels: ...``).
    :raises IntakeError: when the body is not a list of alerts at all.
    """
    if not isinstance(body, list):
        raise IntakeError([(f"body: must be a JSON list of alerts [{{labels, annotations, startsAt, endsAt, "
                            f"generatorURL}}], got {type(body).__name__}")])
    alerts, problems = [], []
    for i, item in enumerate(body):
        alert, found = _one(PostableAlert, item, f"[{i}]")
        problems += found
        if alert is not None:
            alerts.append(alert)
    return alerts, problems


def parse_webhook(body: Any) -> tuple[list[ExternalAlert], list[str]]:
    """Read an Alertmanager webhook payload (parsed JSON, version "4").

    :returns: the valid alerts and one problem per invalid field (``alerts[0].status: ...``).
    :raises IntakeError: when the envelope is not a version 4 payload.
    """
    try:
        payload = WebhookPayload.model_validate(body)
    except ValidationError as exc:
        raise IntakeError(_describe("", exc)) from exc
    alerts, problems = [], []
    for i, item in enumerate(payload.alerts):
        alert, found = _one(WebhookAlert, item, f"alerts[{i}]")
        problems += found
        if alert is not None:
            alerts.append(alert)
    return alerts, problems


class AlertIntake:
    """Turns incoming alerts into OpsWatch alerts in an :class:`~alerting.lifecycle.AlertTracker`.

    :param topology: maps alerts to nodes; :param node_labels: labels naming the node, first match wins;
    :param resolve_timeout_ms: end of an alert sent without ``endsAt`` to ``/api/v2/alerts``;
    :param webhook_resolve_timeout_ms: the same for a firing webhook alert; :param max_alerts: active external
        alerts held at most (new ones beyond it are refused).
    """

    def __init__(self, topology: Topology, node_labels: list[str] | tuple[str, ...] = ("service", "job", "node"),
                 resolve_timeout_ms: int = RESOLVE_TIMEOUT_MS, webhook_resolve_timeout_ms: int = 4 * 3600_000 + 600_000,
                 max_alerts: int = 10_000):
        self.topology, self.node_labels = topology, tuple(node_labels)
        self.timeouts_ms = {"api": resolve_timeout_ms, "webhook": webhook_resolve_timeout_ms}
        self.max_alerts = max_alerts

    def node_of(self, labels: dict[str, str]) -> str:
        """The alert's topology node, else its grouping key outside the topology (see the module doc)."""
        present = [labels[name] for name in self.node_labels if labels.get(name)]
        known = [value for value in present if value in self.topology.graph]
        return (known or present or [labels.get("alertname", "")])[0]

    def receive(self, tracker: AlertTracker, alerts: list[ExternalAlert], source: str, now_ms: int) -> tuple[list[Alert], list[str]]:
        """Merge ``alerts`` from ``source`` (``api`` or ``webhook``) into ``tracker`` at ``now_ms``.

        :returns: the alerts that changed (new, firing again, or resolved) and one problem per alert refused
            (named by its ``where``: it has the labels of an active OpsWatch rule alert, or ``max_alerts`` is reached).
        :raises ValueError: for an unknown ``source``.
        """
        if source not in SOURCES:
            raise ValueError(f"source {source!r}: use one of {', '.join(SOURCES)}")
        active = sum(1 for a in tracker.alerts.values() if a.source != "rule" and a.state != "resolved")
        changed, refused = [], []
        for i, ext in enumerate(alerts):
            fp = fingerprint(ext.labels)
            starts = ext.starts_at_ms if ext.starts_at_ms is not None else (
                ext.ends_at_ms if ext.ends_at_ms is not None else now_ms)
            ends = ext.ends_at_ms if ext.ends_at_ms is not None else now_ms + self.timeouts_ms[source]
            resolved = ext.resolved or ends <= now_ms
            current = tracker.alerts.get(fp)
            where = ext.where or f"[{i}]"
            if current is not None and current.source == "rule" and current.state != "resolved":
                refused.append(f"{where}: its labels are those of OpsWatch's own rule alert {current.name!r} "
                               f"(fingerprint {fp}); add a label that tells the sender's alert apart")
                continue
            if current is not None and current.state != "resolved":
                current.annotations, current.generator_url = ext.annotations, ext.generator_url
                current.active_at_ms = min(current.active_at_ms, starts)
                current.fired_at_ms = min(current.fired_at_ms or starts, starts)
                current.ends_at_ms, current.last_evaluated_ms = ends, now_ms
                if resolved:
                    current.state, current.resolved_at_ms = "resolved", min(ends, now_ms)
                    changed.append(current)
                    active -= 1
                continue
            if resolved and current is not None:
                continue  # already resolved here: nothing new
            if not resolved and active >= self.max_alerts:
                refused.append(f"{where}: {self.max_alerts} external alerts are active already (intake.max_alerts); "
                               f"raise the limit or resolve some")
                continue
            alert = Alert(dict(ext.labels), dict(ext.annotations), "resolved" if resolved else "firing", starts,
                          math.nan, fired_at_ms=starts, resolved_at_ms=min(ends, now_ms) if resolved else None,
                          last_evaluated_ms=now_ms, source=source, topology_node=self.node_of(ext.labels),
                          ends_at_ms=ends, generator_url=ext.generator_url)
            tracker.alerts[fp] = alert
            changed.append(alert)
            active += not resolved
        return changed, refused
