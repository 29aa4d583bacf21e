"""Integration test: the real platform as a subprocess, under its own traffic, scraped, faulted and surged
over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sample_platform.faults import FAULT_KINDS, valid_targets
from sample_platform.graph import CALL_GRAPH, CDN_EDGES, GIFT_SHARDS, NODES, SERVICES
from sample_platform.surges import SURGE_KINDS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SIM_START = "2026-11-21T19:00:00Z"  # a Saturday evening
TIME_SCALE = 60
COMMON = ["http_requests_total", "http_request_duration_seconds_bucket", "http_request_duration_seconds_count",
          "http_requests_in_flight", "worker_pool_size", "worker_busy_seconds_total", "platform_build_info",
          "process_start_time_seconds"]
DB = ["pg_query_duration_seconds_bucket", "pg_connections_active", "pg_connections_max", "pg_rows_written_total"]
EXTRAS = {
    "gateway": ["platform_online_users", "gateway_rate_limited_total", "gateway_rate_limit_rps"],
    "user": ["user_cache_requests_total"],
    "feed": ["feed_items_served_total", "feed_degraded_total"],
    "recommend": ["recommend_scorer_duration_seconds_bucket", "recommend_candidates_scored_total"],
    "post": ["posts_created_total", "post_likes_total", "post_comments_total"],
    "media": ["media_uploads_total", "media_transcode_jobs_total", "media_transcode_duration_seconds_bucket"],
    "search": ["search_queries_total", "search_index_documents", "search_index_terms"],
    "message": ["im_connections_online", "im_messages_sent_total", "im_messages_delivered_total",
                "im_message_delivery_seconds_bucket", "im_events_total"],
    "notification": ["notifications_sent_total", "notification_push_duration_seconds_bucket",
                     "notification_campaign_active"],
    "live": ["live_viewers", "live_joins_total", "live_playback_seconds_total", "live_stall_seconds_total",
             "live_stalls_total", "live_delivered_bits_total", "live_first_frame_seconds_bucket"],
    "origin": ["origin_rooms_live", "origin_ingested_segments_total", "origin_ingested_bytes_total"],
    **{edge: ["cdn_cache_requests_total", "cdn_egress_bytes_total"] for edge in CDN_EDGES},
    "gift": ["gift_orders_total", "gift_order_duration_seconds_bucket"],
    "payment": ["payment_charges_total", "payment_settled_gifts_total"],
    "inventory": ["inventory_reservations_total"],
    "postgres": DB, **{shard: DB for shard in GIFT_SHARDS},
    "redis": ["redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_commands_total",
              "redis_commands_duration_seconds_total", "redis_db_keys"],
    "kafka": ["kafka_messages_produced_total", "kafka_messages_consumed_total", "kafka_consumergroup_lag",
              "kafka_topic_partition_current_offset"],
    "objstore": ["objstore_objects", "objstore_stored_bytes", "objstore_transferred_bytes_total"],
}
#: One counter per business (node, metric, labels) that must grow under the platform's own traffic.
BUSINESS_COUNTERS = [
    ("feed", "feed_items_served_total", {"source": "following"}),
    ("feed", "feed_items_served_total", {"source": "recommended"}),
    ("recommend", "recommend_candidates_scored_total", {}),
    ("user", "user_cache_requests_total", {"tier": "l1", "result": "hit"}),
    ("user", "user_cache_requests_total", {"tier": "l2", "result": "hit"}),
    ("post", "post_likes_total", {}),
    ("post", "post_comments_total", {}),
    ("media", "media_uploads_total", {}),
    ("media", "media_transcode_jobs_total", {"status": "ok"}),
    ("search", "search_queries_total", {}),
    ("message", "im_messages_sent_total", {}),
    ("message", "im_messages_delivered_total", {"via": "socket"}),
    ("message", "im_events_total", {"type": "typing"}),
    ("message", "im_events_total", {"type": "read"}),
    ("notification", "notifications_sent_total", {"status": "delivered"}),
    ("live", "live_joins_total", {}),
    ("live", "live_playback_seconds_total", {}),
    ("live", "live_delivered_bits_total", {}),
    ("origin", "origin_ingested_segments_total", {}),
    *[(edge, "cdn_egress_bytes_total", {}) for edge in CDN_EDGES],
    ("gift", "gift_orders_total", {"status": "ok"}),
    ("payment", "payment_charges_total", {"status": "ok"}),
    ("payment", "payment_settled_gifts_total", {}),
    ("inventory", "inventory_reservations_total", {"status": "ok"}),
    *[(shard, "pg_rows_written_total", {}) for shard in GIFT_SHARDS],
    ("postgres", "pg_rows_written_total", {}),
    ("kafka", "kafka_messages_consumed_total", {}),
    ("objstore", "objstore_transferred_bytes_total", {"direction": "in"}),
    ("redis", "redis_keyspace_hits_total", {}),
]


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Running:
    def __init__(self, proc: subprocess.Popen, info: dict, faults_log: Path, log: Path) -> None:
        self.proc, self.info, self.faults_log, self.log = proc, info, faults_log, log
        self.http = httpx.Client(timeout=5)

    def scrape(self, node: str) -> dict[tuple[str, frozenset], float]:
        r = self.http.get(self.info["nodes"][node] + "/metrics")
        assert r.status_code == 200
        out = {}
        for fam in text_string_to_metric_families(r.text):
            for s in fam.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def value(self, node: str, name: str, **labels) -> float:
        return total(self.scrape(node), name, **labels)

    def control(self, method: str, path: str, body=None) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return self.http.request(method, self.info["control"] + path, content=body,
                                     headers={"content-type": "application/json"})
        return self.http.request(method, self.info["control"] + path, json=body)


def total(m, name: str, **labels) -> float:
    return sum(v for (n, ls), v in m.items() if n == name and set(labels.items()) <= ls)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample_platform")
    ports, faults_log, log = tmp / "ports.json", tmp / "faults.jsonl", tmp / "platform.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sample_platform", "run", "--ports-file", str(ports),
             "--faults-log", str(faults_log), "--rate", "15", "--seed", "7", "--time-scale", str(TIME_SCALE),
             "--sim-start", SIM_START],
            cwd=REPO, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready():
            if proc.poll() is not None:
                pytest.fail(f"platform exited with {proc.returncode}:\n{log.read_text()}")
            return ports.exists()

        wait_for(ready, 30, 0.05, "the ports file")
        info = json.loads(ports.read_text())
        yield Running(proc, info, faults_log, log)
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(10)


def test_ports_file(platform):
    info = platform.info
    assert set(info) == {"control", "nodes", "pid"}
    assert info["pid"] == platform.proc.pid
    assert set(info["nodes"]) == set(NODES)
    for url in [info["control"], *info["nodes"].values()]:
        assert url.startswith("http://127.0.0.1:")
    assert platform.http.get(info["control"] + "/-/healthy").status_code == 200


def test_simulated_time_runs_at_the_time_scale(platform):
    start = datetime.fromisoformat(SIM_START).timestamp()
    s1 = platform.control("GET", "/traffic").json()
    t1 = time.monotonic()
    time.sleep(2)
    s2 = platform.control("GET", "/traffic").json()
    elapsed = time.monotonic() - t1
    assert s1["time_scale"] == TIME_SCALE
    assert s1["sim_time"] >= start
    assert (s2["sim_time"] - s1["sim_time"]) == pytest.approx(TIME_SCALE * elapsed, rel=0.2)
    hour = datetime.fromtimestamp(s2["sim_time"], timezone.utc).hour
    assert 19 <= hour <= 21 and s2["multiplier"] > 1.1  # a Saturday evening is busier than average


def test_every_node_exposes_golden_signals_and_its_business_metrics(platform):
    def all_nodes_busy():
        return all(platform.value(n, "http_requests_total") > 0 for n in NODES)

    # 60 s: a CDN edge serves only the players assigned to it, a fifth of the live joins, drawn at random
    wait_for(all_nodes_busy, 60, 0.5, "traffic on every node")
    for node in NODES:
        m = platform.scrape(node)
        names = {n for n, _ in m}
        for name in COMMON + EXTRAS[node]:
            assert name in names, f"{node} lacks {name}"
        assert not any(dict(ls).get("route") == "/metrics" for _, ls in m), f"{node} counts /metrics"
        assert total(m, "worker_pool_size") >= 16

    missing: dict[str, set[str]] = {}

    def downstream_calls_seen():
        missing.clear()
        for caller in SERVICES:
            m = platform.scrape(caller)
            seen = {dict(ls)["downstream"] for n, ls in m if n == "http_client_requests_total"}
            if seen != set(CALL_GRAPH[caller]):
                missing[caller] = set(CALL_GRAPH[caller]) - seen
        return not missing

    wait_for(downstream_calls_seen, 60, 1.0, f"client-side counters for every call-graph edge (missing {missing})")


def test_every_business_moves_under_traffic(platform):
    def read():
        cache: dict[str, dict] = {}
        out = []
        for node, name, labels in BUSINESS_COUNTERS:
            if node not in cache:
                cache[node] = platform.scrape(node)
            out.append(total(cache[node], name, **labels))
        return out

    before = read()
    stuck: list[tuple] = []

    def all_moved():
        stuck[:] = [c for c, b, a in zip(BUSINESS_COUNTERS, before, read()) if not a > b]
        return not stuck

    wait_for(all_moved, 40, 2.0, f"every business counter to grow (stuck: {stuck})")
    m = platform.scrape("message")
    assert total(m, "im_connections_online") >= 2
    assert platform.value("live", "live_viewers") > 0 and platform.value("origin", "origin_rooms_live") >= 2
    stats = platform.control("GET", "/traffic").json()
    assert stats["sent"] > 0 and stats["dropped"] == 0
    assert stats["im"]["acks"] > 0 and stats["live"]["beacons"] > 0


def test_errors_on_gift(platform):
    gift500 = platform.value("gift", "http_requests_total", code="500")
    gw502 = platform.value("gateway", "http_requests_total", route="/api/gift", code="502")
    r = platform.control("POST", "/faults", {"kind": "errors", "target": "gift", "duration_seconds": 10,
                                             "params": {"error_ratio": 1.0}})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["kind"] == "errors" and rec["target"] == "gift" and rec["params"] == {"error_ratio": 1.0}
    assert rec["fault"] is True

    def errors_seen():
        return (platform.value("gift", "http_requests_total", code="500") > gift500
                and platform.value("gateway", "http_requests_total", route="/api/gift", code="502") > gw502)

    wait_for(errors_seen, 12, 0.5, "500s on gift and 502s on the gateway's /api/gift route")
    assert platform.value("gateway", "http_client_requests_total", downstream="gift", code="500") > 0
    assert platform.value("gift", "gift_orders_total", status="failed") > 0


def test_latency_on_postgres(platform):
    def pg():
        m = platform.scrape("postgres")
        return total(m, "pg_query_duration_seconds_sum"), total(m, "pg_query_duration_seconds_count")

    s0, c0 = pg()
    time.sleep(2)
    s1, c1 = pg()
    assert c1 > c0
    baseline = (s1 - s0) / (c1 - c0)
    assert baseline < 0.05

    r = platform.control("POST", "/faults", {"kind": "latency", "target": "postgres", "duration_seconds": 10})
    assert r.status_code == 201, r.text
    assert r.json()["params"] == {"latency_seconds": 0.25}
    time.sleep(0.5)
    s2, c2 = pg()

    def enough():
        return pg()[1] - c2 >= 5

    wait_for(enough, 8, 0.5, "postgres queries during the latency fault")
    s3, c3 = pg()
    during = (s3 - s2) / (c3 - c2)
    assert during >= 0.2, (baseline, during)
    assert platform.value("postgres", "http_request_duration_seconds_sum") > 0


def test_celebrity_surge_multiplies_joins_and_is_recorded_as_not_a_fault(platform):
    def joins():
        return platform.value("live", "live_joins_total")

    j0, t0 = joins(), time.monotonic()
    time.sleep(6)
    calm = (joins() - j0) / (time.monotonic() - t0)
    r = platform.control("POST", "/surges", {"kind": "celebrity_live", "duration_seconds": 12,
                                             "params": {"factor": 3, "room_id": 3}})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["kind"] == "surge:celebrity_live" and rec["fault"] is False and rec["target"] == "live"
    status = platform.control("GET", "/traffic").json()
    assert [s["id"] for s in status["surges"]] == [rec["id"]]
    j1, t1 = joins(), time.monotonic()
    time.sleep(8)
    surging = (joins() - j1) / (time.monotonic() - t1)
    assert surging > 2 * calm, (calm, surging)


@pytest.mark.parametrize("path,body,needles", [
    ("/faults", {"kind": "meltdown", "target": "postgres", "duration_seconds": 5},
     ["meltdown", "latency", "cpu_saturation"]),
    ("/faults", {"kind": "latency", "target": "mysql", "duration_seconds": 5}, ["mysql", "postgres", "gateway"]),
    ("/faults", {"kind": "latency", "target": "redis", "duration_seconds": -3}, ["duration_seconds"]),
    ("/faults", {"kind": "latency", "target": "redis"}, ["duration_seconds"]),
    ("/faults", {"kind": "errors", "target": "redis", "duration_seconds": 5, "params": {"error_ratio": 2}},
     ["error_ratio"]),
    ("/faults", b"{not json", ["JSON"]),
    ("/faults", b"[1, 2]", ["object"]),
    ("/surges", {"kind": "flash_mob", "duration_seconds": 5}, ["flash_mob", "celebrity_live"]),
    ("/surges", {"kind": "deploy", "target": "kafka", "duration_seconds": 5}, ["kafka", "feed"]),
    ("/surges", {"kind": "deploy", "duration_seconds": 5, "when": "now"}, ["when", "target"]),
    ("/surges", {"kind": "marketing_push"}, ["duration_seconds"]),
])
def test_bad_control_requests(platform, path, body, needles):
    r = platform.control("POST", path, body)
    assert r.status_code == 400
    err = r.json()["error"]
    for needle in needles:
        assert needle in err, err


def test_ground_truth_listing_kinds_and_file(platform):
    records = platform.control("GET", "/faults").json()["faults"]
    assert [(f["kind"], f["target"], f["fault"]) for f in records] == [
        ("errors", "gift", True), ("latency", "postgres", True), ("surge:celebrity_live", "live", False)]
    lines = [json.loads(x) for x in platform.faults_log.read_text().splitlines()]
    assert lines == records
    for f in records:
        assert f["start"].endswith("Z") and f["end"] > f["start"]
    kinds = platform.control("GET", "/faults/kinds").json()["kinds"]
    assert set(kinds) == set(FAULT_KINDS)
    assert all(targets == valid_targets(kind) for kind, targets in kinds.items())
    surge_kinds = platform.control("GET", "/surges/kinds").json()
    assert set(surge_kinds["kinds"]) == set(SURGE_KINDS)
    assert surge_kinds["params"]["celebrity_live"] == {"factor": 4.0, "room_id": 1}


def test_sigterm_exits_cleanly(platform):
    os.kill(platform.proc.pid, signal.SIGTERM)
    assert platform.proc.wait(15) == 0
    assert "Traceback" not in platform.log.read_text()


@pytest.mark.parametrize("args,needle", [
    ([], "--ports-file"),
    (["--ports-file", "p", "--faults-log", "f", "--time-scale", "0"], "--time-scale"),
    (["--ports-file", "p", "--faults-log", "f", "--sim-start", "next friday"], "ISO 8601"),
    (["--ports-file", "p", "--faults-log", "f", "--surges", "always"], "calendar"),
])
def test_cli_usage_errors(args, needle):
    r = subprocess.run([sys.executable, "-m", "sample_platform", "run", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
