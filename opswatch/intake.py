"""Alert intake routes: OpsWatch as an Alertmanager for Prometheus, and as an Alertmanager's webhook receiver.

=============================================  ===================================================================
``POST /api/v2/alerts``                        Alertmanager API v2 ``postAlerts``: a JSON list of
                                               ``{labels, annotations, startsAt, endsAt, generatorURL}``. Point
                                               Prometheus's ``alerting.alertmanagers`` at OpsWatch's host:port.
``POST /api/v1/intake/alertmanager``           Alertmanager's webhook payload version 4 (``webhook_configs: [{url:
                                               http://OPSWATCH/api/v1/intake/alertmanager}]``)
``GET /api/v2/alerts``                         Alertmanager API v2 ``getAlerts``: every alert not yet resolved,
                                               OpsWatch's own and received ones, as ``GettableAlert`` (so ``amtool
                                               alert query`` and Grafana's Alertmanager data source read OpsWatch);
                                               query ``active``, ``silenced``, ``inhibited``, ``unprocessed``
                                               (booleans, default true), ``filter`` (matchers, repeatable) and
                                               ``receiver`` (an anchored regex), as Alertmanager's
=============================================  ===================================================================

Both answer 200 ``{"status": "success", "data": {"accepted": N}}``, or 400 ``{"status": "error", "errorType":
"bad_data", "error": ...}`` naming every bad alert by index and field, after taking the good ones, as
Alertmanager does; a body that is not JSON, or not the payload at all, is a 400 that takes nothing. What
happens to the alerts: :mod:`alerting.external`; they join incidents at the pipeline's next evaluation. When ``api_token`` is configured both need it as a bearer
token (Prometheus: ``authorization: {credentials: TOKEN}`` in the alertmanager config; Alertmanager:
``http_config: {authorization: {credentials: TOKEN}}``); without one they are open, like Alertmanager's API.
Counted in ``opswatch_intake_alerts_total{source, outcome}`` (``accepted``, ``invalid``, ``refused``; a body
that cannot be read at all counts as one invalid alert).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool

from alerting.external import IntakeError, parse_postable_alerts, parse_webhook
from alerting.matchers import matches_all, parse_matchers
from alerting.model import rfc3339

from .api_common import api_error, api_token, check_token, read_body

if TYPE_CHECKING:
    from .pipeline import Pipeline

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Larger bodies are refused (413) as soon as the limit is passed, before they are parsed."""


def intake_router(pipeline: Pipeline) -> APIRouter:
    """The intake routes of ``pipeline`` (include with ``app.include_router``)."""
    router = APIRouter()
    counted = Counter("opswatch_intake_alerts_total", "Alerts received from Prometheus or Alertmanager, by outcome.",
                      ["source", "outcome"], registry=pipeline.registry)

    async def take(request: Request, source: str, parse: Callable) -> JSONResponse | dict:
        if api_token(pipeline):
            header = request.headers.get("authorization", "")
            try:
                check_token(pipeline, header[7:] if header[:7].lower() == "bearer " else "")
            except PermissionError as exc:
                return api_error(401, "unauthorized", str(exc))
        body = await read_body(request, MAX_BODY_BYTES)  # an endless body stops at the limit
        if isinstance(body, JSONResponse):
            return body
        try:
            alerts, problems = parse(json.loads(body))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            counted.labels(source, "invalid").inc()
            return api_error(400, "bad_data", f"body: not JSON ({exc})")
        except RecursionError:
            counted.labels(source, "invalid").inc()
            return api_error(400, "bad_data", "body: JSON nested too deeply to be alerts")
        except IntakeError as exc:
            counted.labels(source, "invalid").inc()
            return api_error(400, "bad_data", str(exc))
        refused = await run_in_threadpool(pipeline.receive_alerts, alerts, source) if alerts else []
        counted.labels(source, "accepted").inc(len(alerts) - len(refused))
        counted.labels(source, "invalid").inc(len(problems))
        counted.labels(source, "refused").inc(len(refused))
        if problems or refused:
            return api_error(400, "bad_data", f"{len(alerts) - len(refused)} alerts accepted; not taken: "
                                           + "; ".join(problems + refused))
        return {"status": "success", "data": {"accepted": len(alerts)}}

    @router.post("/api/v2/alerts")
    async def post_alerts(request: Request):
        return await take(request, "api", parse_postable_alerts)

    @router.post("/api/v1/intake/alertmanager")
    async def alertmanager_webhook(request: Request):
        return await take(request, "webhook", parse_webhook)

    @router.get("/api/v2/alerts")
    def get_alerts(active: bool = True, silenced: bool = True, inhibited: bool = True, unprocessed: bool = True,
                   filter: list[str] = Query(default=[]), receiver: str | None = None):
        try:
            matchers = parse_matchers(m.strip("{}") for m in filter)
            wanted_receiver = re.compile(receiver) if receiver else None
        except (ValueError, re.error) as exc:
            return api_error(400, "bad_data", f"filter/receiver: {exc}")
        snapshot = pipeline.snapshot
        # Prometheus's convention for a firing alert: it ends 4 evaluation intervals on unless re-sent
        ends_ms = snapshot.evaluated_at_ms + 4 * round(pipeline.config.evaluation_seconds * 1000)
        shown = []
        for alert in snapshot.alerts:
            if alert["state"] == "resolved" or not matches_all(matchers, alert["labels"]):
                continue
            status = alert["status"]
            wanted = {"active": active, "unprocessed": unprocessed}.get(status["state"])
            if wanted is None:  # suppressed: shown when either reason it is muted for is asked for
                wanted = (silenced and bool(status["silencedBy"])) or (inhibited and bool(status["inhibitedBy"]))
            receivers = sorted({r.receiver for r in pipeline.paging.groups.route.match(alert["labels"])})
            if not wanted or (wanted_receiver and not any(wanted_receiver.fullmatch(r) for r in receivers)):
                continue
            shown.append(gettable_alert(alert, receivers, ends_ms, snapshot.evaluated_at_ms))
        return shown

    return router


def gettable_alert(alert: dict, receivers: list[str], ends_ms: int, updated_ms: int) -> dict:
    """An unresolved alert of the pipeline's snapshot (:meth:`alerting.model.Alert.to_api` plus ``status``) as
    Alertmanager API v2's ``GettableAlert``, ending at ``ends_ms``; times are RFC 3339 UTC."""
    return {"labels": alert["labels"], "annotations": alert["annotations"], "fingerprint": alert["fingerprint"],
            "startsAt": alert["startsAt"], "updatedAt": rfc3339(updated_ms),
            "endsAt": rfc3339(ends_ms),
            "generatorURL": alert.get("generatorURL") or "", "receivers": [{"name": r} for r in receivers],
            "status": {"state": alert["status"]["state"], "silencedBy": alert["status"]["silencedBy"],
                       "inhibitedBy": alert["status"]["inhibitedBy"], "mutedBy": alert["status"].get("mutedBy", [])}}
