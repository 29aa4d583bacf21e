"""Posts and media.

post:

- ``GET /posts?for_user=`` -> ``{"posts": [...]}``: cache-aside (redis, then
  postgres and a best-effort redis fill on a miss).
- ``POST /posts`` ``{user_id, text}`` -> 201 ``{"post_id"}``: postgres insert,
  kafka ``posts`` (indexed by search), redis invalidation.
- ``POST /posts/{post_id}/likes`` ``{user_id}`` -> 201: postgres update, then a
  notification to the author on kafka ``notifications``.
- ``POST /posts/{post_id}/comments`` ``{user_id, text}`` -> 201: postgres
  insert, then a notification to the author.

Post ids are ``"{author}-{n}"``; a malformed one answers 400.

media:

- ``POST /media`` ``{user_id, bytes}`` -> 202 ``{"media_id"}``: the original goes
  to object storage (``PUT /objects/originals/{id}``), a job to kafka ``transcode``.
- ``GET /playback?ids=a,b`` -> ``{"urls": {id: url}}``: playback URLs of the
  renditions (for the feed; at most ``MAX_PLAYBACK_IDS`` ids).
- The transcoder (consumer group ``transcoder`` on ``transcode``) handles up to
  ``params.transcode_concurrency`` jobs at a time: reads the original, works
  ``params.transcode_seconds`` (median), writes ``params.renditions``
  renditions.  A failed job fails its batch, which is retried (at least once),
  so the group's lag grows while object storage or the transcoder is unwell.

Metrics: post ``posts_created_total``, ``post_likes_total``,
``post_comments_total``; media ``media_uploads_total``,
``media_transcode_jobs_total{status}``, ``media_transcode_duration_seconds``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import BadRequest, DownstreamError, RequestContext, int_field, json_body
from ..params import MediaParams
from .base import Consumer, Service

TRANSCODE_BUCKETS = (.05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_PLAYBACK_IDS = 100


def post_author(post_id: str) -> int:
    """The author's user id encoded in ``post_id`` (``"{author}-{n}"``); BadRequest otherwise."""
    head, sep, _ = post_id.partition("-")
    if not sep or not head.isdigit():
        raise BadRequest(f"malformed post id {post_id!r}; expected AUTHOR-N")
    return int(head)


