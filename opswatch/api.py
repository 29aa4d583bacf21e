"""The REST API (FastAPI), served by the same app as the wall screen.

Responses use Prometheus's envelope: ``{"status": "success", "data": ...}``, or
``{"status": "error", "errorType": ..., "error": ...}`` with a 4xx status.

=====================================  ===========================================================
``GET /api/v1/alerts``                 every alert (pending, firing, recently resolved)
``GET /api/v1/incidents``              incidents, newest first; ``?status=open`` filters
``GET /api/v1/incidents/{id}``         one incident: the full standardized report
``GET /api/v1/incidents/{id}/report``  the report file, ``?format=md`` (default) or ``json``
``GET /api/v1/targets``                scrape targets and their health
``GET /metrics``                       OpsWatch's own metrics (Prometheus text format)
``GET /-/healthy``                     liveness
=====================================  ===========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alerting.report import render_markdown

if TYPE_CHECKING:
    from .pipeline import Pipeline


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message}, status_code=status)


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
