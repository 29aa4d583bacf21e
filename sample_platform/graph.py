"""Static shape of the sample platform: node names, who calls whom, public routes.

Importing this module starts nothing.  The names are used verbatim as the
Prometheus ``job`` label and as topology node names (``topology/reference_platform.yaml``
covers every node; a test keeps the two in step).

- ``SERVICES``: application services, entry point first.
- ``INFRA``: simulated infrastructure: databases (``postgres`` and the gift
  database shards ``giftdb-0``/``giftdb-1``), ``redis``, ``kafka``, ``objstore``;
  they call nobody.
- ``CDN_EDGES``: the live-streaming CDN edges, one node per provider.
- ``GIFT_SHARDS``: the gift database shards, indexed by ``user_id % len(GIFT_SHARDS)``.
- ``DATABASES``: the relational databases (``postgres`` and the gift shards).
- ``NODES``: ``SERVICES + INFRA``.
- ``CALL_GRAPH``: caller -> tuple of downstream node names it calls over HTTP.
- ``GATEWAY_ROUTES``: public gateway route -> (HTTP method, the service it is routed to).
- ``DEPLOYABLE``: nodes a clean deploy may restart: our services (the CDN edges
  belong to their providers).
"""

from __future__ import annotations

CDN_EDGES: tuple[str, ...] = ("cdn-a", "cdn-b", "cdn-c")
GIFT_SHARDS: tuple[str, ...] = ("giftdb-0", "giftdb-1")
DATABASES: tuple[str, ...] = ("postgres", *GIFT_SHARDS)

SERVICES: tuple[str, ...] = (
    "gateway", "user", "feed", "recommend", "post", "media", "search", "message", "notification",
    "live", "origin", *CDN_EDGES, "gift", "payment", "inventory",
)
INFRA: tuple[str, ...] = (*DATABASES, "redis", "kafka", "objstore")
NODES: tuple[str, ...] = SERVICES + INFRA
DEPLOYABLE: tuple[str, ...] = tuple(s for s in SERVICES if s not in CDN_EDGES)

CALL_GRAPH: dict[str, tuple[str, ...]] = {
    "gateway": ("user", "feed", "post", "media", "search", "message", "notification", "live", "gift"),
    "user": ("redis", "postgres"),
    "feed": ("user", "post", "recommend", "media", "redis"),
    "recommend": ("redis",),
    "post": ("postgres", "redis", "kafka"),
    "media": ("objstore", "kafka"),
    "search": ("redis", "kafka"),
    "message": ("user", "redis", "kafka", "postgres"),
    "notification": ("redis", "kafka"),
    "live": ("user", "redis"),
    "origin": ("objstore",),
    **{edge: ("origin",) for edge in CDN_EDGES},
    "gift": ("user", "inventory", "payment", *GIFT_SHARDS, "kafka", "redis"),
    "payment": ("postgres", "kafka", *GIFT_SHARDS),
    "inventory": ("redis",),
    **{name: () for name in INFRA},
}

GATEWAY_ROUTES: dict[str, tuple[str, str]] = {
    "/api/feed": ("GET", "feed"),
    "/api/profile": ("GET", "user"),
    "/api/post": ("POST", "post"),
    "/api/like": ("POST", "post"),
    "/api/comment": ("POST", "post"),
    "/api/media": ("POST", "media"),
    "/api/search": ("GET", "search"),
    "/api/message": ("POST", "message"),
    "/api/conversations": ("GET", "message"),
    "/api/notifications": ("GET", "notification"),
    "/api/live/join": ("POST", "live"),
    "/api/live/beacon": ("POST", "live"),
    "/api/gift": ("POST", "gift"),
}
