"""Push notifications (``notification``), fed by likes, comments and messages through kafka.

- The push sender (consumer group ``push-sender`` on ``notifications``) takes a
  batch, appends each notification to its recipient's inbox (one best-effort
  redis pipeline per batch) and pushes them concurrently to the push provider
  (``params.push_seconds`` median each; ``params.push_failure_ratio`` fail).
- ``GET /inbox/{user_id}`` -> ``{"user", "notifications": [...]}`` from redis
  (best effort: empty when redis is unwell).
- ``GET /badge/{user_id}`` -> ``{"user", "unread": n}``: notifications sent to
  the user since its last inbox read, counted in memory (the gateway puts it
  on the home feed; at most ``MAX_BADGES`` users are tracked).
- ``POST /campaigns`` ``{"factor", "duration_seconds"}`` -> 202: a marketing
  push.  For ``duration_seconds`` the service adds ``(factor - 1)`` times its
  recent notification rate (at least 1/s) of ``campaign`` notifications to
  kafka, once a second, so the notifications sent are multiplied by ``factor``.

Metrics: ``notifications_sent_total{kind, status="delivered"|"failed"}``
(kind: like, comment, message, campaign), ``notification_push_duration_seconds``,
``notification_campaign_active`` (0/1).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import BadRequest, DownstreamError, RequestContext, int_field, json_body
from ..params import NotificationParams
from .base import Consumer, Service, log

KINDS = ("like", "comment", "message", "campaign")
PUSH_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1.0)
RATE_HALF_LIFE_SECONDS = 120.0
MAX_CAMPAIGN_SECONDS = 24 * 3600.0
MAX_CAMPAIGN_FACTOR = 100.0
MAX_BADGES = 50_000


class NotificationService(Service):
    """Push sender, inbox, marketing campaigns."""

    params: NotificationParams

    def setup(self) -> None:
        r = self.registry
        self.sent = Counter("notifications_sent_total", "Push notifications by kind and outcome.",
                            ["kind", "status"], registry=r)
        for kind in KINDS:
            for status in ("delivered", "failed"):
                self.sent.labels(kind, status)
        self.push_duration = Histogram("notification_push_duration_seconds", "Push provider call time, seconds.",
                                       buckets=PUSH_BUCKETS, registry=r)
        self.organic_rate = 0.0  # notifications/s, exponentially weighted, campaigns excluded
        self._rate_at = time.monotonic()
        self.campaign_until = 0.0  # monotonic seconds
        self.campaign_factor = 1.0
        Gauge("notification_campaign_active", "1 while a marketing campaign is sending.",
              registry=r).set_function(lambda: float(time.monotonic() < self.campaign_until))
        self.unread: dict[int, int] = {}
        self.add_route("/inbox/{user_id}", self.inbox)
        self.add_route("/badge/{user_id}", self.badge)
        self.add_route("/campaigns", self.campaign, ("POST",))

    def background(self) -> Iterable[Callable[[], Awaitable[None]]]:
        return [Consumer(self, "notifications", "push-sender", self._send_batch).run, self._campaign_loop]

    async def inbox(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work_on("/inbox/{user_id}")
        items = await self.cache_cmd("lrange", f"inbox:{uid}")
        self.unread.pop(uid, None)
        return JSONResponse({"user": uid, "notifications": items or []})

    async def badge(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work_on("/badge/{user_id}")
        return JSONResponse({"user": uid, "unread": self.unread.get(uid, 0)})

    async def campaign(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        factor, seconds = body.get("factor"), body.get("duration_seconds")
        for name, value, high in (("factor", factor, MAX_CAMPAIGN_FACTOR), ("duration_seconds", seconds,
                                                                          MAX_CAMPAIGN_SECONDS)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= high \
                    or not math.isfinite(value):
                raise BadRequest(f"{name!r} must be a number in (0, {high:g}], got {value!r}")
        await ctx.work_on("/campaigns")
        self.campaign_factor = max(1.0, float(factor))
        self.campaign_until = time.monotonic() + float(seconds)
        return JSONResponse({"factor": self.campaign_factor, "duration_seconds": seconds}, status_code=202)

    def _observe_rate(self, organic: int) -> None:
        now = time.monotonic()
        dt, self._rate_at = now - self._rate_at, now
        if dt <= 0:
            return
        decay = 0.5 ** (dt / RATE_HALF_LIFE_SECONDS)
        self.organic_rate = decay * self.organic_rate + (1 - decay) * organic / dt

    async def _campaign_loop(self) -> None:
        """Once a second while a campaign runs, produce its share of campaign notifications."""
        while True:
            await asyncio.sleep(1.0)
            self._observe_rate(0)
            if time.monotonic() >= self.campaign_until:
                continue
            n = max(1, round((self.campaign_factor - 1) * max(self.organic_rate, 1.0)))
            batch = [{"kind": "campaign", "to": self.rng.randint(1, 10_000)} for _ in range(n)]
            try:
                await self.produce_batch("notifications", batch)
            except DownstreamError as exc:
                log.debug("notification: campaign batch lost: %s", exc)

    async def _send_batch(self, ctx: RequestContext, batch: list[Any]) -> None:
        await ctx.work(0.0)  # the batch's fault delay, once
        items = [n for n in batch if isinstance(n, dict) and isinstance(n.get("to"), int)]
        self._observe_rate(sum(1 for n in items if n.get("kind") != "campaign"))
        if items:
            await self.cache_pipeline([{"command": "lpush", "key": f"inbox:{n['to']}", "value": n.get("kind")}
                                       for n in items])
        for n in items:
            if n["to"] in self.unread or len(self.unread) < MAX_BADGES:
                self.unread[n["to"]] = self.unread.get(n["to"], 0) + 1
        await asyncio.gather(*(self._push(n) for n in items))

    async def _push(self, notification: dict[str, Any]) -> None:
        kind = notification.get("kind") if notification.get("kind") in KINDS else "message"
        seconds = self.service_time(self.params.push_seconds)
        await asyncio.sleep(seconds)
        self.push_duration.observe(seconds)
        ok = self.rng.random() >= self.params.push_failure_ratio
        self.sent.labels(kind, "delivered" if ok else "failed").inc()