class PostService(Service):
    """Post listing (cache-aside), creation, likes and comments."""

    def setup(self) -> None:
        r = self.registry
        self.created = Counter("posts_created_total", "Posts created.", registry=r)
        self.likes = Counter("post_likes_total", "Likes recorded.", registry=r)
        self.comments = Counter("post_comments_total", "Comments recorded.", registry=r)
        self.add_route("/posts", self.list_posts, ("GET",))
        self.add_route("/posts", self.create_post, ("POST",))
        self.add_route("/posts/{post_id}/likes", self.like, ("POST",))
        self.add_route("/posts/{post_id}/comments", self.comment, ("POST",))

    async def list_posts(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.query_params, "for_user")
        await ctx.work_on("GET /posts")
        key = f"posts:{uid}"
        posts = await self.cache_get(key, [{"id": f"{uid}-{i}", "author": uid} for i in range(5)])
        if posts is None:
            posts = (await self.query("select", "posts", uid))["rows"]
            await self.cache_cmd("set", key, posts)
        return JSONResponse({"posts": posts})

    async def create_post(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid = int_field(body, "user_id")
        await ctx.work_on("POST /posts")
        res = await self.query("insert", "posts", uid)
        post_id = f"{uid}-{res['id']}"
        await self.produce("posts", uid, {"post_id": post_id, "author": uid, "text": str(body.get("text", ""))[:280]})
        await self.cache_cmd("del", f"posts:{uid}")
        self.created.inc()
        return JSONResponse({"post_id": post_id}, status_code=201)

    async def like(self, request: Request, ctx: RequestContext) -> Response:
        post_id = request.path_params["post_id"]
        author = post_author(post_id)
        uid = int_field(await json_body(request), "user_id")
        await ctx.work_on("/posts/{post_id}/likes")
        await self.query("update", "likes", post_id)
        await self.produce("notifications", author, {"kind": "like", "to": author, "from": uid, "post_id": post_id})
        self.likes.inc()
        return JSONResponse({"post_id": post_id, "liked": True}, status_code=201)

    async def comment(self, request: Request, ctx: RequestContext) -> Response:
        post_id = request.path_params["post_id"]
        author = post_author(post_id)
        uid = int_field(await json_body(request), "user_id")
        await ctx.work_on("/posts/{post_id}/comments")
        res = await self.query("insert", "comments", post_id)
        await self.produce("notifications", author, {"kind": "comment", "to": author, "from": uid,
                                                     "post_id": post_id})
        self.comments.inc()
        return JSONResponse({"post_id": post_id, "comment_id": res["id"]}, status_code=201)


class MediaService(Service):
    """Uploads to object storage and a transcoder consuming kafka ``transcode``."""

    params: MediaParams

    def setup(self) -> None:
        r = self.registry
        self.uploads = Counter("media_uploads_total", "Media uploads accepted.", registry=r)
        self.jobs = Counter("media_transcode_jobs_total", "Transcode jobs by outcome.", ["status"], registry=r)
        self.jobs.labels("ok")
        self.jobs.labels("failed")
        self.transcode_duration = Histogram("media_transcode_duration_seconds", "Time of one transcode job, seconds.",
                                            buckets=TRANSCODE_BUCKETS, registry=r)
        self._ids = itertools.count(1)
        self.add_route("/media", self.upload, ("POST",))
        self.add_route("/playback", self.playback)

    def background(self) -> Iterable[Callable[[], Awaitable[None]]]:
        return [Consumer(self, "transcode", "transcoder", self._transcode_batch).run]

    async def upload(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid = int_field(body, "user_id")
        size = body.get("bytes", self.params.upload_bytes)
        if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0:
            raise BadRequest(f"'bytes' must be a positive number, got {size!r}")
        await ctx.work_on("/media")
        media_id = f"{uid}-{self.name}-{self.started_at:.0f}-{next(self._ids)}"
        await self.call("objstore", "PUT", f"/objects/originals/{media_id}", json={"bytes": size})
        await self.produce("transcode", uid, {"media_id": media_id, "bytes": size})
        self.uploads.inc()
        return JSONResponse({"media_id": media_id}, status_code=202)

    async def playback(self, request: Request, ctx: RequestContext) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if len(ids) > MAX_PLAYBACK_IDS:
            raise BadRequest(f"at most {MAX_PLAYBACK_IDS} ids, got {len(ids)}")
        await ctx.work_on("/playback")
        return JSONResponse({"urls": {i: f"/renditions/{i}/{self.params.renditions - 1}" for i in ids}})

    async def _transcode_batch(self, ctx: RequestContext, jobs: list[Any]) -> None:
        await ctx.work(0.0)  # the batch's fault delay, once
        limit = asyncio.Semaphore(self.params.transcode_concurrency)
        results = await asyncio.gather(*(self._transcode(limit, job) for job in jobs), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _transcode(self, limit: asyncio.Semaphore, job: Any) -> None:
        async with limit:
            t0 = time.perf_counter()
            try:
                media_id, size = str(job["media_id"]), float(job.get("bytes", self.params.upload_bytes))
            except (KeyError, TypeError, ValueError, AttributeError):  # a malformed job is dropped, not retried
                self.jobs.labels("failed").inc()
                return
            try:
                r = await self.call("objstore", "GET", f"/objects/originals/{media_id}")
                if r.status_code == 404:  # expired original: nothing to transcode
                    self.jobs.labels("failed").inc()
                    return
                await asyncio.sleep(self.service_time(self.params.transcode_seconds))
                for rendition in range(self.params.renditions):
                    await self.call("objstore", "PUT", f"/objects/renditions/{media_id}/{rendition}",
                                    json={"bytes": size / (2 ** (rendition + 1))})
            except DownstreamError:
                self.jobs.labels("failed").inc()
                raise
            self.transcode_duration.observe(time.perf_counter() - t0)
            self.jobs.labels("ok").inc()
