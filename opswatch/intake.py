"""Alert intake routes: OpsWatch as an Alertmanager for Prometheus, and as an Alertmanager's webhook receiver.

=============================================  ===================================================================
``POST /api/v2/alerts``                        Alertmanager API v2 ``postAlerts``: a JSON list of
                                               ``{labels, annotations, startsAt, endsAt, generatorURL}``. Point
                                               Prometheus's ``alerting.alertmanagers`` at OpsWatch's host:port.
``POST /api/v1/intake/alertmanager``           Alertmanager's webhook payload version 4 (``webhook_configs: [{url:
                                               http://OPSWATCH/api/v1/intake/alertmanager}]``)
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
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool

from alerting.external import IntakeError, parse_postable_alerts, parse_webhook

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

    return router
