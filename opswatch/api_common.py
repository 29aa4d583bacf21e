"""What every route module of the REST API shares: the error shape, the bearer token of write endpoints,
and reading a bounded JSON body.

Errors use Prometheus's HTTP API envelope, ``{"status": "error", "errorType": ..., "error": ...}``.
Write endpoints take ``Authorization: Bearer <token>`` (RFC 6750); the token is ``api_token`` in the
configuration, else ``$OPSWATCH_API_TOKEN``; with neither, writes are refused (403).
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from .pipeline import Pipeline

MAX_BODY_BYTES = 64 * 1024
"""Largest body a write endpoint reads; reading stops there, whatever ``Content-Length`` says (413)."""

bearer = HTTPBearer(auto_error=False)
"""FastAPI dependency giving the request's bearer credentials, or None."""


def api_error(status: int, kind: str, message: str) -> JSONResponse:
    """A JSON error response in Prometheus's envelope."""
    return JSONResponse({"status": "error", "errorType": kind, "error": message}, status_code=status)


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


def refusal(pipeline: "Pipeline", credentials: HTTPAuthorizationCredentials | None) -> JSONResponse | None:
    """None when ``credentials`` carry the API token; else the 401 (wrong or missing token) or 403 (writes
    disabled) response to return."""
    try:
        check_token(pipeline, credentials.credentials if credentials else None)
    except PermissionError as exc:
        return api_error(401 if api_token(pipeline) else 403, "unauthorized", str(exc))
    return None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | JSONResponse:
    """The request body, read in pieces and never past ``limit`` bytes; over it, the 413 response."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return api_error(413, "bad_data", f"the body is larger than {limit} bytes")
    return bytes(body)


async def parse_body(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
    """The request body as ``model``, or the 400 (not JSON), 413 (too large) or 422 (invalid, naming each
    field) response."""
    body = await read_body(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return api_error(400, "bad_data", f"the body is not a JSON object: {exc.errors()[0]['msg']}")
        problems = "; ".join(".".join(["body", *map(str, e["loc"])]) + f": {e['msg']}" for e in exc.errors())
        return api_error(422, "bad_data", problems)
