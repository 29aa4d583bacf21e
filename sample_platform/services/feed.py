"""Feed generation and recommendation.

feed ``GET /feed/{user_id}`` -> ``{"user", "items": [{"id", "source", "score", "playback_url"}]}``:
the followed accounts (user ``GET /users/{id}/following``, required), their
recent posts (post ``GET /posts?for_user=``, required), recommended posts
(recommend ``GET /recommendations/{id}``, best effort within
``params.recommend_timeout_seconds``: without them the feed degrades to
following posts only) and the user's seen set (redis, best effort) are merged,
deduplicated and ranked; the ``params.page_size`` items served get their video
playback URLs from media (``GET /playback?ids=``, required).  Five downstream
calls per request.

recommend ``GET /recommendations/{user_id}`` -> ``{"items": [{"id", "score"}]}``:
user features from redis (best effort; defaults on a miss), ``params.candidates``
candidates, then the scorers of ``params.scorers`` run concurrently and their
scores are combined with their weights.

Metrics: feed ``feed_items_served_total{source="following"|"recommended"}``,
``feed_degraded_total`` (pages served without recommendations); recommend
``recommend_scorer_duration_seconds{scorer}``, ``recommend_candidates_scored_total``.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import RequestContext, int_field
from ..params import FeedParams, RecommendParams
from .base import Service

SCORER_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25)


class FeedService(Service):
    """Home feed: following posts plus recommendations, merged and ranked."""

    params: FeedParams

    def setup(self) -> None:
        r = self.registry
        self.served = Counter("feed_items_served_total", "Feed items served, by source.", ["source"], registry=r)
        self.served.labels("following")
        self.served.labels("recommended")
        self.degraded = Counter("feed_degraded_total", "Feed pages served without recommendations.", registry=r)
        self.add_route("/feed/{user_id}", self.get_feed)

    async def get_feed(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work_on("/feed/{user_id}")
        following = (await self.call("user", "GET", f"/users/{uid}/following")).json().get("following", [])
        posts = (await self.call("post", "GET", "/posts", params={"for_user": uid})).json().get("posts", [])
        rec = await self.best_effort("recommend", "GET", f"/recommendations/{uid}",
                                     timeout=self.params.recommend_timeout_seconds)
        recommended = rec.json().get("items", []) if rec is not None and rec.status_code == 200 else []
        seen = await self.cache_get(f"seen:{uid}", [])
        await ctx.work_on("merge")
        items = self._rank(posts, recommended, set(seen or ()), len(following))
        ids = ",".join(item["id"] for item in items)
        urls = (await self.call("media", "GET", "/playback", params={"ids": ids})).json().get("urls", {})
        for item in items:
            item["playback_url"] = urls.get(item["id"])
        if not recommended:
            self.degraded.inc()
        for item in items:
            self.served.labels(item["source"]).inc()
        return JSONResponse({"user": uid, "items": items})

    def _rank(self, posts: list, recommended: list, seen: set, following: int) -> list[dict]:
        """Merge following posts (scored by recency and how many accounts are followed) with
        recommended ones, drop duplicates and seen items, best first."""
        merged: dict[str, dict] = {}
        for i, p in enumerate(posts):
            pid = str(p.get("id")) if isinstance(p, dict) else str(p)
            merged[pid] = {"id": pid, "source": "following", "score": 1.0 / (1 + i) + 0.01 * following}
        for item in recommended:
            pid = str(item.get("id"))
            if pid not in merged:
                merged[pid] = {"id": pid, "source": "recommended", "score": float(item.get("score", 0.0))}
        ranked = sorted((m for m in merged.values() if m["id"] not in seen), key=lambda m: -m["score"])
        return ranked[:self.params.page_size]


class RecommendService(Service):
    """Candidate generation and several scorers, combined by weight."""

    params: RecommendParams

    def setup(self) -> None:
        r = self.registry
        self.scorer_duration = Histogram("recommend_scorer_duration_seconds", "Time of one scorer pass, seconds.",
                                         ["scorer"], buckets=SCORER_BUCKETS, registry=r)
        self.scored = Counter("recommend_candidates_scored_total", "Candidates scored.", registry=r)
        self.add_route("/recommendations/{user_id}", self.recommend)

    async def _score(self, scorer: str, median: float, candidates: list[int], affinity: float) -> list[float]:
        t0 = time.perf_counter()
        await asyncio.sleep(self.service_time(median))
        if scorer == "popularity":
            scores = [1.0 / (1 + c % 97) for c in candidates]
        elif scorer == "affinity":
            scores = [affinity * ((c * 2654435761) % 1000) / 1000 for c in candidates]
        else:  # freshness: newer ids score higher
            newest = max(candidates)
            scores = [1.0 - (newest - c) / (newest + 1) for c in candidates]
        self.scorer_duration.labels(scorer).observe(time.perf_counter() - t0)
        return scores

    async def recommend(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work_on("/recommendations/{user_id}")
        features = await self.cache_get(f"features:{uid}", {"affinity": 0.5})
        affinity = float(features.get("affinity", 0.5)) if isinstance(features, dict) else 0.5
        p = self.params
        base = self.rng.randrange(1, 1_000_000)
        candidates = [base + i * 7 for i in range(p.candidates)]
        names = list(p.scorers)
        results = await asyncio.gather(*(self._score(n, p.scorers[n][1], candidates, affinity) for n in names))
        combined = [sum(p.scorers[n][0] * scores[i] for n, scores in zip(names, results))
                    for i in range(len(candidates))]
        self.scored.inc(len(candidates))
        best = sorted(range(len(candidates)), key=lambda i: -combined[i])[:20]
        return JSONResponse({"items": [{"id": f"r{candidates[i]}", "score": round(combined[i], 4)} for i in best]})
