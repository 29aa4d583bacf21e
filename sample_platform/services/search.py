"""Search: an in-memory inverted index fed from kafka ``posts``.

- ``GET /search?q=&user_id=`` -> ``{"q", "hits": n, "results": [post_id, ...]}``:
  a cached answer from redis when there is one (best effort), else the index
  (``/search`` service time) and a best-effort redis fill.
- The indexer (consumer group ``search-indexer`` on ``posts``) adds each new
  post's words (``index`` service time per post).  The index keeps the last
  ``MAX_POSTINGS`` post ids per word.

Metrics: ``search_queries_total{result="hits"|"empty"}``,
``search_index_documents`` (posts indexed), ``search_index_terms``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import BadRequest, RequestContext, int_field
from .base import Consumer, Service

MAX_POSTINGS = 50
MAX_TERMS = 20_000


class SearchService(Service):
    """Query the index; index new posts."""

    def setup(self) -> None:
        r = self.registry
        self.queries = Counter("search_queries_total", "Search queries by result.", ["result"], registry=r)
        self.queries.labels("hits")
        self.queries.labels("empty")
        self.index: dict[str, deque[str]] = {}
        self.documents = 0
        Gauge("search_index_documents", "Posts indexed.", registry=r).set_function(lambda: self.documents)
        Gauge("search_index_terms", "Distinct terms in the index.", registry=r).set_function(lambda: len(self.index))
        self.add_route("/search", self.search)

    def background(self) -> Iterable[Callable[[], Awaitable[None]]]:
        return [Consumer(self, "posts", "search-indexer", self._index_batch).run]

    async def search(self, request: Request, ctx: RequestContext) -> Response:
        q = request.query_params.get("q", "").strip().lower()
        if not q:
            raise BadRequest("'q' is required")
        int_field(request.query_params, "user_id")
        await ctx.work_on("/search")
        cached = await self.cache_get(f"search:{q}", [])
        if cached is not None:
            results = cached
        else:
            postings = [set(self.index.get(term, ())) for term in q.split()[:5]]
            results = sorted(set.intersection(*postings))[:20] if postings else []
            await self.cache_cmd("set", f"search:{q}", results)
        self.queries.labels("hits" if results else "empty").inc()
        return JSONResponse({"q": q, "hits": len(results), "results": results})

    async def _index_batch(self, ctx: RequestContext, posts: list[Any]) -> None:
        await ctx.work(self.params.median("index") * len(posts))
        for post in posts:
            if not isinstance(post, dict):
                continue
            post_id = str(post.get("post_id"))
            for term in set(str(post.get("text", "")).lower().split()):
                if term not in self.index and len(self.index) >= MAX_TERMS:
                    continue
                self.index.setdefault(term, deque(maxlen=MAX_POSTINGS)).append(post_id)
            self.documents += 1
