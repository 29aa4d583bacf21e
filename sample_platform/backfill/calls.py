"""What each operation of the platform calls, per request: the call graph with its fan-out.

One :class:`Op` per kind of work a node does: an HTTP route (``route``/``method``, counted in
``http_requests_total``), or background work (``route`` None: a WebSocket frame, a kafka consumer's
batch).  Infra nodes get one op per variant (``postgres`` select/insert/update, each redis command,
each kafka topic) so that their business metrics can be derived; the HTTP metrics sum the variants of
a route.  ``calls`` are the downstream ops an op calls and how many times per request, as functions of
the :class:`~sample_platform.backfill.effects.Knobs` (cache hit ratios change under faults).  The numbers
are those of the service modules' docstrings (``sample_platform/services``, ``sample_platform/infra``)
and of :mod:`sample_platform.params`; nothing here is a new behaviour constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..graph import GATEWAY_ROUTES, GIFT_SHARDS
from ..infra.kafka import TOPICS as KAFKA_TOPICS
from ..params import PARAMS
from ..traffic.im import ONLINE_PEER_RATIO

#: calls per request as a function of the :class:`~sample_platform.backfill.effects.Knobs`.
Fanout = Callable[[Any], "np.ndarray | float"]


@dataclass(frozen=True)
class Call:
    """``per_request(knobs)`` calls to op ``op`` per request; a failed ``required`` call fails the caller
    (502, or 504 on a timeout); best-effort calls (redis reads, recommendations, the badge) do not."""

    op: str
    per_request: Fanout
    required: bool = True


@dataclass(frozen=True)
class Op:
    """One operation: ``node``, HTTP ``route``/``method`` (None: background work), the status code of a
    success, own median service seconds, calls, and the variant tag (``select``, ``get``, topic, ...)."""

    node: str
    route: str | None
    method: str
    ok_code: str
    median_seconds: float
    calls: tuple[Call, ...] = field(default=())
    variant: str = ""


def _one(_k: object) -> float:
    return 1.0


def _redis(cmd: str, per: Fanout = _one) -> Call:
    return Call(f"redis /command {cmd}", per, required=cmd in ("decrby",))


def _db(node: str, operation: str, per: Fanout = _one) -> Call:
    return Call(f"{node} /query {operation}", per)


def _kafka(action: str, topic: str, per: Fanout = _one) -> Call:
    return Call(f"kafka /{action} {topic}", per)


def _tiered(table_miss: Fanout) -> tuple[Call, ...]:
    """Cache-aside over redis: a GET, then on a miss a postgres select and a SET (``table_miss``: share
    of requests that reach redis)."""
    return (_redis("get", table_miss),
            _db("postgres", "select", lambda k: table_miss(k) * (1 - k.redis_hit)),
            _redis("set", lambda k: table_miss(k) * (1 - k.redis_hit)))


def _median(node: str, operation: str) -> float:
    return PARAMS[node].median(operation)


def build_ops() -> dict[str, Op]:
    """Every operation of the reference platform, by name (callers before the ops they call)."""
    oos = PARAMS["inventory"].out_of_stock_ratio
    decline = PARAMS["payment"].decline_ratio
    paid = (1 - oos) * (1 - decline)
    ops: dict[str, Op] = {}

    def add(name: str, op: Op) -> None:
        ops[name] = op

    ok = {"/api/feed": "200", "/api/profile": "200", "/api/post": "201", "/api/like": "201",
          "/api/comment": "201", "/api/media": "202", "/api/search": "200", "/api/message": "201",
          "/api/conversations": "200", "/api/notifications": "200", "/api/live/join": "200",
          "/api/live/beacon": "204", "/api/gift": "201"}
    inner = {"/api/feed": "feed /feed", "/api/profile": "user /users", "/api/post": "post POST /posts",
             "/api/like": "post /likes", "/api/comment": "post /comments", "/api/media": "media /media",
             "/api/search": "search /search", "/api/message": "message /messages",
             "/api/conversations": "message /conversations", "/api/notifications": "notification /inbox",
             "/api/live/join": "live /join", "/api/live/beacon": "live /beacons", "/api/gift": "gift /orders"}
    for path, (method, _) in GATEWAY_ROUTES.items():
        calls = [Call(inner[path], _one)]
        if path == "/api/feed":  # the unread badge, best effort
            calls.append(Call("notification /badge", _one, required=False))
        add(f"gateway {path}", Op("gateway", path, method, ok[path], _median("gateway", "route"), tuple(calls)))

    l1_miss: Fanout = lambda k: 1 - k.l1_hit
    add("user /users", Op("user", "/users/{user_id}", "GET", "200", _median("user", "/users/{user_id}"),
                          _tiered(l1_miss)))
    add("user /following", Op("user", "/users/{user_id}/following", "GET", "200",
                              _median("user", "/users/{user_id}/following"), _tiered(l1_miss)))
    add("feed /feed", Op("feed", "/feed/{user_id}", "GET", "200",
                         _median("feed", "/feed/{user_id}") + _median("feed", "merge"),
                         (Call("user /following", _one), Call("post GET /posts", _one),
                          Call("recommend /recommendations", _one, required=False), _redis("get"),
                          Call("media /playback", _one))))
    scorers = PARAMS["recommend"].scorers
    add("recommend /recommendations", Op("recommend", "/recommendations/{user_id}", "GET", "200",
                                         _median("recommend", "/recommendations/{user_id}")
                                         + max(s for _, s in scorers.values()),  # the scorers run concurrently
                                         (_redis("get"),)))
    add("post GET /posts", Op("post", "/posts", "GET", "200", _median("post", "GET /posts"), _tiered(_one)))
    add("post POST /posts", Op("post", "/posts", "POST", "201", _median("post", "POST /posts"),
                               (_db("postgres", "insert"), _kafka("produce", "posts"), _redis("del"))))
    add("post /likes", Op("post", "/posts/{post_id}/likes", "POST", "201", _median("post", "/posts/{post_id}/likes"),
                          (_db("postgres", "update"), _kafka("produce", "notifications"))))
    add("post /comments", Op("post", "/posts/{post_id}/comments", "POST", "201",
                             _median("post", "/posts/{post_id}/comments"),
                             (_db("postgres", "insert"), _kafka("produce", "notifications"))))
    media = PARAMS["media"]
    add("media /media", Op("media", "/media", "POST", "202", _median("media", "/media"),
                           (Call("objstore PUT", _one), _kafka("produce", "transcode"))))
    add("media /playback", Op("media", "/playback", "GET", "200", _median("media", "/playback")))
    add("media transcode", Op("media", None, "", "", media.transcode_seconds,
                              (Call("objstore GET", _one), Call("objstore PUT", lambda k: float(media.renditions)))))
    add("search /search", Op("search", "/search", "GET", "200", _median("search", "/search"),
                             (_redis("get"), _redis("set", lambda k: 1 - k.redis_hit))))
    add("search index", Op("search", None, "", "", _median("search", "index")))
    def deliver(push_share: float) -> tuple[Call, ...]:  # recipients offline get a push notification
        return (Call("user /users", _one), _kafka("produce", "messages"),
                _kafka("produce", "notifications", lambda k: push_share), _redis("incr"))

    # an HTTP message goes to any user (offline: pushed); a WebSocket client talks to online peers mostly
    add("message /messages", Op("message", "/messages", "POST", "201", _median("message", "frame"), deliver(1.0)))
    add("message frame", Op("message", None, "", "", _median("message", "frame"), deliver(1 - ONLINE_PEER_RATIO)))
    add("message relay", Op("message", None, "", "", _median("message", "frame")))
    add("message /conversations", Op("message", "/conversations/{user_id}", "GET", "200",
                                     _median("message", "/conversations/{user_id}"), _tiered(_one)))
    add("message archive", Op("message", None, "", "", 0.0, (_db("postgres", "insert"),)))
    add("notification /inbox", Op("notification", "/inbox/{user_id}", "GET", "200",
                                  _median("notification", "/inbox/{user_id}"), (_redis("lrange"),)))
    add("notification /badge", Op("notification", "/badge/{user_id}", "GET", "200",
                                  _median("notification", "/badge/{user_id}")))
    add("notification push", Op("notification", None, "", "", 0.0, (Call("redis /pipeline lpush", _one, False),)))
    add("live /join", Op("live", "/rooms/{room_id}/join", "POST", "200", _median("live", "/rooms/{room_id}/join"),
                         (Call("user /users", _one), _redis("sadd"))))
    add("live /beacons", Op("live", "/beacons", "POST", "204", _median("live", "/beacons")))
    add("origin /ingest", Op("origin", "/ingest/{room_id}/{seq}", "POST", "201",
                             _median("origin", "/ingest/{room_id}/{seq}"), (Call("objstore PUT", _one, False),)))
    for route in ("/live/{room_id}/playlist", "/live/{room_id}/{seq}"):
        add(f"origin {route}", Op("origin", route, "GET", "200", _median("origin", route)))
        for edge in ("cdn-a", "cdn-b", "cdn-c"):
            add(f"{edge} {route}", Op(edge, route, "GET", "200", _median(edge, route),
                                      (Call(f"origin {route}", lambda k, e=edge: 1 - k.cdn_hit[e]),)))
    add("gift /orders", Op("gift", "/orders", "POST", "201", _median("gift", "/orders"), (
        Call("user /users", _one), Call("inventory /reservations", _one),
        Call("payment /charges", lambda k: 1 - oos),
        *[_db(shard, op, lambda k: paid / len(GIFT_SHARDS)) for shard in GIFT_SHARDS for op in ("select", "insert")],
        _kafka("produce", "gifts", lambda k: paid), _redis("zincrby", lambda k: paid))))
    add("payment /charges", Op("payment", "/charges", "POST", "201", _median("payment", "/charges"),
                               (_db("postgres", "update", lambda k: 1 - decline),)))
    add("payment settle", Op("payment", None, "", "", 0.0, (
        *[_db(shard, "update", _one) for shard in GIFT_SHARDS], _db("postgres", "update"))))
    add("inventory /reservations", Op("inventory", "/reservations", "POST", "201",
                                      _median("inventory", "/reservations"), (_redis("decrby", lambda k: 1 - oos),)))
    for node, topic in CONSUMERS.values():
        add(f"{node} poll {topic}", Op(node, None, "", "", 0.0, (_kafka("fetch", topic),)))
    for db in ("postgres", *GIFT_SHARDS):
        for operation in ("select", "insert", "update"):
            add(f"{db} /query {operation}", Op(db, "/query", "POST", "200", _median(db, operation), variant=operation))
    for cmd in ("get", "set", "del", "incr", "decrby", "sadd", "zincrby", "lrange"):
        add(f"redis /command {cmd}", Op("redis", "/command", "POST", "200", _median("redis", "command"), variant=cmd))
    add("redis /pipeline lpush", Op("redis", "/pipeline", "POST", "200", _median("redis", "command"),
                                    variant="lpush"))
    for topic in TOPICS:
        add(f"kafka /produce {topic}", Op("kafka", "/produce/{topic}", "POST", "200", _median("kafka", "produce"),
                                          variant=topic))
        add(f"kafka /fetch {topic}", Op("kafka", "/fetch/{topic}", "POST", "200", _median("kafka", "fetch"),
                                        variant=topic))
    add("objstore PUT", Op("objstore", "/objects/{bucket}/{key:path}", "PUT", "201", _median("objstore", "PUT"),
                           variant="in"))
    add("objstore GET", Op("objstore", "/objects/{bucket}/{key:path}", "GET", "200", _median("objstore", "GET"),
                           variant="out"))
    return ops


#: consumer group -> (the service running it, the topic it reads), as in ``infra/kafka.py``'s ``TOPICS``.
CONSUMERS: dict[str, tuple[str, str]] = {
    "search-indexer": ("search", "posts"), "message-archiver": ("message", "messages"),
    "gift-settlement": ("payment", "gifts"), "push-sender": ("notification", "notifications"),
    "transcoder": ("media", "transcode"),
}
TOPICS: tuple[str, ...] = tuple(KAFKA_TOPICS)
