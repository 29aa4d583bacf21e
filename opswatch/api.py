"""The REST API (FastAPI), served by the same app as the wall screen.

Responses use Prometheus's envelope: ``{"status": "success", "data": ...}``, or
``{"status": "error", "errorType": ..., "error": ...}`` with a 4xx status.

===========================================  ============================================================
``GET /api/v1/alerts``                       every alert (pending, firing, recently resolved)
``GET /api/v1/incidents``                    incidents, newest first, without chart points; ``?status=open`` filters
``GET /api/v1/incidents/{id}``               one incident: the full standardized report
``GET /api/v1/incidents/{id}/report``        the report, ``?format=md`` (default), ``json`` or ``html``
``POST /api/v1/incidents/{id}/acknowledge``  acknowledge (bearer token; body ``{"by": NAME}``)
``POST /api/v1/incidents/{id}/assign``       assign (bearer token; body ``{"by": NAME, "assignee": NAME}``)
``POST /api/v1/incidents/{id}/comment``      comment (bearer token; body ``{"by": NAME, "text": TEXT}``)
``POST /api/v1/incidents/{id}/resolve``      resolve by hand (bearer token; body ``{"by": NAME}``)
``POST /api/v1/changes``                     record a deploy or config change (bearer token; :class:`ChangeIn`)
``GET /api/v1/changes``                      change events, oldest first; ``?node=&start=&end=`` (RFC 3339)
``GET /api/v1/targets``                      scrape targets and their health
``POST /api/v2/alerts``                      alerts from Prometheus, as to an Alertmanager (:mod:`opswatch.intake`)
``GET /api/v2/alerts``                       unresolved alerts as Alertmanager's ``getAlerts`` (:mod:`opswatch.intake`)
``GET|POST /api/v2/silences``               silences in Alertmanager's shapes; ``DELETE /api/v2/silence/{id}`` (:mod:`opswatch.api_silences`)
``POST /api/v1/intake/alertmanager``         an Alertmanager's webhook (payload version 4; :mod:`opswatch.intake`)
``GET /api/v1/topology``                     declared vs observed call edges (:mod:`opswatch.topology_api`)
``/api/v1/detection/*``                      calendar, explanations, feedback (:mod:`opswatch.api_detection`)
``GET /metrics``                             OpsWatch's own metrics (Prometheus text format)
``GET /-/healthy``                           liveness
===========================================  ============================================================

Write endpoints need ``Authorization: Bearer <api_token>`` (configuration key ``api_token`` or the
environment variable ``OPSWATCH_API_TOKEN``); without a configured token they answer 403, with a missing
or wrong one 401. A body that is not JSON answers 400, one that does not fit the endpoint's model 422 with
the offending field named (``body.assignee: Field required``); an unknown incident 404; an action that does
not apply (acknowledging a resolved incident) 409.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alerting.changes import CHANGE_KINDS, ChangeEvent, new_change_id
from alerting.model import parse_rfc3339
from alerting.report import render_html, render_markdown

from .api_common import api_error, bearer, check_token, parse_body, refusal
from .api_detection import detection_router
from .api_silences import silences_router

if TYPE_CHECKING:
    from .pipeline import Pipeline



class IncidentChange(BaseModel):
    """Body of ``acknowledge`` and ``resolve``."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200, pattern=r"\S", description="who does it, for the timeline")


class IncidentAssign(IncidentChange):
    assignee: str = Field(min_length=1, max_length=200, pattern=r"\S", description="the person who owns it")


class IncidentComment(IncidentChange):
    text: str = Field(min_length=1, max_length=10_000, pattern=r"\S", description="the comment")


INCIDENT_BODIES: dict[str, type[IncidentChange]] = {
    "acknowledge": IncidentChange, "assign": IncidentAssign, "comment": IncidentComment, "resolve": IncidentChange}


class ChangeIn(BaseModel):
    """Body of ``POST /api/v1/changes``: a deploy or configuration change of a topology node."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,64}$",
                           description="the sender's id (the same id twice is stored once); default: a new one")
    kind: Literal[CHANGE_KINDS] = Field(description="deploy or config")
    node: str = Field(min_length=1, max_length=200, description="the service or infrastructure node changed")
    version: str = Field("", max_length=200, description="the version deployed")
    description: str = Field(min_length=1, max_length=2000)
    author: str = Field(min_length=1, max_length=200, pattern=r"\S")
    time: AwareDatetime | None = Field(None, description="when it happened (RFC 3339 with offset); default: now")


def incident_action(pipeline: "Pipeline") -> Callable[..., dict]:
    """``act(incident_id, action, by, token, assignee=None, text=None)``: :meth:`Pipeline.change_incident`
    behind :func:`check_token`; the wall screen's incident page and the REST API both act through it."""

    def act(incident_id: str, action: str, by: str, token: str, **details: str) -> dict:
        check_token(pipeline, token)
        return pipeline.change_incident(incident_id, action, by, **details)

    return act


