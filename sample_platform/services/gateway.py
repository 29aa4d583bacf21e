"""The gateway (BFF): the public entry point with per-route rate limiting.

Every public route of :data:`~sample_platform.graph.GATEWAY_ROUTES` takes a
``user_id`` (query parameter for GET, JSON body for POST) and is proxied to the
owning service, one call per request:

=======================  ====================================================
``GET /api/feed``        feed ``GET /feed/{user_id}``
``GET /api/profile``     user ``GET /users/{user_id}``
``POST /api/post``       post ``POST /posts`` ``{user_id, text}``
``POST /api/like``       post ``POST /posts/{post_id}/likes`` ``{user_id}``
``POST /api/comment``    post ``POST /posts/{post_id}/comments`` ``{user_id, text}``
``POST /api/media``      media ``POST /media`` ``{user_id, bytes}``
``GET /api/search``      search ``GET /search?q=&user_id=``
``POST /api/message``    message ``POST /messages`` ``{user_id, to_user, text}``
``GET /api/conversations``  message ``GET /conversations/{user_id}``
``GET /api/notifications``  notification ``GET /inbox/{user_id}``
``POST /api/live/join``  live ``POST /rooms/{room_id}/join`` ``{user_id}``
``POST /api/live/beacon``  live ``POST /beacons`` (client telemetry, see :mod:`.live`)
``POST /api/gift``       gift ``POST /orders`` ``{user_id, room_id, gift, amount}``
=======================  ====================================================

``GET /api/feed`` is the app's home screen: besides the feed it asks
notification for the unread badge (``GET /badge/{user_id}``, best effort within
``BADGE_TIMEOUT_SECONDS``, concurrently) and adds ``"unread"`` to the answer.
A downstream 5xx/timeout/connection failure answers 502 (504 for timeouts); a
route over its rate limit answers 429 without calling anyone.

Metrics: ``platform_online_users`` (distinct users in the last 60 s),
``gateway_rate_limited_total{route}``, ``gateway_rate_limit_rps{route}``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..graph import GATEWAY_ROUTES
from ..node import BadRequest, RequestContext, int_field, json_body
from ..params import GatewayParams
from .base import RecentSet, Service

BADGE_TIMEOUT_SECONDS = 0.3


class TokenBucket:
    """Token bucket refilled continuously; ``rate`` and ``burst`` are given on each take so they
    follow parameter changes.  ``clock``: monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tokens: float | None = None  # None: full
        self.last = clock()

    def take(self, rate: float, burst: float) -> bool:
        """Take one token if available (True), else False."""
        now = self.clock()
        tokens = burst if self.tokens is None else min(burst, self.tokens + (now - self.last) * rate)
        self.last = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


def _internal(path: str, data: Any, uid: int) -> tuple[str, dict[str, Any] | None]:
    """The owning service's path and query params for public route ``path``."""
    if path == "/api/feed":
        return f"/feed/{uid}", None
    if path == "/api/profile":
        return f"/users/{uid}", None
    if path == "/api/search":
        q = data.get("q")
        if not q:
            raise BadRequest("'q' is required")
        return "/search", {"q": str(q)[:100], "user_id": uid}
    if path == "/api/conversations":
        return f"/conversations/{uid}", None
    if path == "/api/notifications":
        return f"/inbox/{uid}", None
    if path == "/api/like":
        return f"/posts/{_post_id(data)}/likes", None
    if path == "/api/comment":
        return f"/posts/{_post_id(data)}/comments", None
    if path == "/api/live/join":
        return f"/rooms/{int_field(data, 'room_id')}/join", None
    return {"/api/post": "/posts", "/api/media": "/media", "/api/message": "/messages",
            "/api/live/beacon": "/beacons", "/api/gift": "/orders"}[path], None


def _post_id(data: Any) -> str:
    post_id = data.get("post_id")
    if not isinstance(post_id, str) or not post_id or "/" in post_id:
        raise BadRequest(f"'post_id' must be a post id string, got {post_id!r}")
    return post_id


class Gateway(Service):
    """Public entry point; routes ``/api/*`` to the owning service."""

    params: GatewayParams

    def setup(self) -> None:
        r = self.registry
        self.online = RecentSet(60.0)
        Gauge("platform_online_users", "Distinct users seen by the gateway in the last 60 s.",
              registry=r).set_function(self.online.count)
        self.limited = Counter("gateway_rate_limited_total", "Requests answered 429 by the per-route rate limit.",
                               ["route"], registry=r)
        limit = Gauge("gateway_rate_limit_rps", "Per-route rate limit, requests/s.", ["route"], registry=r)
        self.buckets: dict[str, TokenBucket] = {}
        for path, (method, downstream) in GATEWAY_ROUTES.items():
            self.buckets[path] = TokenBucket()
            self.limited.labels(path)
            limit.labels(path).set_function(lambda p=path: self.limit_rps(p))
            self.add_route(path, self._proxy(path, method, downstream), (method,))

    def limit_rps(self, path: str) -> float:
        """The rate limit of public route ``path`` in requests/s (from the parameters)."""
        p = self.params
        return max(p.rate_limit_min_rps, p.rate_limit_headroom * p.offered_rps.get(path, 0.0))

    def _proxy(self, path: str, method: str, downstream: str):
        async def handler(request: Request, ctx: RequestContext) -> Response:
            rps = self.limit_rps(path)
            if not self.buckets[path].take(rps, rps * self.params.rate_limit_burst_seconds):
                self.limited.labels(path).inc()
                return JSONResponse({"error": f"rate limit of {rps:g} requests/s exceeded on {path}"},
                                    status_code=429)
            data: Any = request.query_params if method == "GET" else await json_body(request)
            uid = int_field(data, "user_id")
            self.online.add(uid)
            await ctx.work_on("route")
            internal, params = _internal(path, data, uid)
            if path == "/api/feed":
                return await self._home(uid, internal)
            body = None if method == "GET" else dict(data)
            r = await self.call(downstream, method, internal, json=body, params=params)
            return Response(r.content, status_code=r.status_code, media_type="application/json")

        return handler

    async def _home(self, uid: int, feed_path: str) -> Response:
        """The feed plus the unread badge, fetched concurrently; the badge is left out when it fails."""
        feed, badge = await asyncio.gather(
            self.call("feed", "GET", feed_path),
            self.best_effort("notification", "GET", f"/badge/{uid}", timeout=BADGE_TIMEOUT_SECONDS))
        if feed.status_code != 200 or badge is None or badge.status_code != 200:
            return Response(feed.content, status_code=feed.status_code, media_type="application/json")
        return JSONResponse({**feed.json(), "unread": badge.json().get("unread", 0)})
