"""Every fault kind injected live over the control API into an in-process platform, over real HTTP: the
effect shows in the expected series and not in an unrelated one, and the ground truth (with the expected
impact) is in the JSONL file and on ``GET /faults``.

Faults on unrelated targets run concurrently (phase 1, then phase 2 for the ones that would overlap), so
the whole file takes 25 s on a quiet machine and about 40 s at a load average of 10."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sample_platform import Platform
from sample_platform.fault_kinds import impact_node
from sample_platform.faults import FAULT_KINDS, FaultEffects, FaultInjector, valid_targets
from sample_platform.graph import CDN_EDGES, NODES
from sample_platform.params import PARAMS
from sample_platform.traffic import LiveAudience
from topology.graph import REFERENCE_PLATFORM, Topology

pytestmark = pytest.mark.integration

Metrics = dict[tuple[str, frozenset], float]


async def scrape(c: httpx.AsyncClient, url: str) -> Metrics:
    r = await c.get(url + "/metrics")
    assert r.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def value(m: Metrics, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in m.items() if n == name and set(labels.items()) <= ls)


def mean(m: Metrics, histogram: str, **labels: str) -> float:
    return value(m, histogram + "_sum", **labels) / value(m, histogram + "_count", **labels)


async def eventually(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


class Live:
    """The platform under test with an HTTP client, injecting through the control API."""

    def __init__(self, p: Platform, c: httpx.AsyncClient) -> None:
        self.p, self.c = p, c

    async def inject(self, kind: str, target: str, seconds: float, **params: float) -> dict:
        r = await self.c.post(self.p.control_url + "/faults", json={
            "kind": kind, "target": target, "duration_seconds": seconds, "params": params})
        assert r.status_code == 201, r.text
        return r.json()

    async def metrics(self, node: str) -> Metrics:
        return await scrape(self.c, self.p.urls[node])

    async def get(self, node: str, path: str, **kw) -> httpx.Response:
        return await self.c.get(self.p.urls[node] + path, **kw)

    async def post(self, node: str, path: str, body: dict) -> httpx.Response:
        return await self.c.post(self.p.urls[node] + path, json=body)


# -- phase 1 ----------------------------------------------------------------------------------------------

async def latency_on_objstore(t: Live) -> None:
    await t.inject("latency", "objstore", 5, latency_seconds=0.3)
    codes = await asyncio.gather(*(t.c.put(t.p.urls["objstore"] + f"/objects/b/k{i}", json={"bytes": 10})
                                   for i in range(3)),
                                 *(t.post("redis", "/command", {"command": "get", "key": "x"}) for _ in range(3)))
    assert all(r.status_code in (200, 201) for r in codes)
    slow = mean(await t.metrics("objstore"), "http_request_duration_seconds")
    assert slow >= 0.3 and slow - mean(await t.metrics("redis"), "http_request_duration_seconds") >= 0.25


async def errors_on_inventory(t: Live) -> None:
    await t.inject("errors", "inventory", 5, error_ratio=1.0)
    for uid in range(4):
        assert (await t.post("inventory", "/reservations", {"gift": "rose", "quantity": 1})).status_code == 500
        assert (await t.get("user", f"/users/{uid}")).status_code == 200
    assert value(await t.metrics("inventory"), "http_requests_total", code="500") == 4
    assert value(await t.metrics("user"), "http_requests_total", code="500") == 0


async def cpu_saturation_on_payment(t: Live) -> None:
    payment, media = t.p.nodes["payment"], t.p.nodes["media"]
    await t.inject("cpu_saturation", "payment", 5, usable_slots=1, hold_seconds=0.3)
    assert payment.pool.reserved == payment.pool.size - 1  # applied at injection, not at the next reconcile
    busy = {n: value(await t.metrics(n), "worker_busy_seconds_total") for n in ("payment", "media")}
    t0 = time.monotonic()
    replies = await asyncio.gather(*(t.post("payment", "/charges", {"user_id": u, "amount": 1}) for u in range(4)))
    took = time.monotonic() - t0
    assert {r.status_code for r in replies} <= {201, 402} and took >= 4 * 0.3  # one slot: they queued
    ratio = {n: (value(await t.metrics(n), "worker_busy_seconds_total") - busy[n]) / took / t.p.nodes[n].pool.size
             for n in ("payment", "media")}
    assert ratio["payment"] > 0.9 and ratio["media"] < 0.1, ratio
    assert media.pool.reserved == 0


async def memory_leak_on_recommend(t: Live) -> None:
    assert (await t.get("recommend", "/recommendations/1")).status_code == 200
    before = await t.metrics("recommend")
    rss0 = value(before, "process_resident_memory_bytes")
    t0 = time.monotonic()
    await t.inject("memory_leak", "recommend", 8, leak_bytes_per_second=200e6, gc_pause_seconds_per_gib=1.0)
    await asyncio.sleep(2.5)
    assert (await t.get("recommend", "/recommendations/1")).status_code == 200
    after = await t.metrics("recommend")
    grown = value(after, "process_resident_memory_bytes") - rss0
    assert 200e6 * 2.5 <= grown <= 200e6 * (time.monotonic() - t0), grown  # 200 MB/s, gradually
    slow = value(after, "http_request_duration_seconds_sum") - value(before, "http_request_duration_seconds_sum")
    assert slow >= 0.4  # a GC pause of about 1 s per GiB leaked
    assert value(await t.metrics("feed"), "process_resident_memory_bytes") == PARAMS["feed"].memory_bytes


async def bad_deploy_on_notification(t: Live) -> None:
    await t.inject("bad_deploy", "notification", 6, rollout_ratio=0.5, error_ratio=1.0)
    build = await t.metrics("notification")
    assert {dict(ls)["version"] for (n, ls) in build if n == "platform_build_info"} == {"1.0.0", "1.0.1"}
    for uid in range(40):
        assert (await t.get("notification", f"/badge/{uid}")).status_code in (200, 500)
    m = await t.metrics("notification")
    assert value(m, "http_requests_total", version="1.0.1", code="500") >= 8
    assert value(m, "http_requests_total", version="1.0.1", code="200") == 0
    assert value(m, "http_requests_total", version="1.0.0", code="200") >= 8
    assert value(m, "http_requests_total", version="1.0.0", code="500") == 0


async def partition_live_from_user(t: Live) -> None:
    await t.inject("network_partition", "live~user", 5)
    joins = await asyncio.gather(*(t.post("live", "/rooms/7/join", {"user_id": u}) for u in (1, 2)))
    assert [r.status_code for r in joins] == [504, 504]
    assert (await t.get("feed", "/feed/1")).status_code == 200
    live, feed = await t.metrics("live"), await t.metrics("feed")
    assert value(live, "http_client_requests_total", downstream="user", code="timeout") == 2
    assert value(feed, "http_client_requests_total", downstream="user", code="200") >= 1
    assert value(feed, "http_client_requests_total", downstream="user", code="timeout") == 0


async def slow_queries_on_giftdb_1(t: Live) -> None:
    await t.inject("slow_queries", "giftdb-1", 5, slowdown=50)
    query = {"operation": "select", "table": "orders", "key": "k"}
    replies = await asyncio.gather(*(t.post(db, "/query", query) for db in ("giftdb-0", "giftdb-1") for _ in range(5)))
    assert all(r.status_code == 200 for r in replies)
    slow, healthy = await t.metrics("giftdb-1"), await t.metrics("giftdb-0")
    slow_s, healthy_s = (mean(m, "pg_query_duration_seconds", operation="select") for m in (slow, healthy))
    assert slow_s > 0.05 and slow_s > 3 * healthy_s, (slow_s, healthy_s)  # median 2 ms x 50


async def consumer_lag_on_search(t: Live) -> None:
    await t.inject("consumer_lag", "search", 10, max_messages_per_second=0.2)
    posts = [{"value": {"post_id": f"9-{i}", "text": "cat"}} for i in range(20)]
    for topic, messages in (("posts", posts), ("messages", [{"value": {"text": "hi"}}] * 20)):
        assert (await t.post("kafka", f"/produce/{topic}", {"messages": messages})).status_code == 200

    async def archived() -> bool:
        return value(await t.metrics("kafka"), "kafka_consumergroup_lag", consumergroup="message-archiver") == 0

    assert await eventually(archived, 15)  # the unrelated consumer group keeps up
    await asyncio.sleep(2.0)
    assert value(await t.metrics("kafka"), "kafka_consumergroup_lag", consumergroup="search-indexer") >= 17


async def cdn_b_degrades(t: Live) -> None:
    p = t.p
    audience = LiveAudience(p.urls["gateway"], p.urls["origin"], {e: p.urls[e] for e in CDN_EDGES}, seed=7,
                            play_ratio=1.0)
    audience.start()
    try:

        async def room_live() -> bool:  # a player of a room that is not live yet gives up at once
            return value(await t.metrics("origin"), "origin_rooms_live") >= 1

        assert await eventually(room_live, 10)
        await t.inject("cdn_degradation", "cdn-b", 30)
        for uid, cdn in enumerate(["cdn-a", "cdn-b"] * 4):
            audience.on_join(uid, 1, cdn)

        async def both_reported() -> bool:
            m = await t.metrics("live")
            return all(value(m, "live_first_frame_seconds_count", cdn=cdn) >= 2 for cdn in ("cdn-a", "cdn-b"))

        assert await eventually(both_reported, 28)
        m = await t.metrics("live")
        stall = {cdn: value(m, "live_stall_seconds_total", cdn=cdn) / value(m, "live_playback_seconds_total", cdn=cdn)
                 for cdn in ("cdn-a", "cdn-b")}
        first_frame = {cdn: mean(m, "live_first_frame_seconds", cdn=cdn) for cdn in ("cdn-a", "cdn-b")}
        assert stall["cdn-b"] > 0.2 and stall["cdn-a"] < stall["cdn-b"] / 5, stall
        assert first_frame["cdn-b"] > 3.0 and first_frame["cdn-a"] < first_frame["cdn-b"] / 3, first_frame
    finally:
        await audience.stop()


# -- phase 2 ----------------------------------------------------------------------------------------------

async def cache_outages(t: Live) -> None:
    async def profiles(first: int) -> dict[str, float]:
        before = {n: await t.metrics(n) for n in ("user", "redis", "postgres")}
        for uid in range(first, first + 100):
            assert (await t.get("user", f"/users/{uid}")).status_code == 200
        after = {n: await t.metrics(n) for n in ("user", "redis", "postgres")}

        def delta(node: str, name: str, **labels: str) -> float:
            return value(after[node], name, **labels) - value(before[node], name, **labels)

        return {"l1_hits": delta("user", "user_cache_requests_total", tier="l1", result="hit"),
                "l2_hits": delta("user", "user_cache_requests_total", tier="l2", result="hit"),
                "l2_misses": delta("user", "user_cache_requests_total", tier="l2", result="miss"),
                "redis_hits": delta("redis", "redis_keyspace_hits_total"),
                "redis_misses": delta("redis", "redis_keyspace_misses_total"),
                "selects": delta("postgres", "pg_query_duration_seconds_count", operation="select")}

    healthy = await profiles(1000)
    assert healthy["l1_hits"] > 30 and healthy["selects"] < 25
    await t.inject("cache_outage", "user", 3)
    l1_out = await profiles(2000)
    assert l1_out["l1_hits"] == 0 and l1_out["l2_hits"] + l1_out["l2_misses"] == 100
    assert l1_out["redis_hits"] / (l1_out["redis_hits"] + l1_out["redis_misses"]) > 0.7  # redis itself is fine
    await asyncio.sleep(3.0)
    await t.inject("cache_outage", "redis", 3)
    l2_out = await profiles(3000)
    assert l2_out["redis_hits"] == 0 and l2_out["l2_hits"] == 0
    assert l2_out["selects"] == l2_out["l2_misses"] > 3 * healthy["selects"]  # the load shifts to postgres
    assert l2_out["l1_hits"] > 30  # the user service's own cache is fine


async def pool_exhaustion_on_giftdb_0(t: Live) -> None:
    await t.inject("connection_pool_exhaustion", "giftdb-0", 4)
    pg = await t.metrics("giftdb-0")
    assert value(pg, "pg_connections_active") == value(pg, "pg_connections_max") == 16
    users = {"giftdb-0": (10, 12, 14, 16), "giftdb-1": (11, 13, 15, 17)}  # user_id % 2 picks the shard
    codes = {shard: [r.status_code for r in await asyncio.gather(*(
        t.post("gift", "/orders", {"user_id": u, "room_id": 1, "gift": "rose", "amount": 1}) for u in uids))]
        for shard, uids in users.items()}
    # 402/409: payment declines and out-of-stock happen by design, before the shard is reached
    assert set(codes["giftdb-0"]) <= {502, 402, 409} and codes["giftdb-0"].count(502) >= 3, codes
    assert set(codes["giftdb-1"]) <= {201, 402, 409} and codes["giftdb-1"].count(201) >= 3, codes
    gift = await t.metrics("gift")
    assert value(gift, "http_client_requests_total", downstream="giftdb-0", code="503") \
        == codes["giftdb-0"].count(502)
    assert value(gift, "http_client_requests_total", downstream="giftdb-1", code="503") == 0
    assert value(gift, "gift_orders_total", shard="giftdb-0", status="failed") == 4


async def timeout_cascade_from_objstore(t: Live) -> None:
    await t.inject("timeout_cascade", "objstore", 6)  # 3 s slower; callers retry twice after a 1 s timeout
    uploads = await asyncio.gather(*(t.c.post(t.p.urls["gateway"] + "/api/media", json={"user_id": u, "bytes": 1e5})
                                     for u in (1, 2)))
    assert [r.status_code for r in uploads] == [504, 504]  # the gateway's own 2 s timeout expired

    async def retried() -> bool:
        m = await t.metrics("media")
        return value(m, "http_client_requests_total", downstream="objstore", code="timeout") == 6

    assert await eventually(retried, 10)  # 3 attempts each: 3 s > the gateway's timeout of media
    gw = await t.metrics("gateway")
    assert value(gw, "http_client_requests_total", downstream="media", code="timeout") == 2
    assert value(gw, "http_client_requests_total", code="timeout") == 2  # no other route timed out


def test_every_fault_kind_live_with_ground_truth(tmp_path):
    log = tmp_path / "truth.jsonl"
    topology = Topology.load(REFERENCE_PLATFORM)

    async def scenario():
        async with Platform(rate=0, seed=7, faults_log=log) as p, httpx.AsyncClient(timeout=20) as c:
            t = Live(p, c)
            await asyncio.gather(latency_on_objstore(t), errors_on_inventory(t), cpu_saturation_on_payment(t),
                                 memory_leak_on_recommend(t), bad_deploy_on_notification(t),
                                 partition_live_from_user(t), slow_queries_on_giftdb_1(t), consumer_lag_on_search(t),
                                 cdn_b_degrades(t))
            await pool_exhaustion_on_giftdb_0(t)  # its orders read profiles: not during the cache outages
            await asyncio.gather(cache_outages(t), timeout_cascade_from_objstore(t))
            listed = (await c.get(p.control_url + "/faults")).json()["faults"]
            kinds = (await c.get(p.control_url + "/faults/kinds")).json()
            assert kinds["kinds"] == {k: valid_targets(k) for k in FAULT_KINDS}
            assert kinds["params"] == {k: v.defaults() for k, v in FAULT_KINDS.items()}
            await asyncio.sleep(max(0.0, max(f.end for f in p.injector.active()) - time.time()) + 0.5
                                if p.injector.active() else 0.5)
            # every fault has ended: every node runs on its own parameters and slots again
            for name in NODES:
                node = p.nodes[name]
                assert node.params is node.base_params and node.pool.reserved == 0, name
            assert (await scrape(c, p.urls["notification"])).get(
                ("platform_build_info", frozenset({("version", "1.0.1")}))) is None
            return listed

    listed = asyncio.run(scenario())
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == listed
    assert {r["kind"] for r in lines} == set(FAULT_KINDS)
    for r in lines:
        assert r["fault"] is True and r["end"] > r["start"]
        assert r["expected_impact"] == topology.impacted_businesses(impact_node(r["kind"], r["target"])), r
        assert r["expected_impact"], r
    impact = {(r["kind"], r["target"]): r["expected_impact"] for r in lines}
    assert impact["cdn_degradation", "cdn-b"] == ["live_streaming"]
    assert impact["network_partition", "live~user"] == ["live_streaming"]
    assert impact["slow_queries", "giftdb-1"] == ["send_gift"]
    assert impact["consumer_lag", "search"] == ["search_content"]


T0 = 1_795_428_000.0


def test_overrides_apply_while_active_and_compose():
    """Parameter overrides, by the injector's clock: applied oldest first, gone when the fault ends."""
    now = [T0]
    inj = FaultInjector(clock=lambda: now[0])
    base = PARAMS["feed"]
    assert inj.params_for("feed", base) is base
    inj.inject("network_partition", "feed~user", 10, {"drop_ratio": 0.5})
    inj.inject("network_partition", "feed~post", 20)
    inj.inject("timeout_cascade", "recommend", 30, {"retries": 1})
    p = inj.params_for("feed", base)
    assert dict(p.partitioned) == {"user": 0.5, "post": 1.0} and dict(p.timeout_retries) == {"recommend": 1}
    assert inj.params_for("user", PARAMS["user"]) is PARAMS["user"]  # a partition acts on the caller only
    assert inj.effects("recommend").latency_seconds == 3.0 and inj.effects("feed").latency_seconds == 0
    inj.inject("memory_leak", "feed", 40, {"leak_bytes_per_second": 1e6})
    now[0] = T0 + 10
    p = inj.params_for("feed", base)
    assert dict(p.partitioned) == {"post": 1.0}
    assert p.resident_memory_bytes(now[0]) == pytest.approx(base.memory_bytes + 10e6, abs=1e3)
    now[0] = T0 + 35
    p = inj.params_for("feed", base)
    assert p.partitioned == {} and p.timeout_retries == {}
    assert p == replace(base, leak_bytes_per_second=1e6, leak_started_at=T0, gc_pause_seconds_per_gib=0.5)
    assert p.gc_pause_seconds(now[0]) == pytest.approx(0.5 * 35e6 / 2 ** 30)
    now[0] = T0 + 40
    assert inj.params_for("feed", base) is base


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
def test_every_kind_applies_to_every_valid_target_with_its_defaults(kind):
    """What ``opswatch demo --fault KIND:TARGET`` does: inject with the defaults; each affected node's
    parameters take the overrides (a field a node lacks would raise here), and only while active."""
    now = [T0]
    inj = FaultInjector(clock=lambda: now[0])
    spec = FAULT_KINDS[kind]
    for target in valid_targets(kind):
        now[0] += 100
        rec = inj.inject(kind, target, 10)
        assert rec["params"] == spec.defaults() and rec["expected_impact"], rec
        for node in spec.nodes(target):
            assert inj.params_for(node, PARAMS[node]) != PARAMS[node], (kind, target, node)
        effects = inj.effects(target) if target in NODES else None
        assert spec.nodes(target) or effects != FaultEffects(), (kind, target)
    now[0] += 100
    assert all(inj.params_for(n, PARAMS[n]) is PARAMS[n] for n in NODES)