def create_api(pipeline: "Pipeline") -> FastAPI:
    """A FastAPI app exposing ``pipeline``'s state (read from its snapshot, never mid-evaluation)."""
    app = FastAPI(title="OpsWatch", version="0.1.0", docs_url="/api/docs", openapi_url="/api/openapi.json")
    from . import intake, topology_api  # here: opswatch.intake uses this module's token check
    app.include_router(intake.intake_router(pipeline))
    app.include_router(topology_api.topology_router(pipeline))

    def find(incident_id: str) -> dict | None:
        return next((i for i in pipeline.snapshot.incidents if i["id"] == incident_id), None)

    @app.get("/api/v1/alerts")
    def alerts() -> dict:
        return {"status": "success", "data": {"alerts": pipeline.snapshot.alerts}}

    @app.get("/api/v1/incidents")
    def incidents(status: str | None = None) -> dict:
        # the chart points stay with each incident's own report: a list of many would carry thousands
        rows = [{k: v for k, v in i.items() if k != "charts"} for i in pipeline.snapshot.incidents
                if status is None or i["status"] == status]
        rows.sort(key=lambda i: i["opened_at"], reverse=True)
        return {"status": "success", "data": rows}

    @app.get("/api/v1/incidents/{incident_id}")
    def incident(incident_id: str):
        found = find(incident_id)
        if found is None:
            return api_error(404, "not_found", f"no incident {incident_id!r}; GET /api/v1/incidents lists them")
        return {"status": "success", "data": found}

    @app.get("/api/v1/incidents/{incident_id}/report")
    def report(incident_id: str, format: str = "md"):
        found = find(incident_id)
        if found is None:
            return api_error(404, "not_found", f"no incident {incident_id!r}")
        if format == "json":
            return Response(Path(found["report"]).read_text(), media_type="application/json")
        if format == "md":
            return PlainTextResponse(render_markdown(found), media_type="text/markdown")
        if format == "html":
            return HTMLResponse(render_html(found))
        return api_error(400, "bad_data", f"format={format!r}: use md, json or html")

    act = incident_action(pipeline)

    @app.post("/api/v1/incidents/{incident_id}/{action}")
    async def change(incident_id: str, action: str, request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        if action not in INCIDENT_BODIES:
            return api_error(404, "not_found", f"no incident action {action!r}; use {', '.join(INCIDENT_BODIES)}")
        if (refused := refusal(pipeline, credentials)) is not None:
            return refused
        body = await parse_body(request, INCIDENT_BODIES[action])
        if isinstance(body, JSONResponse):
            return body
        details = body.model_dump(exclude={"by"})
        try:
            # the token was checked above; act checks it again, as for the wall screen
            data = await run_in_threadpool(act, incident_id, action, body.by, credentials.credentials, **details)
        except KeyError:
            return api_error(404, "not_found", f"no incident {incident_id!r}; GET /api/v1/incidents lists them")
        except ValueError as exc:
            return api_error(409, "conflict", str(exc))
        return {"status": "success", "data": data}

    @app.post("/api/v1/changes")
    async def add_change(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        if (refused := refusal(pipeline, credentials)) is not None:
            return refused
        body = await parse_body(request, ChangeIn)
        if isinstance(body, JSONResponse):
            return body
        if body.node not in pipeline.topology.graph:
            return api_error(422, "bad_data", f"body.node: {body.node!r} is not a node of the dependency graph")
        at_ms = int((body.time.timestamp() if body.time else pipeline.clock()) * 1000)
        event = ChangeEvent(body.id or new_change_id(), body.kind, body.node, body.version, body.description,
                            body.author, at_ms, "api")
        event, new = await run_in_threadpool(pipeline.record_change, event)
        return JSONResponse({"status": "success", "data": event.to_api()}, status_code=201 if new else 200)

    @app.get("/api/v1/changes")
    def changes(node: str | None = None, start: str | None = None, end: str | None = None):
        bounds = {}
        for name, value in (("start", start), ("end", end)):
            try:
                bounds[name] = parse_rfc3339(value) if value else None
            except ValueError:
                return api_error(400, "bad_data", f"{name}={value!r}: write an RFC 3339 time, e.g. 2026-11-23T18:00:00Z")
        found = pipeline.changes.events(node, bounds["start"], bounds["end"])
        return {"status": "success", "data": [e.to_api() for e in found]}

    @app.get("/api/v1/targets")
    def targets() -> dict:
        return {"status": "success", "data": {"activeTargets": pipeline.snapshot.targets}}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(pipeline.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(silences_router(pipeline))  # /api/v2/silences (opswatch/api_silences.py)
    app.include_router(detection_router(pipeline))  # /api/v1/detection/* (opswatch/api_detection.py)

    @app.get("/-/healthy")
    def healthy() -> PlainTextResponse:
        return PlainTextResponse("OpsWatch is Healthy.\n")

    return app
