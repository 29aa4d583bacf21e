"""The REST API (FastAPI), served by the same app as the wall screen.

Responses use Prometheus's envelope: ``{"status": "success", "data": ...}``, or
``{"status": "error", "errorType": ..., "error": ...}`` with a 4xx status.

===========================================  ============================================================
``GET /api/v1/alerts``                       every alert (pending, firing, recently resolved)
``GET /api/v1/incidents``                    incidents, newest first; ``?status=open`` filters
``GET /api/v1/incidents/{id}``               one incident: the full standardized report
``GET /api/v1/incidents/{id}/report``        the report file, ``?format=md`` (default) or ``json``
``POST /api/v1/incidents/{id}/acknowledge``  acknowledge (bearer token; body ``{"by": NAME}``)
``POST /api/v1/incidents/{id}/resolve``      resolve by hand (bearer token; body ``{"by": NAME}``)
``GET /api/v1/targets``                      scrape targets and their health
``GET /metrics``                             OpsWatch's own metrics (Prometheus text format)
``GET /-/healthy``                           liveness
===========================================  ============================================================

Write endpoints need ``Authorization: Bearer <api_token>`` (configuration key ``api_token`` or the
environment variable ``OPSWATCH_API_TOKEN``); without a configured token they answer 403.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from alerting.report import render_markdown

if TYPE_CHECKING:
    from .pipeline import Pipeline


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message}, status_code=status)


class IncidentChange(BaseModel):
    by: str = Field("api", min_length=1, max_length=200, description="who does it, for the timeline")


def api_token(pipeline: "Pipeline") -> str | None:
    """The configured token of the write endpoints: ``api_token``, else ``$OPSWATCH_API_TOKEN``."""
    return pipeline.config.api_token or os.environ.get("OPSWATCH_API_TOKEN") or None


def check_token(pipeline: "Pipeline", token: str | None) -> None:
    """Compare ``token`` with :func:`api_token` in constant time.

    :raises PermissionError: when no token is configured (writes disabled) or ``token`` does not match.
    """
    expected = api_token(pipeline)
    if not expected:
        raise PermissionError("write actions are disabled: set api_token in the configuration "
                              "(or OPSWATCH_API_TOKEN) and send it as a bearer token")
    if not token or not secrets.compare_digest(token.encode(), expected.encode()):
        raise PermissionError("the API token is missing or wrong")


def incident_action(pipeline: "Pipeline") -> Callable[[str, str, str, str], dict]:
    """``act(incident_id, action, by, token)``: :meth:`Pipeline.change_incident` behind :func:`check_token`
    (the wall screen's incident page uses the same check as the REST API)."""

    def act(incident_id: str, action: str, by: str, token: str) -> dict:
        check_token(pipeline, token)
        return pipeline.change_incident(incident_id, action, by)

    return act


def create_api(pipeline: "Pipeline") -> FastAPI:
    """A FastAPI app exposing ``pipeline``'s state (read from its snapshot, never mid-evaluation)."""
    app = FastAPI(title="OpsWatch", version="0.1.0", docs_url="/api/docs", openapi_url="/api/openapi.json")

    def find(incident_id: str) -> dict | None:
        return next((i for i in pipeline.snapshot.incidents if i["id"] == incident_id), None)

    @app.get("/api/v1/alerts")
    def alerts() -> dict:
        return {"status": "success", "data": {"alerts": pipeline.snapshot.alerts}}

    @app.get("/api/v1/incidents")
    def incidents(status: str | None = None) -> dict:
        rows = [i for i in pipeline.snapshot.incidents if status is None or i["status"] == status]
        rows.sort(key=lambda i: i["opened_at"], reverse=True)
        return {"status": "success", "data": rows}

    @app.get("/api/v1/incidents/{incident_id}")
    def incident(incident_id: str):
        found = find(incident_id)
        if found is None:
            return _error(404, "not_found", f"no incident {incident_id!r}; GET /api/v1/incidents lists them")
        return {"status": "success", "data": found}

    @app.get("/api/v1/incidents/{incident_id}/report")
    def report(incident_id: str, format: str = "md"):
        found = find(incident_id)
        if found is None:
            return _error(404, "not_found", f"no incident {incident_id!r}")
        if format == "json":
            return Response(Path(found["report"]).read_text(), media_type="application/json")
        if format == "md":
            return PlainTextResponse(render_markdown(found), media_type="text/markdown")
        return _error(400, "bad_data", f"format={format!r}: use md or json")

    bearer = HTTPBearer(auto_error=False)
    act = incident_action(pipeline)

    def change(incident_id: str, action: str, body: IncidentChange, credentials) -> JSONResponse | dict:
        try:
            return {"status": "success", "data": act(incident_id, action, body.by, credentials.credentials if credentials else "")}
        except PermissionError as exc:
            status = 401 if api_token(pipeline) else 403
            return _error(status, "unauthorized", str(exc))
        except KeyError:
            return _error(404, "not_found", f"no incident {incident_id!r}; GET /api/v1/incidents lists them")
        except ValueError as exc:
            return _error(409, "conflict", str(exc))

    @app.post("/api/v1/incidents/{incident_id}/acknowledge")
    def acknowledge(incident_id: str, body: IncidentChange | None = None,
                    credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        return change(incident_id, "acknowledge", body or IncidentChange(), credentials)

    @app.post("/api/v1/incidents/{incident_id}/resolve")
    def resolve(incident_id: str, body: IncidentChange | None = None,
                credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        return change(incident_id, "resolve", body or IncidentChange(), credentials)

    @app.get("/api/v1/targets")
    def targets() -> dict:
        return {"status": "success", "data": {"activeTargets": pipeline.snapshot.targets}}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(pipeline.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/-/healthy")
    def healthy() -> PlainTextResponse:
        return PlainTextResponse("OpsWatch is Healthy.\n")

    return app
