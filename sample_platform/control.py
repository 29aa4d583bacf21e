"""Control HTTP API of the platform: fault injection, surges, ground truth, traffic status.

- ``POST /faults`` JSON ``{"kind", "target", "duration_seconds", "params"?}``
  -> 201 with the ground-truth record (with ``expected_impact``); 400 ``{"error": "..."}`` naming what was
  wrong (bad JSON, missing field, unknown kind/target, bad duration/params).
- ``GET /faults`` -> ``{"faults": [record, ...]}``: the whole ground-truth log,
  oldest first -- faults (``"fault": true``) and legitimate surges
  (``"fault": false``, kind ``surge:*``).
- ``GET /faults/kinds`` -> ``{"kinds": {kind: [target, ...]}, "descriptions": {kind: text},
  "params": {kind: {param: default}}}``.
- ``POST /surges`` JSON ``{"kind", "target"?, "duration_seconds", "params"?}``
  (kind with or without the ``surge:`` prefix; target defaults to the kind's
  first) -> 201 with the record; 400 as for faults; 503 when the surge could
  not be started (e.g. the restart of a deploy failed).
- ``GET /surges/kinds`` -> ``{"kinds": {kind: [target, ...]}, "descriptions": {...},
  "params": {kind: {param: default}}}``.
- ``GET /traffic`` -> traffic status (``{}`` if traffic is off): generator stats,
  ``rate`` (requests/s now), ``multiplier``, ``sim_time``, ``time_scale``,
  active ``surges``, ``im`` and ``live`` client stats.
- ``GET /-/healthy`` -> 200 ``{"status": "ok"}``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FAULT_KINDS, FaultInjector, valid_targets
from .surges import SURGE_KINDS, SurgeController

log = logging.getLogger("sample_platform")

FAULT_FIELDS = ("kind", "target", "duration_seconds")
SURGE_FIELDS = ("kind", "duration_seconds")


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any] | Response:
    """The JSON object body with ``required`` fields and no fields beyond ``optional``, else a 400."""
    try:
        body = await request.json()
    except ValueError as exc:
        return _error(f"invalid JSON body: {exc}")
    if not isinstance(body, dict):
        return _error(f"JSON body must be an object with fields {', '.join(required + optional)}")
    missing = [f for f in required if f not in body]
    if missing:
        return _error(f"missing field(s): {', '.join(missing)}; required: {', '.join(required)}")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        return _error(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(required + optional)}")
    return body


def control_app(injector: FaultInjector, surges: SurgeController,
                traffic_status: Callable[[], dict[str, Any]] = dict) -> Starlette:
    """Build the control ASGI app; ``traffic_status()`` feeds ``GET /traffic``."""

    async def post_fault(request: Request) -> Response:
        body = await _body(request, FAULT_FIELDS, ("params",))
        if isinstance(body, Response):
            return body
        try:
            record = injector.inject(body["kind"], body["target"], body["duration_seconds"], body.get("params"))
        except ValueError as exc:
            return _error(str(exc))
        return JSONResponse(record, status_code=201)

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": injector.truth.records()})

    async def fault_kinds(request: Request) -> Response:
        return JSONResponse({
            "kinds": {k: valid_targets(k) for k in FAULT_KINDS},
            "descriptions": {k: v.description for k, v in FAULT_KINDS.items()},
            "params": {k: v.defaults() for k, v in FAULT_KINDS.items()},
        })

    async def post_surge(request: Request) -> Response:
        body = await _body(request, SURGE_FIELDS, ("target", "params"))
        if isinstance(body, Response):
            return body
        try:
            surges.plan(body["kind"], body.get("target"), body["duration_seconds"], body.get("params"))
        except ValueError as exc:
            return _error(str(exc))
        try:
            record = await surges.start(body["kind"], body.get("target"), body["duration_seconds"],
                                        body.get("params"))
        except Exception as exc:  # the platform could not carry it out; nothing was recorded
            log.exception("surge %s could not start", body["kind"])
            return _error(f"surge {body['kind']!r} could not start: {exc}", 503)
        return JSONResponse(record, status_code=201)

    async def surge_kinds(request: Request) -> Response:
        return JSONResponse({
            "kinds": {k: list(v.targets) for k, v in SURGE_KINDS.items()},
            "descriptions": {k: v.description for k, v in SURGE_KINDS.items()},
            "params": {k: {p: s.default for p, s in v.params.items()} for k, v in SURGE_KINDS.items()},
        })

    async def traffic(request: Request) -> Response:
        return JSONResponse(traffic_status())

    async def healthy(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/faults", post_fault, methods=["POST"]),
        Route("/faults", list_faults, methods=["GET"]),
        Route("/faults/kinds", fault_kinds, methods=["GET"]),
        Route("/surges", post_surge, methods=["POST"]),
        Route("/surges/kinds", surge_kinds, methods=["GET"]),
        Route("/traffic", traffic, methods=["GET"]),
        Route("/-/healthy", healthy, methods=["GET"]),
    ])