@pytest.mark.parametrize("kind,target,needles", [
    ("slow_queries", "redis", ["redis", "postgres", "giftdb-0"]),
    ("cdn_degradation", "origin", ["origin", "cdn-a"]),
    ("network_partition", "user~feed", ["user~feed", "feed~user"]),
    ("network_partition", "live-user", ["live-user", "live~user"]),
    ("bad_deploy", "cdn-a", ["cdn-a", "gateway"]),
    ("timeout_cascade", "gateway", ["gateway", "postgres"]),
])
def test_targets_outside_a_kind_are_refused_by_name(kind, target, needles):
    inj = FaultInjector(clock=lambda: T0)
    with pytest.raises(ValueError) as ei:
        inj.inject(kind, target, 10)
    for needle in needles:
        assert needle in str(ei.value)
    assert inj.records() == []


def test_opswatch_demo_lists_every_kind_with_targets_params_and_description(capsys):
    from opswatch.cli import main

    repo = Path(__file__).resolve().parents[2]
    listed = subprocess.run([sys.executable, "-m", "opswatch", "demo", "--list-faults", "--json"], cwd=repo,
                            capture_output=True, text=True, timeout=60, check=True)
    doc = json.loads(listed.stdout)
    assert doc["kinds"] == {k: valid_targets(k) for k in FAULT_KINDS}
    assert doc["descriptions"] == {k: v.description for k, v in FAULT_KINDS.items()}
    assert doc["params"]["network_partition"] == {"drop_ratio": 1.0}
    assert "live~user" in doc["kinds"]["network_partition"]
    assert main(["demo", "--list-faults"]) == 0
    text = capsys.readouterr().out
    for name, kind in FAULT_KINDS.items():
        block = text[text.index(name + "\n"):]
        assert block.startswith(f"{name}\n    {kind.description}\n    params: "), block[:300]
        assert "    targets: " + ", ".join(valid_targets(name)) in block
