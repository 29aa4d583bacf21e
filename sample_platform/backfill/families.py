"""Which series each node exposes, as :class:`~.series.Spec` built from the flows.

The families and their labels are those of ``sample_platform/metrics.py`` (every node) and of each
service's and infra node's module docstring; bucket bounds are imported from those modules.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..graph import CDN_EDGES, GATEWAY_ROUTES, GIFT_SHARDS, NODES
from ..infra.databases import select_rows
from ..infra.objstore import MAX_OBJECTS
from ..metrics import DURATION_BUCKETS
from ..params import PARAMS, next_version
from ..services.feed import SCORER_BUCKETS
from ..services.live import FIRST_FRAME_BUCKETS, SEGMENT_SECONDS
from ..services.notifications import KINDS as NOTIFICATION_KINDS
from ..services.notifications import PUSH_BUCKETS
from ..services.posts import TRANSCODE_BUCKETS
from ..traffic import http, live
from ..traffic.im import ONLINE_PEER_RATIO
from .calls import CONSUMERS
from .effects import Knobs
from .model import Flows, generator_default
from .series import Spec

L = tuple[tuple[str, str], ...]


def version_names(node: str, versions: np.ndarray) -> list[str]:
    """The versions a node ran, by index: its parameters' version, then one more per deploy."""
    names = [PARAMS[node].version]
    for _ in range(int(versions.max()) if len(versions) else 0):
        names.append(next_version(names[-1]))
    return names


def build_specs(flows: Flows, knobs: Knobs, versions: dict[str, np.ndarray], start_times: dict[str, np.ndarray],
                rate: float) -> list[Spec]:
    """Every series of every node.  ``versions``: node -> version index per step (0 = PARAMS version);
    ``start_times``: node -> epoch seconds its instance started, per step; ``rate``: the mean traffic
    (requests/s) the gateway's rate limits are set from."""
    n = len(knobs.t)
    zero = np.zeros(n)
    specs: list[Spec] = []
    ops = flows.ops

    def counter(node: str, name: str, labels: L, values, counts: bool = True, lazy: bool = False,
                alive: np.ndarray | None = None) -> None:
        specs.append(Spec(node, name, labels, "counter", np.broadcast_to(np.asarray(values, float), (n,)), counts,
                          lazy, alive=alive))

    def gauge(node: str, name: str, labels: L, values) -> None:
        specs.append(Spec(node, name, labels, "gauge", np.broadcast_to(np.asarray(values, float), (n,))))

    def histogram(node: str, name: str, labels: L, rate_, mean, buckets, sigma: float = 0.45,
                  lazy: bool = False) -> None:
        specs.append(Spec(node, name, labels, "histogram", np.asarray(rate_, float), True, lazy,
                          np.broadcast_to(np.asarray(mean, float), (n,)), sigma, buckets))

    # -- the standard families of every node -------------------------------------------------------------
    routes: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name, op in ops.items():
        if op.route:
            routes[op.node, op.route, op.method].append(name)
    for (node, route, method), names in routes.items():
        total = sum(flows.rate[x] for x in names)
        mean = sum(flows.rate[x] * flows.latency[x] for x in names) / np.maximum(total, 1e-12)
        histogram(node, "http_request_duration_seconds", (("method", method), ("route", route)), total, mean,
                  DURATION_BUCKETS, PARAMS[node].service_sigma)
        codes: dict[str, np.ndarray] = defaultdict(lambda: zero)
        for x in names:
            for code, share in flows.codes[x].items():
                codes[code] = codes[code] + flows.rate[x] * share
        canary = knobs.canary.get(node)
        rollout = canary[0] if canary is not None else zero
        for k, version in enumerate(version_names(node, versions[node])):
            alive = versions[node] == k  # a deploy restarts the node under its next version
            for code, r in codes.items():
                labels = (("code", code), ("method", method), ("route", route))
                counter(node, "http_requests_total", labels + (("version", version),), r * (1 - rollout), lazy=True,
                        alive=alive)
                if canary is not None:  # a rollout: the next version serves its share (its errors are in "500")
                    counter(node, "http_requests_total", labels + (("version", next_version(version)),),
                            r * rollout, lazy=True, alive=alive)
    in_flight: dict[str, np.ndarray] = defaultdict(lambda: zero)
    busy: dict[str, np.ndarray] = defaultdict(lambda: zero)
    client: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(lambda: defaultdict(lambda: zero))
    client_time: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: zero)
    for name, op in ops.items():
        busy[op.node] = busy[op.node] + flows.rate[name] * flows.latency[name]
        if op.route:
            in_flight[op.node] = in_flight[op.node] + flows.rate[name] * flows.latency[name]
        for c in op.calls:
            callee = ops[c.op]
            calls = flows.calls[name, c.op]
            timeouts = flows.call_timeouts[name, c.op]
            per_code = client[op.node, callee.node]
            per_code["timeout"] = per_code["timeout"] + calls * timeouts
            for code, share in flows.codes[c.op].items():
                per_code[code] = per_code[code] + calls * (1 - timeouts) * share
            client_time[op.node, callee.node] = client_time[op.node, callee.node] + calls * flows.latency[c.op]
    for (node, downstream), per_code in client.items():
        total = sum(per_code.values())
        for code, r in per_code.items():
            counter(node, "http_client_requests_total", (("code", code), ("downstream", downstream)), r, lazy=True)
        histogram(node, "http_client_request_duration_seconds", (("downstream", downstream),), total,
                  client_time[node, downstream] / np.maximum(total, 1e-12), DURATION_BUCKETS, lazy=True)
    for node in NODES:
        p = PARAMS[node]
        gauge(node, "http_requests_in_flight", (), np.round(in_flight[node]))
        gauge(node, "worker_pool_size", (), p.pool_size)
        stuck = p.pool_size - knobs.usable_slots[node]
        counter(node, "worker_busy_seconds_total", (), np.minimum(busy[node] + stuck, p.pool_size), counts=False)
        gauge(node, "process_start_time_seconds", (), start_times[node])
        gauge(node, "process_resident_memory_bytes", (), getattr(p, "memory_bytes", 0.0) + knobs.leaked_bytes[node])
    _business(flows, knobs, counter, gauge, histogram, rate)
    return specs


