"""In-process tests of the Platform API: routing, metrics, fault effects on real HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sample_platform import Platform
from sample_platform.graph import NODES
from sample_platform.traffic import MIX

pytestmark = pytest.mark.integration


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


def test_platform_api_routes_metrics_and_faults(tmp_path):
    async def scenario():
        async with Platform(rate=0, seed=3, faults_log=tmp_path / "faults.jsonl") as p:
            assert set(p.urls) == set(NODES) and p.control_url.startswith("http://127.0.0.1:")
            assert p.traffic is None
            info = p.ports_info()
            assert info["nodes"] == p.urls and info["control"] == p.control_url and info["pid"] > 0
            gw = p.urls["gateway"]
            async with httpx.AsyncClient(timeout=10) as c:
                # every public route answers 2xx when healthy
                for path, params in [("/api/feed", {"user_id": 1}), ("/api/profile", {"user_id": 2})]:
                    r = await c.get(gw + path, params=params)
                    assert r.status_code == 200, r.text
                for path, body in [("/api/post", {"user_id": 3, "text": "x"}),
                                   ("/api/message", {"user_id": 3, "to_user": 4, "text": "x"}),
                                   ("/api/live/join", {"user_id": 5, "room_id": 7}),
                                   ("/api/gift", {"user_id": 6, "room_id": 7, "gift": "rose", "amount": 3})]:
                    r = await c.post(gw + path, json=body)
                    assert r.status_code in (200, 201), (path, r.text)
                r = await c.get(gw + "/api/profile")
                assert r.status_code == 400 and "user_id" in r.json()["error"]

                g = await metrics(c, gw)
                assert value(g, "http_requests_total", route="/api/feed", code="200") == 1
                assert not any(dict(ls).get("route") == "/metrics" for (n, ls) in g)
                assert value(g, "http_client_requests_total", downstream="gift", code="201") == 1
                assert value(g, "platform_online_users") == 5  # users 1, 2, 3, 5, 6
                assert value(g, "worker_pool_size") == 64
                live = await metrics(c, p.urls["live"])
                assert value(live, "live_viewers") == 1
                gift = await metrics(c, p.urls["gift"])
                assert value(gift, "gift_orders_total", status="ok") == 1
                kafka = await metrics(c, p.urls["kafka"])
                assert value(kafka, "kafka_messages_produced_total") == 3

                # errors on user via the control API: the gateway answers 502 on routes needing user
                r = await c.post(p.control_url + "/faults", json={
                    "kind": "errors", "target": "user", "duration_seconds": 2, "params": {"error_ratio": 1.0}})
                assert r.status_code == 201, r.text
                r = await c.get(gw + "/api/profile", params={"user_id": 9})
                assert r.status_code == 502 and "user" in r.json()["error"]
                r = await c.post(gw + "/api/gift", json={"user_id": 6, "room_id": 7, "amount": 1})
                assert r.status_code == 502
                gift = await metrics(c, p.urls["gift"])
                assert value(gift, "gift_orders_total", status="failed") == 1
                assert value(gift, "http_client_requests_total", downstream="user", code="500") == 1
                user = await metrics(c, p.urls["user"])
                assert value(user, "http_requests_total", route="/users/{user_id}", code="500") == 2

                # a required downstream slower than the caller's timeout: 504 at the caller, 502 above
                p.injector.inject("latency", "postgres", 3, {"latency_seconds": 1.3})
                r = await c.post(gw + "/api/post", json={"user_id": 3, "text": "slow"})
                assert r.status_code == 502
                post = await metrics(c, p.urls["post"])
                assert value(post, "http_requests_total", route="/posts", method="POST", code="504") == 1
                assert value(post, "http_client_requests_total", downstream="postgres", code="timeout") == 1

                # latency on redis shows in its own command histogram; a failing redis is a cache miss
                p.injector.inject("latency", "redis", 2, {"latency_seconds": 0.3})
                t0 = time.perf_counter()
                r = await c.post(p.urls["redis"] + "/command", json={"command": "get", "key": "k"})
                assert r.status_code == 200 and time.perf_counter() - t0 >= 0.3
                redis = await metrics(c, p.urls["redis"])
                assert value(redis, "redis_command_duration_seconds_sum", command="get") >= 0.3

                # saturation: stuck work holds all but usable_slots, utilization goes to ~1
                p.injector.inject("saturation", "postgres", 1.0, {"usable_slots": 1, "hold_seconds": 0.0})
                await asyncio.sleep(0.5)
                pg = await metrics(c, p.urls["postgres"])
                assert value(pg, "pg_connections_active") == 31 and value(pg, "pg_connections_max") == 32
                busy0 = value(pg, "worker_busy_seconds_total")
                await asyncio.sleep(0.3)
                pg = await metrics(c, p.urls["postgres"])
                assert (value(pg, "worker_busy_seconds_total") - busy0) / 0.3 / 32 > 0.9
                await asyncio.sleep(0.9)  # expired; the reconciler frees the slots
                assert p.nodes["postgres"].pool.reserved == 0

            lines = (tmp_path / "faults.jsonl").read_text().splitlines()
            assert [json.loads(x)["kind"] for x in lines] == ["errors", "latency", "latency", "saturation"]

    asyncio.run(scenario())


def test_traffic_generator_mix_and_clean_stop():
    assert sum(share for share, _, _ in MIX.values()) == pytest.approx(1.0)

    async def scenario():
        async with Platform(rate=40, seed=5) as p:
            await asyncio.sleep(1.5)
            stats = dict(p.traffic.stats)
        assert stats["sent"] > 20 and stats["dropped"] == 0
        ok = sum(n for code, n in stats["by_code"].items() if code in ("200", "201"))
        assert ok >= 0.9 * stats["completed"], stats

    asyncio.run(scenario())
