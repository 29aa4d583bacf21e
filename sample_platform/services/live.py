"""Live streaming: rooms and viewers (``live``), the origin (``origin``), CDN edges (``cdn-a/b/c``).

live:

- ``POST /rooms/{room_id}/join`` ``{user_id}`` -> ``{"room_id", "cdn", "viewers"}``:
  the viewer's profile (user, required), the room's viewer set (redis, best
  effort), and a CDN edge drawn with ``params.cdn_weights``.  Each join counts a
  viewer for an exponential watch time of mean ``params.mean_watch_seconds``.
- ``POST /beacons`` -> 204: client telemetry from players, ``{"room_id", "cdn",
  "playback_seconds", "stall_seconds", "stalls", "bits", "first_frame_seconds"?}``
  (``first_frame_seconds`` only in a session's first beacon).

origin:

- ``POST /ingest/{room_id}/{seq}`` ``{"bytes"}`` -> 201: a streamer's segment;
  archived to object storage (best effort).  A room is live while it ingested
  within the last ``LIVE_SECONDS``.
- ``GET /live/{room_id}/playlist`` and ``GET /live/{room_id}/{seq}?bitrate=`` ->
  the playlist / a segment ``{"bytes"}`` of ``bitrate * SEGMENT_SECONDS / 8``
  bytes (the origin packages every rendition); 404 when the room is not live.

CDN edge (one node per provider):

- same two GET routes: a cache hit with probability ``params.hit_ratio``, else
  pulled from the origin; a segment then takes ``8 * bytes /
  params.throughput_bits_per_second`` seconds to send.

Metrics: live ``live_viewers``, ``live_joins_total{cdn}``, and per CDN from the
beacons: ``live_playback_seconds_total{cdn}``, ``live_stall_seconds_total{cdn}``
(stall ratio = rate(stall) / rate(playback)), ``live_stalls_total{cdn}``,
``live_delivered_bits_total{cdn}`` (bitrate = rate(bits) / rate(playback)),
``live_first_frame_seconds{cdn}`` histogram; origin ``origin_rooms_live``,
``origin_ingested_segments_total``, ``origin_ingested_bytes_total``; edge
``cdn_cache_requests_total{result="hit"|"miss"}``, ``cdn_egress_bytes_total``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..graph import CDN_EDGES
from ..node import BadRequest, RequestContext, int_field, json_body
from ..params import CdnParams, LiveParams
from .base import ExpiringCount, Service

SEGMENT_SECONDS = 2.0
LIVE_SECONDS = 30.0
FIRST_FRAME_BUCKETS = (.25, .5, .75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
MAX_BITRATE = 50e6
BEACON_FIELDS = ("playback_seconds", "stall_seconds", "stalls", "bits")


def _number(data: dict[str, Any], name: str, high: float) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= high:
        raise BadRequest(f"{name!r} must be a number in [0, {high:g}], got {value!r}")
    return float(value)


class LiveService(Service):
    """Room joins (CDN assignment) and player telemetry."""

    params: LiveParams

    def setup(self) -> None:
        r = self.registry
        self.viewers = ExpiringCount()
        Gauge("live_viewers", "Viewers currently watching live rooms.",
              registry=r).set_function(self.viewers.count)
        self.joins = Counter("live_joins_total", "Room joins, by assigned CDN edge.", ["cdn"], registry=r)
        self.playback = Counter("live_playback_seconds_total", "Seconds of video played, from beacons.", ["cdn"],
                                registry=r)
        self.stall = Counter("live_stall_seconds_total", "Seconds spent stalled (rebuffering), from beacons.",
                             ["cdn"], registry=r)
        self.stalls = Counter("live_stalls_total", "Stall events, from beacons.", ["cdn"], registry=r)
        self.bits = Counter("live_delivered_bits_total", "Video bits played, from beacons.", ["cdn"], registry=r)
        self.first_frame = Histogram("live_first_frame_seconds", "Time from join to the first frame, seconds.",
                                     ["cdn"], buckets=FIRST_FRAME_BUCKETS, registry=r)
        for cdn in CDN_EDGES:
            for metric in (self.joins, self.playback, self.stall, self.stalls, self.bits, self.first_frame):
                metric.labels(cdn)
        self.add_route("/rooms/{room_id}/join", self.join, ("POST",))
        self.add_route("/beacons", self.beacon, ("POST",))

    async def join(self, request: Request, ctx: RequestContext) -> Response:
        room = int_field(request.path_params, "room_id")
        uid = int_field(await json_body(request), "user_id")
        await self.get_user(uid)
        await ctx.work_on("/rooms/{room_id}/join")
        await self.cache_cmd("sadd", f"room:{room}:viewers", uid)
        weights = self.params.cdn_weights
        cdn = self.rng.choices(list(weights), list(weights.values()))[0]
        self.joins.labels(cdn).inc()
        self.viewers.add(self.rng.expovariate(1.0 / self.params.mean_watch_seconds))
        return JSONResponse({"room_id": room, "cdn": cdn, "viewers": self.viewers.count()})

    async def beacon(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        cdn = body.get("cdn")
        if cdn not in CDN_EDGES:
            raise BadRequest(f"unknown cdn {cdn!r}; valid: {', '.join(CDN_EDGES)}")
        int_field(body, "room_id")
        values = {name: _number(body, name, 1e12) for name in BEACON_FIELDS}
        first_frame = _number(body, "first_frame_seconds", 3600) if "first_frame_seconds" in body else None
        if values["stall_seconds"] > values["playback_seconds"] + SEGMENT_SECONDS * 10:
            raise BadRequest("'stall_seconds' cannot exceed playback_seconds by more than a few segments")
        await ctx.work_on("/beacons")
        self.playback.labels(cdn).inc(values["playback_seconds"])
        self.stall.labels(cdn).inc(values["stall_seconds"])
        self.stalls.labels(cdn).inc(values["stalls"])
        self.bits.labels(cdn).inc(values["bits"])
        if first_frame is not None:
            self.first_frame.labels(cdn).observe(first_frame)
        return Response(status_code=204)


def _segment_bytes(request: Request) -> float:
    try:
        bitrate = float(request.query_params.get("bitrate", "1.5e6"))
    except ValueError:
        raise BadRequest(f"'bitrate' must be a number of bits/s, got {request.query_params.get('bitrate')!r}") \
            from None
    if not 0 < bitrate <= MAX_BITRATE:
        raise BadRequest(f"'bitrate' must be in (0, {MAX_BITRATE:g}] bits/s, got {bitrate:g}")
    return bitrate * SEGMENT_SECONDS / 8


class OriginService(Service):
    """Ingest from streamers, segments and playlists for the edges, archive to object storage."""

    def setup(self) -> None:
        r = self.registry
        self.last_ingest: dict[int, float] = {}  # room -> monotonic time of its last segment
        Gauge("origin_rooms_live", f"Rooms that ingested a segment in the last {LIVE_SECONDS:g} s.",
              registry=r).set_function(self.rooms_live)
        self.segments = Counter("origin_ingested_segments_total", "Segments ingested.", registry=r)
        self.ingested = Counter("origin_ingested_bytes_total", "Bytes ingested.", registry=r)
        self.add_route("/ingest/{room_id}/{seq}", self.ingest, ("POST",))
        self.add_route("/live/{room_id}/playlist", self.playlist)
        self.add_route("/live/{room_id}/{seq}", self.segment)

    def rooms_live(self) -> int:
        """Rooms that ingested within ``LIVE_SECONDS``."""
        cutoff = time.monotonic() - LIVE_SECONDS
        for room in [r for r, t in self.last_ingest.items() if t < cutoff]:
            del self.last_ingest[room]
        return len(self.last_ingest)

    def _is_live(self, room: int) -> bool:
        return self.last_ingest.get(room, -math.inf) >= time.monotonic() - LIVE_SECONDS

    async def ingest(self, request: Request, ctx: RequestContext) -> Response:
        room, seq = int_field(request.path_params, "room_id"), int_field(request.path_params, "seq")
        size = _number(await json_body(request), "bytes", 1e9)
        await ctx.work_on("/ingest/{room_id}/{seq}")
        self.last_ingest[room] = time.monotonic()
        self.segments.inc()
        self.ingested.inc(size)
        await self.best_effort("objstore", "PUT", f"/objects/live/{room}/{seq}", json={"bytes": size})
        return JSONResponse({"room_id": room, "seq": seq}, status_code=201)

    async def playlist(self, request: Request, ctx: RequestContext) -> Response:
        room = int_field(request.path_params, "room_id")
        await ctx.work_on("/live/{room_id}/playlist")
        if not self._is_live(room):
            return JSONResponse({"error": f"room {room} is not live"}, status_code=404)
        return JSONResponse({"room_id": room, "segment_seconds": SEGMENT_SECONDS})

    async def segment(self, request: Request, ctx: RequestContext) -> Response:
        room = int_field(request.path_params, "room_id")
        size = _segment_bytes(request)
        await ctx.work_on("/live/{room_id}/{seq}")
        if not self._is_live(room):
            return JSONResponse({"error": f"room {room} is not live"}, status_code=404)
        return JSONResponse({"bytes": size})


class CdnEdge(Service):
    """One CDN provider's edge in front of the origin."""

    params: CdnParams

    def setup(self) -> None:
        r = self.registry
        self.cache = Counter("cdn_cache_requests_total", "Edge cache lookups by result.", ["result"], registry=r)
        self.cache.labels("hit")
        self.cache.labels("miss")
        self.egress = Counter("cdn_egress_bytes_total", "Bytes sent to viewers.", registry=r)
        self.add_route("/live/{room_id}/playlist", self.playlist)
        self.add_route("/live/{room_id}/{seq}", self.segment)

    async def _lookup(self, path: str, params: dict[str, Any] | None = None) -> Response | None:
        """None on a cache hit, else the origin's answer when it is not 200."""
        if self.rng.random() < self.params.hit_ratio:
            self.cache.labels("hit").inc()
            return None
        self.cache.labels("miss").inc()
        r = await self.call("origin", "GET", path, params=params)
        return None if r.status_code == 200 else Response(r.content, status_code=r.status_code,
                                                          media_type="application/json")

    async def playlist(self, request: Request, ctx: RequestContext) -> Response:
        room = int_field(request.path_params, "room_id")
        await ctx.work_on("/live/{room_id}/playlist")
        failed = await self._lookup(f"/live/{room}/playlist")
        return failed or JSONResponse({"room_id": room, "segment_seconds": SEGMENT_SECONDS})

    async def segment(self, request: Request, ctx: RequestContext) -> Response:
        room, seq = int_field(request.path_params, "room_id"), int_field(request.path_params, "seq")
        size = _segment_bytes(request)
        await ctx.work(self.params.median("/live/{room_id}/{seq}") + 8 * size / self.params.throughput_bits_per_second)
        failed = await self._lookup(f"/live/{room}/{seq}", {"bitrate": request.query_params.get("bitrate", "1.5e6")})
        if failed is not None:
            return failed
        self.egress.inc(size)
        return JSONResponse({"bytes": size})
