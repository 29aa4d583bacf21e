"""Static shape of the sample platform: node names and who calls whom.

Importing this module starts nothing.  The names are used verbatim as the
Prometheus ``job`` label and as topology node names elsewhere in OpsWatch.

- ``SERVICES``: the application services, entry point first.
- ``INFRA``: simulated infrastructure (postgres, redis, kafka); they call nobody.
- ``NODES``: ``SERVICES + INFRA``.
- ``CALL_GRAPH``: caller -> tuple of downstream node names it calls over HTTP.
- ``GATEWAY_ROUTES``: public gateway route -> the service it is routed to.
"""

from __future__ import annotations

SERVICES: tuple[str, ...] = ("gateway", "user", "feed", "post", "live", "gift", "message")
INFRA: tuple[str, ...] = ("postgres", "redis", "kafka")
NODES: tuple[str, ...] = SERVICES + INFRA

CALL_GRAPH: dict[str, tuple[str, ...]] = {
    "gateway": ("user", "feed", "post", "live", "gift", "message"),
    "user": ("redis", "postgres"),
    "feed": ("user", "post", "redis"),
    "post": ("postgres", "redis", "kafka"),
    "message": ("user", "redis", "kafka"),
    "live": ("user", "redis"),
    "gift": ("user", "postgres", "redis", "kafka"),
    "postgres": (),
    "redis": (),
    "kafka": (),
}

GATEWAY_ROUTES: dict[str, str] = {
    "/api/feed": "feed",
    "/api/profile": "user",
    "/api/post": "post",
    "/api/message": "message",
    "/api/live/join": "live",
    "/api/gift": "gift",
}
