"""In-process tests of the Platform API over real HTTP and WebSockets: routes, business metrics, fault
effects, cache tiers, IM delivery, a clean deploy and a marketing push."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from sample_platform import Platform
from sample_platform.graph import GATEWAY_ROUTES, NODES
from sample_platform.traffic import MIX

pytestmark = pytest.mark.integration

ROUTE_CALLS = [  # (method, public route, payload, expected status)
    ("GET", "/api/feed", {"user_id": 1}, 200),
    ("GET", "/api/profile", {"user_id": 2}, 200),
    ("GET", "/api/search", {"user_id": 2, "q": "cat"}, 200),
    ("GET", "/api/conversations", {"user_id": 3}, 200),
    ("GET", "/api/notifications", {"user_id": 3}, 200),
    ("POST", "/api/post", {"user_id": 3, "text": "cat on a beach"}, 201),
    ("POST", "/api/like", {"user_id": 3, "post_id": "5-1"}, 201),
    ("POST", "/api/comment", {"user_id": 3, "post_id": "5-1", "text": "nice"}, 201),
    ("POST", "/api/media", {"user_id": 3, "bytes": 1e6}, 202),
    ("POST", "/api/message", {"user_id": 3, "to_user": 4, "text": "hi"}, 201),
    ("POST", "/api/live/join", {"user_id": 5, "room_id": 7}, 200),
    ("POST", "/api/live/beacon", {"user_id": 5, "room_id": 7, "cdn": "cdn-b", "playback_seconds": 10,
                                  "stall_seconds": 0.5, "stalls": 1, "bits": 2.5e7, "first_frame_seconds": 0.8}, 204),
    ("POST", "/api/gift", {"user_id": 6, "room_id": 7, "gift": "rose", "amount": 3}, 201),
]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m, name, **labels) -> float:
    return sum(v for (n, ls), v in m.items() if n == name and set(labels.items()) <= ls)


async def metrics(c: httpx.AsyncClient, url: str):
    r = await c.get(url + "/metrics")
    assert r.status_code == 200
    return samples(r.text)


async def call(c: httpx.AsyncClient, gw: str, method: str, path: str, payload: dict) -> httpx.Response:
    return await (c.get(gw + path, params=payload) if method == "GET" else c.post(gw + path, json=payload))


async def eventually(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


def test_every_public_route_reaches_its_business(tmp_path):
    assert {path for _, path, _, _ in ROUTE_CALLS} == set(GATEWAY_ROUTES)

    async def scenario():
        async with Platform(rate=0, seed=3, faults_log=tmp_path / "faults.jsonl") as p:
            assert set(p.urls) == set(NODES) and p.traffic is None and p.im is None
            gw = p.urls["gateway"]
            async with httpx.AsyncClient(timeout=10) as c:
                for method, path, payload, status in ROUTE_CALLS:
                    r = await call(c, gw, method, path, payload)
                    assert r.status_code == status, (path, r.text)
                r = await c.get(gw + "/api/profile")
                assert r.status_code == 400 and "user_id" in r.json()["error"]
                r = await c.post(gw + "/api/like", json={"user_id": 1, "post_id": "nonsense"})
                assert r.status_code == 400 and "post id" in r.json()["error"]

                g = await metrics(c, gw)
                assert value(g, "http_requests_total", route="/api/feed", code="200") == 1
                assert not any(dict(ls).get("route") == "/metrics" for (n, ls) in g)
                assert value(g, "http_client_requests_total", downstream="gift", code="201") == 1
                assert value(g, "http_client_requests_total", downstream="notification", code="200") == 2  # badge
                assert value(g, "platform_online_users") == 5  # users 1, 2, 3, 5, 6
                assert value(g, "platform_build_info", version="1.0.0") == 1
                feed = await metrics(c, p.urls["feed"])
                for downstream in ("user", "post", "recommend", "media", "redis"):  # five calls per feed page
                    assert value(feed, "http_client_requests_total", downstream=downstream) == 1, downstream
                assert value(feed, "feed_items_served_total", source="recommended") > 0
                rec = await metrics(c, p.urls["recommend"])
                assert {dict(ls)["scorer"] for (n, ls) in rec if n == "recommend_scorer_duration_seconds_count"} \
                    == {"popularity", "affinity", "freshness"}
                live = await metrics(c, p.urls["live"])
                assert value(live, "live_viewers") == 1 and value(live, "live_joins_total") == 1
                assert value(live, "live_stall_seconds_total", cdn="cdn-b") == 0.5
                assert value(live, "live_first_frame_seconds_count", cdn="cdn-b") == 1
                gift = await metrics(c, p.urls["gift"])
                assert value(gift, "gift_orders_total", shard="giftdb-0", status="ok") == 1  # user 6: shard 0
                assert value(gift, "gift_order_duration_seconds_count", shard="giftdb-0") == 1
                shard0 = await metrics(c, p.urls["giftdb-0"])
                assert value(shard0, "pg_query_duration_seconds_count", operation="select") == 1  # idempotency key
                assert value(shard0, "pg_query_duration_seconds_count", operation="insert") == 1
                assert value(await metrics(c, p.urls["giftdb-1"]), "pg_query_duration_seconds_count") == 0
                kafka = await metrics(c, p.urls["kafka"])
                for topic in ("posts", "notifications", "transcode", "messages", "gifts"):
                    assert value(kafka, "kafka_messages_produced_total", topic=topic) >= 1, topic

                async def consumed():  # every consumer group catches up
                    k = await metrics(c, p.urls["kafka"])
                    return value(k, "kafka_consumergroup_lag") == 0 and value(
                        await metrics(c, p.urls["media"]), "media_transcode_jobs_total", status="ok") == 1

                assert await eventually(consumed)
                shard0 = await metrics(c, p.urls["giftdb-0"])  # the settlement marked the order settled
                assert value(shard0, "pg_query_duration_seconds_count", operation="update") == 1
                notif = await metrics(c, p.urls["notification"])
                for kind in ("like", "comment", "message"):  # fed by likes, comments and messages
                    assert value(notif, "notifications_sent_total", kind=kind) == 1, kind
                search = await metrics(c, p.urls["search"])
                assert value(search, "search_index_documents") == 1
                r = await c.get(gw + "/api/search", params={"user_id": 1, "q": "beach"})
                assert r.status_code == 200
                store = await metrics(c, p.urls["objstore"])
                assert value(store, "objstore_objects") == 4  # the original and 3 renditions

                # per-route rate limit: without traffic a route admits its floor, then answers 429
                codes = [(await call(c, gw, "GET", "/api/notifications", {"user_id": 9})).status_code
                         for _ in range(30)]
                assert codes.count(429) > 0 and codes[0] == 200
                g = await metrics(c, gw)
                assert value(g, "gateway_rate_limited_total", route="/api/notifications") == codes.count(429)
                assert value(g, "http_requests_total", route="/api/notifications", code="429") == codes.count(429)

    asyncio.run(scenario())


def test_fault_effects_and_cache_tiers(tmp_path):
    async def scenario():
        async with Platform(rate=0, seed=3, faults_log=tmp_path / "faults.jsonl") as p:
            gw = p.urls["gateway"]
            async with httpx.AsyncClient(timeout=10) as c:
                # errors on user via the control API: the gateway answers 502 on routes needing user
                r = await c.post(p.control_url + "/faults", json={
                    "kind": "errors", "target": "user", "duration_seconds": 2, "params": {"error_ratio": 1.0}})
                assert r.status_code == 201, r.text
                r = await c.get(gw + "/api/profile", params={"user_id": 9})
                assert r.status_code == 502 and "user" in r.json()["error"]
                r = await c.post(gw + "/api/gift", json={"user_id": 7, "room_id": 7, "amount": 1})
                assert r.status_code == 502
                gift = await metrics(c, p.urls["gift"])
                assert value(gift, "gift_orders_total", shard="giftdb-1", status="failed") == 1
                assert value(gift, "http_client_requests_total", downstream="user", code="500") == 1
                user = await metrics(c, p.urls["user"])
                assert value(user, "http_requests_total", route="/users/{user_id}", code="500") == 2
                await asyncio.sleep(2.0)

                # a required downstream slower than the caller's timeout: 504 at the caller, 502 above
                p.injector.inject("latency", "postgres", 3, {"latency_seconds": 1.3})
                r = await c.post(gw + "/api/post", json={"user_id": 3, "text": "slow"})
                assert r.status_code == 502
                post = await metrics(c, p.urls["post"])
                assert value(post, "http_requests_total", route="/posts", method="POST", code="504") == 1
                assert value(post, "http_client_requests_total", downstream="postgres", code="timeout") == 1

                # a failing redis collapses the L2 hit ratio and shifts the reads to postgres
                async def profiles(n: int, first: int) -> tuple[float, float, float]:
                    before_u, before_pg = await metrics(c, p.urls["user"]), await metrics(c, p.urls["postgres"])
                    for uid in range(first, first + n):
                        assert (await c.get(p.urls["user"] + f"/users/{uid}")).status_code == 200
                    u, pg = await metrics(c, p.urls["user"]), await metrics(c, p.urls["postgres"])
                    hits = value(u, "user_cache_requests_total", tier="l2", result="hit") - value(
                        before_u, "user_cache_requests_total", tier="l2", result="hit")
                    misses = value(u, "user_cache_requests_total", tier="l2", result="miss") - value(
                        before_u, "user_cache_requests_total", tier="l2", result="miss")
                    reads = value(pg, "pg_query_duration_seconds_count", operation="select") - value(
                        before_pg, "pg_query_duration_seconds_count", operation="select")
                    return hits / (hits + misses), misses, reads

                await asyncio.sleep(3.0)  # the postgres fault is over
                healthy_ratio, _, healthy_reads = await profiles(200, 1000)
                assert 0.7 < healthy_ratio < 0.97
                p.injector.inject("errors", "redis", 30, {"error_ratio": 1.0})
                faulty_ratio, misses, faulty_reads = await profiles(200, 2000)
                assert faulty_ratio == 0 and faulty_reads == misses > 3 * healthy_reads

                # cpu_saturation: stuck work holds all but usable_slots, utilization goes to ~1
                p.injector.inject("cpu_saturation", "postgres", 1.0, {"usable_slots": 1, "hold_seconds": 0.0})
                await asyncio.sleep(0.5)
                pg = await metrics(c, p.urls["postgres"])
                assert value(pg, "pg_connections_active") == 31 and value(pg, "pg_connections_max") == 32
                busy0 = value(pg, "worker_busy_seconds_total")
                await asyncio.sleep(0.3)
                pg = await metrics(c, p.urls["postgres"])
                assert (value(pg, "worker_busy_seconds_total") - busy0) / 0.3 / 32 > 0.9
                await asyncio.sleep(0.9)  # expired; the reconciler frees the slots
                assert p.nodes["postgres"].pool.reserved == 0

            kinds = [json.loads(x)["kind"] for x in (tmp_path / "faults.jsonl").read_text().splitlines()]
            assert kinds == ["errors", "latency", "errors", "cpu_saturation"]

    asyncio.run(scenario())


def test_im_over_websockets_delivers_relays_and_falls_back_to_push():
    async def scenario():
        async with Platform(rate=0, seed=4) as p:
            ws_url = p.urls["message"].replace("http://", "ws://") + "/ws"
            async with connect(f"{ws_url}?user_id=11") as alice, connect(f"{ws_url}?user_id=12") as bob, \
                    httpx.AsyncClient(timeout=10) as c:
                await alice.send(json.dumps({"type": "typing", "to": 12}))
                assert json.loads(await bob.recv()) == {"type": "typing", "from": 11}
                await alice.send(json.dumps({"type": "message", "id": "m1", "to": 12, "text": "hello"}))
                assert json.loads(await bob.recv()) == {"type": "message", "id": "m1", "from": 11, "text": "hello"}
                assert json.loads(await alice.recv()) == {"type": "ack", "id": "m1", "via": "socket"}
                await bob.send(json.dumps({"type": "read", "to": 11, "id": "m1"}))
                assert json.loads(await alice.recv()) == {"type": "read", "from": 12, "id": "m1"}
                await alice.send(json.dumps({"type": "message", "id": "m2", "to": 99, "text": "offline?"}))
                assert json.loads(await alice.recv()) == {"type": "ack", "id": "m2", "via": "push"}
                await alice.send("not json")
                assert "not JSON" in json.loads(await alice.recv())["error"]
                await alice.send(json.dumps({"type": "wave", "to": 12}))
                assert "wave" in json.loads(await alice.recv())["error"]

                m = await metrics(c, p.urls["message"])
                assert value(m, "im_connections_online") == 2
                assert value(m, "im_messages_sent_total") == 2
                assert value(m, "im_messages_delivered_total", via="socket") == 1
                assert value(m, "im_messages_delivered_total", via="push") == 1
                assert value(m, "im_events_total", type="typing") == 1 and value(m, "im_events_total", type="read") == 1

                async def pushed():
                    n = await metrics(c, p.urls["notification"])
                    return value(n, "notifications_sent_total", kind="message") == 1

                assert await eventually(pushed)  # the offline recipient got a push

                # an errors fault on message fails the message: an error frame, sent but not delivered
                p.injector.inject("errors", "message", 5, {"error_ratio": 1.0})
                await alice.send(json.dumps({"type": "message", "id": "m3", "to": 12, "text": "lost"}))
                frames = [json.loads(await bob.recv()), json.loads(await alice.recv())]
                assert frames[1] == {"type": "error", "id": "m3", "error": "message: injected failure"}
                m = await metrics(c, p.urls["message"])
                assert value(m, "im_messages_sent_total") == 3 and value(m, "im_messages_delivered_total") == 2
                assert frames[0]["id"] == "m3"  # handed over before the failure: the sender would send again

    asyncio.run(scenario())


def test_clean_deploy_and_marketing_push_are_recorded_as_not_faults(tmp_path):
    async def scenario():
        async with Platform(rate=0, seed=5, faults_log=tmp_path / "truth.jsonl") as p:
            gw = p.urls["gateway"]
            async with httpx.AsyncClient(timeout=10) as c:
                old = p.nodes["user"]
                for uid in range(1, 6):
                    assert (await c.get(gw + "/api/profile", params={"user_id": uid})).status_code == 200
                codes: list[int] = []

                async def load():  # requests keep flowing through the user service during the deploy
                    for uid in range(100, 160):
                        codes.append((await c.get(p.urls["user"] + f"/users/{uid}")).status_code)
                        await asyncio.sleep(0.01)

                loader = asyncio.create_task(load())
                await asyncio.sleep(0.1)
                r = await c.post(p.control_url + "/surges", json={"kind": "deploy", "target": "user",
                                                                  "duration_seconds": 20})
                assert r.status_code == 201, r.text
                deploy = r.json()
                await loader
                assert set(codes) == {200} and len(codes) == 60  # a clean restart: no request failed
                assert deploy["kind"] == "surge:deploy" and deploy["fault"] is False
                assert deploy["params"] == {"from_version": "1.0.0", "to_version": "1.0.1"}
                new = p.nodes["user"]
                assert new is not old and new.params.version == "1.0.1" and old.active == 0
                u = await metrics(c, p.urls["user"])
                assert value(u, "platform_build_info", version="1.0.1") == 1
                assert value(u, "platform_build_info", version="1.0.0") == 0
                assert value(u, "process_start_time_seconds") > old.started_at
                assert value(u, "http_requests_total") < 60  # counters restarted from 0, like a process
                assert new.l1_hit_ratio() < 0.1 * old.l1_hit_ratio()  # the new instance's L1 starts cold

                r = await c.post(p.control_url + "/surges", json={"kind": "marketing_push", "duration_seconds": 4,
                                                                  "params": {"factor": 3}})
                assert r.status_code == 201, r.text

                async def campaign_sent():
                    n = await metrics(c, p.urls["notification"])
                    return value(n, "notification_campaign_active") == 1 and value(
                        n, "notifications_sent_total", kind="campaign") >= 2

                assert await eventually(campaign_sent, 6)
                r = await c.post(p.control_url + "/surges", json={"kind": "deploy", "target": "redis",
                                                                  "duration_seconds": 20})
                assert r.status_code == 400 and "redis" in r.json()["error"]
                listed = (await c.get(p.control_url + "/faults")).json()["faults"]
            kinds = [json.loads(x)["kind"] for x in (tmp_path / "truth.jsonl").read_text().splitlines()]
            assert kinds == ["surge:deploy", "surge:marketing_push"] == [f["kind"] for f in listed]

    asyncio.run(scenario())


def test_traffic_generators_mix_and_clean_stop():
    assert sum(share for share, _, _ in MIX.values()) == pytest.approx(1.0)

    async def scenario():
        async with Platform(rate=40, seed=5) as p:
            await asyncio.sleep(2.0)
            stats = dict(p.traffic.stats)
            status = p.traffic_status()
        assert stats["sent"] > 30 and stats["dropped"] == 0
        ok = sum(n for code, n in stats["by_code"].items() if code in ("200", "201", "202", "204"))
        assert ok >= 0.9 * stats["completed"], stats
        assert status["im"]["connects"] >= 2 and 0.5 < status["multiplier"] < 1.7
        assert status["time_scale"] == 1.0 and status["surges"] == []

    asyncio.run(scenario())


def test_the_three_fault_kinds_act_on_every_node():
    """latency, errors and cpu_saturation through each node's own operation wrapper (the path of its
    HTTP requests, WebSocket frames and kafka batches)."""
    from sample_platform.node import InjectedFailure

    async def scenario():
        async with Platform(rate=0, seed=6) as p:
            for name in NODES:
                node = p.nodes[name]
                t0 = time.perf_counter()
                await node.run_op(lambda ctx: ctx.work(0.0))
                healthy = time.perf_counter() - t0
                p.injector.inject("latency", name, 60, {"latency_seconds": 0.2})
                t0 = time.perf_counter()
                await node.run_op(lambda ctx: ctx.work(0.0))
                assert time.perf_counter() - t0 >= 0.2 > healthy, name
                p.injector.inject("errors", name, 60, {"error_ratio": 1.0})
                with pytest.raises(InjectedFailure):
                    await node.run_op(lambda ctx: asyncio.sleep(0))
                p.injector.inject("cpu_saturation", name, 60, {"usable_slots": 1})
            await asyncio.sleep(0.5)  # the reconciler applies cpu_saturation to every pool
            for name in NODES:
                pool = p.nodes[name].pool
                assert pool.reserved == pool.size - 1, name

    asyncio.run(scenario())


def test_the_calendar_starts_surges_as_simulated_time_reaches_them(tmp_path):
    from datetime import datetime, timezone

    monday_1229 = datetime(2026, 11, 23, 12, 29, 55, tzinfo=timezone.utc).timestamp()

    async def scenario():
        # ten simulated minutes per real second: the 12:30 marketing push starts within a second
        async with Platform(rate=0, seed=2, time_scale=600, sim_start=monday_1229, surges="calendar",
                            faults_log=tmp_path / "truth.jsonl") as p:
            deadline = time.monotonic() + 5
            while not p.injector.truth.records() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            [record] = p.injector.truth.records()
            assert record["kind"] == "surge:marketing_push" and record["fault"] is False
            assert p.surges.factor("marketing_push") == 5.0
            assert p.nodes["notification"].campaign_factor == 5.0  # the hook started the campaign

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="surges"):
        Platform(surges="sometimes")
