"""Control HTTP API of the platform (fault injection and status).

- ``POST /faults`` JSON ``{"kind", "target", "duration_seconds", "params"?}``
  -> 201 with the ground-truth record; 400 ``{"error": "..."}`` naming what was
  wrong (bad JSON, missing field, unknown kind/target, bad duration/params).
- ``GET /faults`` -> ``{"faults": [record, ...]}`` (oldest first).
- ``GET /faults/kinds`` -> ``{"kinds": {kind: [target, ...]}, "descriptions": {kind: text}}``.
- ``GET /traffic`` -> traffic generator stats (``{}`` if traffic is off).
- ``GET /-/healthy`` -> 200 ``{"status": "ok"}``.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FAULT_KINDS, FaultInjector, valid_targets

REQUIRED_FIELDS = ("kind", "target", "duration_seconds")


def _error(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def control_app(injector: FaultInjector, traffic_stats: Callable[[], dict[str, Any]] = dict) -> Starlette:
    """Build the control ASGI app around ``injector``; ``traffic_stats()`` feeds ``GET /traffic``."""

    async def post_fault(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError as exc:
            return _error(f"invalid JSON body: {exc}")
        if not isinstance(body, dict):
            return _error("JSON body must be an object with fields kind, target, duration_seconds[, params]")
        missing = [f for f in REQUIRED_FIELDS if f not in body]
        if missing:
            return _error(f"missing field(s): {', '.join(missing)}; required: {', '.join(REQUIRED_FIELDS)}")
        unknown = sorted(set(body) - set(REQUIRED_FIELDS) - {"params"})
        if unknown:
            return _error(f"unknown field(s): {', '.join(unknown)}; "
                          f"allowed: {', '.join(REQUIRED_FIELDS + ('params',))}")
        try:
            record = injector.inject(body["kind"], body["target"], body["duration_seconds"], body.get("params"))
        except ValueError as exc:
            return _error(str(exc))
        return JSONResponse(record, status_code=201)

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": injector.records()})

    async def kinds(request: Request) -> Response:
        return JSONResponse({
            "kinds": {k: valid_targets(k) for k in FAULT_KINDS},
            "descriptions": {k: v.description for k, v in FAULT_KINDS.items()},
        })

    async def traffic(request: Request) -> Response:
        return JSONResponse(traffic_stats())

    async def healthy(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/faults", post_fault, methods=["POST"]),
        Route("/faults", list_faults, methods=["GET"]),
        Route("/faults/kinds", kinds, methods=["GET"]),
        Route("/traffic", traffic, methods=["GET"]),
        Route("/-/healthy", healthy, methods=["GET"]),
    ])
