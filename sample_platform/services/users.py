"""Users and profiles: an in-process L1 cache, redis (L2), then postgres.

- ``GET /users/{user_id}`` -> ``{"user": {...}}``.
- ``GET /users/{user_id}/following`` -> ``{"following": [user_id, ...]}``.

Both are cache-aside over two tiers: the L1 hits with probability
``params.l1_hit_ratio`` (an instance started by a deploy begins cold and warms
up linearly over ``params.l1_warmup_seconds``); an L1 miss asks redis (one call;
a redis failure counts as a miss), and a redis miss reads postgres (one query)
and fills redis (one best-effort call).  So the tiers' hit ratios respond to
faults: a failing redis collapses the L2 ratio and shifts the load to postgres.

Metrics: ``user_cache_requests_total{tier="l1"|"l2", result="hit"|"miss"}``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import RequestContext, int_field
from ..params import UserParams
from .base import Service


class UserService(Service):
    """Profiles and the follow graph behind two cache tiers."""

    params: UserParams
    #: Set by the platform on an instance started by a deploy: its L1 starts cold.
    cold_start = False

    def setup(self) -> None:
        self.cache_requests = Counter("user_cache_requests_total", "Profile cache lookups by tier and result.",
                                      ["tier", "result"], registry=self.registry)
        for tier in ("l1", "l2"):
            for result in ("hit", "miss"):
                self.cache_requests.labels(tier, result)
        self.add_route("/users/{user_id}", self.get_profile)
        self.add_route("/users/{user_id}/following", self.get_following)

    def l1_hit_ratio(self) -> float:
        """The L1 hit ratio now: the parameter, ramped up from 0 after a cold start."""
        p = self.params
        if not self.cold_start or p.l1_warmup_seconds <= 0:
            return p.l1_hit_ratio
        return p.l1_hit_ratio * min(1.0, (self.clock() - self.started_at) / p.l1_warmup_seconds)

    async def _tiered(self, key: str, synthetic: Any, table: str, uid: int) -> Any:
        if self.rng.random() < self.l1_hit_ratio():
            self.cache_requests.labels("l1", "hit").inc()
            return synthetic
        self.cache_requests.labels("l1", "miss").inc()
        value = await self.cache_get(key, synthetic)
        if value is not None:
            self.cache_requests.labels("l2", "hit").inc()
            return value
        self.cache_requests.labels("l2", "miss").inc()
        rows = (await self.query("select", table, uid))["rows"]
        await self.cache_cmd("set", key, rows)
        return rows

    async def get_profile(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work_on("/users/{user_id}")
        user = {"id": uid, "name": f"user{uid}"}
        found = await self._tiered(f"user:{uid}", [user], "users", uid)
        return JSONResponse({"user": found[0] if found else user})

    async def get_following(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work_on("/users/{user_id}/following")
        rows = await self._tiered(f"following:{uid}", [], "follows", uid)
        following = [r["follows"] for r in rows if isinstance(r, dict) and "follows" in r]
        return JSONResponse({"following": following or [(uid * 31 + i) % 10_000 + 1 for i in range(8)]})
