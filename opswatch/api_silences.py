"""Silences over HTTP, in Alertmanager's API v2 shapes (so amtool-style clients work unchanged):

===============================  =====================================================================
``GET /api/v2/silences``         every kept silence (``gettableSilence`` list, a bare JSON array)
``GET /api/v2/silence/{id}``     one silence
``POST /api/v2/silences``        create, or update when the body has an ``id`` (bearer token);
                                 body :class:`alerting.silences.PostableSilence`, answers ``{"silenceID"}``
``DELETE /api/v2/silence/{id}``  expire now (bearer token)
===============================  =====================================================================

Writes need ``Authorization: Bearer <api_token>`` like every write endpoint (:func:`opswatch.api.check_token`):
403 when no token is configured, 401 when it is missing or wrong. A body that is not valid answers 400
naming each bad key (``matchers.0.value: Field required``); an unknown id 404; expiring an expired silence 409.
Errors use OpsWatch's envelope ``{"status": "error", "errorType", "error"}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from alerting.silences import parse_silence

from .api_common import api_error, bearer, read_body, refusal

if TYPE_CHECKING:
    from .pipeline import Pipeline

def silences_router(pipeline: "Pipeline") -> APIRouter:
    """The routes above over ``pipeline.silences``, timed by ``pipeline.clock``."""
    router = APIRouter()

    def now_ms() -> int:
        return int(pipeline.clock() * 1000)

    @router.get("/api/v2/silences")
    def list_silences():
        return pipeline.silences.list(now_ms())

    @router.get("/api/v2/silence/{silence_id}")
    def get_silence(silence_id: str):
        try:
            return pipeline.silences.get(silence_id, now_ms())
        except KeyError:
            return api_error(404, "not_found", f"no silence {silence_id!r}; GET /api/v2/silences lists them")

    @router.post("/api/v2/silences")
    async def post_silence(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        if (denied := refusal(pipeline, credentials)) is not None:
            return denied
        raw = await read_body(request)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            body = parse_silence(json.loads(raw or b"null"))
            silence_id = await run_in_threadpool(pipeline.silences.upsert, body, now_ms())
        except json.JSONDecodeError as exc:
            return api_error(400, "bad_data", f"the body is not JSON: {exc}")
        except KeyError as exc:
            return api_error(404, "not_found", str(exc.args[0]))
        except ValueError as exc:
            return api_error(400, "bad_data", str(exc))
        return {"silenceID": silence_id}

    @router.delete("/api/v2/silence/{silence_id}")
    async def delete_silence(silence_id: str, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        if (denied := refusal(pipeline, credentials)) is not None:
            return denied
        try:
            await run_in_threadpool(pipeline.silences.expire, silence_id, now_ms())
        except KeyError:
            return api_error(404, "not_found", f"no silence {silence_id!r}")
        except ValueError as exc:
            return api_error(409, "conflict", str(exc))
        return Response(status_code=200)

    return router