def _business(flows: Flows, knobs: Knobs, counter, gauge, histogram, rate: float) -> None:
    """The business and infra families of each node (see the service and infra modules)."""
    r, d, ops = flows.rate, flows.drivers, flows.ops
    n = len(knobs.t)
    ok = {name: flows.codes[name].get(op.ok_code, np.ones(n)) for name, op in ops.items() if op.ok_code}
    # gateway
    gw = PARAMS["gateway"]
    users = generator_default(http.TrafficGenerator, "users")
    arrivals = sum(r[f"gateway {p}"] for p in GATEWAY_ROUTES)  # users seen in the last 60 s, drawn uniformly
    gauge("gateway", "platform_online_users", (), np.round(users * (1 - np.exp(-60 * arrivals / users))))
    offered = http.offered_rps(rate)
    for path in GATEWAY_ROUTES:
        counter("gateway", "gateway_rate_limited_total", (("route", path),), 0.0)
        gauge("gateway", "gateway_rate_limit_rps", (("route", path),),
              max(gw.rate_limit_min_rps, gw.rate_limit_headroom * offered.get(path, 0.0)))
    # user: two cache tiers
    lookups = r["user /users"] + r["user /following"]
    counter("user", "user_cache_requests_total", (("result", "hit"), ("tier", "l1")), lookups * knobs.l1_hit)
    counter("user", "user_cache_requests_total", (("result", "miss"), ("tier", "l1")), lookups * (1 - knobs.l1_hit))
    l2 = lookups * (1 - knobs.l1_hit)
    counter("user", "user_cache_requests_total", (("result", "hit"), ("tier", "l2")), l2 * knobs.redis_hit)
    counter("user", "user_cache_requests_total", (("result", "miss"), ("tier", "l2")), l2 * (1 - knobs.redis_hit))
    # feed and recommend: a page has the followed accounts' posts (a select's rows), recommendations fill
    # the rest when they come in time
    page, feeds = PARAMS["feed"].page_size, r["feed /feed"] * ok["feed /feed"]
    rec_ok = ok["recommend /recommendations"] * (1 - flows.call_timeouts["feed /feed", "recommend /recommendations"])
    following = min(page, len(select_rows("posts", 1)))
    counter("feed", "feed_items_served_total", (("source", "following"),), feeds * following)
    counter("feed", "feed_items_served_total", (("source", "recommended"),), feeds * rec_ok * (page - following))
    counter("feed", "feed_degraded_total", (), feeds * (1 - rec_ok))
    rp = PARAMS["recommend"]
    for scorer, (_, median) in rp.scorers.items():
        histogram("recommend", "recommend_scorer_duration_seconds", (("scorer", scorer),), r["recommend /recommendations"],
                  median * math.exp(rp.service_sigma**2 / 2), SCORER_BUCKETS)
    counter("recommend", "recommend_candidates_scored_total", (), r["recommend /recommendations"] * rp.candidates)
    # post and media
    counter("post", "posts_created_total", (), r["post POST /posts"] * ok["post POST /posts"])
    counter("post", "post_likes_total", (), r["post /likes"] * ok["post /likes"])
    counter("post", "post_comments_total", (), r["post /comments"] * ok["post /comments"])
    mp = PARAMS["media"]
    counter("media", "media_uploads_total", (), r["media /media"] * ok["media /media"])
    jobs = r["media transcode"]
    failed = 1 - ok["objstore GET"] * ok["objstore PUT"] ** mp.renditions
    counter("media", "media_transcode_jobs_total", (("status", "ok"),), jobs * (1 - failed))
    counter("media", "media_transcode_jobs_total", (("status", "failed"),), jobs * failed)
    histogram("media", "media_transcode_duration_seconds", (), jobs * (1 - failed), flows.latency["media transcode"],
              TRANSCODE_BUCKETS, mp.service_sigma)
    # search: the index holds every post indexed so far, the vocabulary bounds its terms
    counter("search", "search_queries_total", (("result", "hits"),), r["search /search"] * ok["search /search"])
    counter("search", "search_queries_total", (("result", "empty"),), 0.0)
    indexed = np.cumsum(d["consumed posts"]) * (knobs.t[1] - knobs.t[0] if n > 1 else 60.0)
    gauge("search", "search_index_documents", (), np.round(indexed))
    words_per_post = 5  # the traffic generator writes posts of 5 words of its vocabulary
    gauge("search", "search_index_terms", (), np.minimum(len(http.VOCABULARY), np.round(indexed * words_per_post)))
    # message
    sent = r["message frame"] + r["message /messages"]
    gauge("message", "im_connections_online", (), d["im_online"])
    counter("message", "im_connections_opened_total", (), d["im_opened"])
    counter("message", "im_messages_sent_total", (), sent)
    frames_ok = r["message frame"] * (1 - flows.codes["message frame"]["500"] - flows.codes["message frame"]["502"])
    counter("message", "im_messages_delivered_total", (("via", "socket"),), frames_ok * ONLINE_PEER_RATIO)
    counter("message", "im_messages_delivered_total", (("via", "push"),),
            frames_ok * (1 - ONLINE_PEER_RATIO) + r["message /messages"] * ok["message /messages"])
    histogram("message", "im_message_delivery_seconds", (), frames_ok * ONLINE_PEER_RATIO,
              flows.latency["message frame"], DURATION_BUCKETS)
    counter("message", "im_events_total", (("type", "typing"),), d["im_frames"])
    counter("message", "im_events_total", (("type", "read"),), d["im_reads"])
    # notification: every consumed notification is pushed
    npar = PARAMS["notification"]
    pushed = d["consumed notifications"]
    organic = {"like": r["post /likes"] * ok["post /likes"], "comment": r["post /comments"] * ok["post /comments"],
               "message": flows.calls["message /messages", "kafka /produce notifications"]
               + flows.calls["message frame", "kafka /produce notifications"]}
    organic_total = sum(organic.values())
    shares = {**{k: v / np.maximum(organic_total, 1e-12) / d["push_factor"] for k, v in organic.items()},
              "campaign": 1 - 1 / d["push_factor"]}
    for kind in NOTIFICATION_KINDS:
        counter("notification", "notifications_sent_total", (("kind", kind), ("status", "delivered")),
                pushed * shares[kind] * (1 - npar.push_failure_ratio))
        counter("notification", "notifications_sent_total", (("kind", kind), ("status", "failed")),
                pushed * shares[kind] * npar.push_failure_ratio)
    histogram("notification", "notification_push_duration_seconds", (), pushed,
              npar.push_seconds * math.exp(npar.service_sigma**2 / 2), PUSH_BUCKETS, npar.service_sigma)
    gauge("notification", "notification_campaign_active", (), (d["push_factor"] > 1).astype(float))
    # live, origin and the CDN edges
    lp = PARAMS["live"]
    joins = r["live /join"] * ok["live /join"]
    gauge("live", "live_viewers", (), np.round(joins * lp.mean_watch_seconds))
    for edge in CDN_EDGES:
        w, stall = lp.cdn_weights[edge], d[f"stall {edge}"]
        players = d[f"players {edge}"]
        counter("live", "live_joins_total", (("cdn", edge),), joins * w)
        counter("live", "live_playback_seconds_total", (("cdn", edge),), players * (1 - stall), counts=False)
        counter("live", "live_stall_seconds_total", (("cdn", edge),), players * stall, counts=False)
        counter("live", "live_stalls_total", (("cdn", edge),), d[f"segments {edge}"] * (stall > 0))
        counter("live", "live_delivered_bits_total", (("cdn", edge),), players * (1 - stall) * d[f"bitrate {edge}"],
                counts=False)
        histogram("live", "live_first_frame_seconds", (("cdn", edge),), d["sessions"] * w,
                  d[f"first_frame {edge}"] + flows.latency[f"{edge} /live/{{room_id}}/playlist"]
                  + flows.latency[f"{edge} /live/{{room_id}}/{{seq}}"], FIRST_FRAME_BUCKETS, live.CLIENT_SIGMA)
        hit = knobs.cdn_hit[edge]
        lookups = r[f"{edge} /live/{{room_id}}/playlist"] + r[f"{edge} /live/{{room_id}}/{{seq}}"]
        counter(edge, "cdn_cache_requests_total", (("result", "hit"),), lookups * hit)
        counter(edge, "cdn_cache_requests_total", (("result", "miss"),), lookups * (1 - hit))
        counter(edge, "cdn_egress_bytes_total", (), d[f"segments {edge}"] * d[f"bitrate {edge}"] * SEGMENT_SECONDS / 8,
                counts=False)
    segment_bytes = live.BITRATE_LADDER[-1] * live.INGEST_SECONDS / 8
    gauge("origin", "origin_rooms_live", (), d["rooms"])
    counter("origin", "origin_ingested_segments_total", (), r["origin /ingest"] * ok["origin /ingest"])
    counter("origin", "origin_ingested_bytes_total", (), r["origin /ingest"] * ok["origin /ingest"] * segment_bytes,
            counts=False)
    # gift, payment, inventory
    orders = r["gift /orders"]
    for shard in GIFT_SHARDS:
        share = 1 / len(GIFT_SHARDS)
        counter("gift", "gift_orders_total", (("shard", shard), ("status", "ok")), orders * share * ok["gift /orders"])
        counter("gift", "gift_orders_total", (("shard", shard), ("status", "failed")),
                orders * share * (1 - ok["gift /orders"]))
        histogram("gift", "gift_order_duration_seconds", (("shard", shard),), orders * share,
                  flows.latency["gift /orders"], DURATION_BUCKETS)
    charges = r["payment /charges"]
    decline = PARAMS["payment"].decline_ratio
    counter("payment", "payment_charges_total", (("status", "ok"),), charges * ok["payment /charges"])
    counter("payment", "payment_charges_total", (("status", "declined"),), charges * decline)
    counter("payment", "payment_settled_gifts_total", (), d["consumed gifts"])
    oos = PARAMS["inventory"].out_of_stock_ratio
    counter("inventory", "inventory_reservations_total", (("status", "ok"),),
            r["inventory /reservations"] * ok["inventory /reservations"])
    counter("inventory", "inventory_reservations_total", (("status", "out_of_stock"),), r["inventory /reservations"] * oos)
    # databases
    for db in ("postgres", *GIFT_SHARDS):
        p = PARAMS[db]
        written = np.zeros(n)
        for operation in ("select", "insert", "update"):
            name = f"{db} /query {operation}"
            own = flows.latency[name]
            histogram(db, "pg_query_duration_seconds", (("operation", operation),), r[name], own, DURATION_BUCKETS,
                      p.service_sigma, lazy=True)
            if operation != "select":
                written = written + r[name]
        busy = sum(r[f"{db} /query {o}"] * flows.latency[f"{db} /query {o}"] for o in ("select", "insert", "update"))
        gauge(db, "pg_connections_active", (), np.minimum(p.pool_size, np.round(busy + p.pool_size
                                                                                 - knobs.usable_slots[db])))
        gauge(db, "pg_connections_max", (), p.pool_size)
        counter(db, "pg_rows_written_total", (), written)
    # redis
    rp_ = PARAMS["redis"]
    gets = r["redis /command get"]
    counter("redis", "redis_keyspace_hits_total", (), gets * knobs.redis_hit)
    counter("redis", "redis_keyspace_misses_total", (), gets * (1 - knobs.redis_hit))
    writes = np.zeros(n)
    for name, op in ops.items():
        if op.node == "redis":
            counter("redis", "redis_commands_total", (("cmd", op.variant),), r[name], lazy=True)
            counter("redis", "redis_commands_duration_seconds_total", (("cmd", op.variant),),
                    r[name] * flows.latency[name], counts=False, lazy=True)
            if op.variant not in ("get", "lrange", "del"):
                writes = writes + r[name]
    step = knobs.t[1] - knobs.t[0] if n > 1 else 60.0
    gauge("redis", "redis_db_keys", (("db", "db0"),), np.round(np.cumsum(writes * step) % rp_.max_keys))
    # kafka
    for group, (node, topic) in CONSUMERS.items():
        produced = r[f"kafka /produce {topic}"] * (d["push_factor"] if topic == "notifications" else 1)
        counter("kafka", "kafka_messages_produced_total", (("topic", topic),), produced)
        counter("kafka", "kafka_messages_consumed_total", (("consumergroup", group), ("topic", topic)),
                d[f"consumed {topic}"])
        gauge("kafka", "kafka_consumergroup_lag", (("consumergroup", group), ("topic", topic)), np.round(d[f"lag {topic}"]))
        gauge(node, "kafka_consumer_group_info", (("consumergroup", group), ("topic", topic)), 1.0)
        gauge("kafka", "kafka_topic_partition_current_offset", (("topic", topic),), np.round(np.cumsum(produced * step)))
    # object storage: uploads, renditions and live segments; the oldest objects expire past MAX_OBJECTS
    upload = mp.upload_bytes
    puts = r["objstore PUT"]
    in_bytes = (flows.calls["media /media", "objstore PUT"] * upload
                + flows.calls["media transcode", "objstore PUT"] * upload / 4
                + flows.calls["origin /ingest", "objstore PUT"] * segment_bytes)
    counter("objstore", "objstore_transferred_bytes_total", (("direction", "in"),), in_bytes, counts=False)
    counter("objstore", "objstore_transferred_bytes_total", (("direction", "out"),), r["objstore GET"] * upload,
            counts=False)
    objects = np.minimum(MAX_OBJECTS, np.round(np.cumsum(puts * step)))
    gauge("objstore", "objstore_objects", (), objects)
    gauge("objstore", "objstore_stored_bytes", (), objects * in_bytes / np.maximum(puts, 1e-12))
    return []
