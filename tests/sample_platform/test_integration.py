"""Integration test: the real platform as a subprocess, scraped and faulted over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sample_platform.graph import CALL_GRAPH, NODES, SERVICES

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMMON = ["http_requests_total", "http_request_duration_seconds_bucket", "http_request_duration_seconds_count",
          "http_requests_in_flight", "worker_pool_size", "worker_busy_seconds_total"]
EXTRAS = {
    "postgres": ["pg_query_duration_seconds_bucket", "pg_connections_active", "pg_connections_max"],
    "redis": ["redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_command_duration_seconds_count"],
    "kafka": ["kafka_messages_produced_total", "kafka_messages_consumed_total", "kafka_consumergroup_lag"],
    "gateway": ["platform_online_users"],
    "live": ["live_viewers"],
    "gift": ["gift_orders_total"],
    "message": ["messages_sent_total"],
    "post": ["posts_created_total"],
}


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

    def post_fault(self, body) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return self.http.post(self.info["control"] + "/faults", content=body,
                                  headers={"content-type": "application/json"})
        return self.http.post(self.info["control"] + "/faults", json=body)


def total(m, name: str, **labels) -> float:
    return sum(v for (n, ls), v in m.items() if n == name and set(labels.items()) <= ls)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample_platform")
    ports, faults_log, log = tmp / "ports.json", tmp / "faults.jsonl", tmp / "platform.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sample_platform", "run", "--ports-file", str(ports),
             "--faults-log", str(faults_log), "--rate", "30", "--seed", "7"],
            cwd=REPO, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready():
            if proc.poll() is not None:
                pytest.fail(f"platform exited with {proc.returncode}:\n{log.read_text()}")
            return ports.exists()

        wait_for(ready, 20, 0.05, "the ports file")
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


def test_every_node_exposes_golden_signals(platform):
    def all_nodes_busy():
        return all(platform.value(n, "http_requests_total") > 0 for n in NODES)

    wait_for(all_nodes_busy, 15, 0.5, "traffic on every node")
    for node in NODES:
        m = platform.scrape(node)
        names = {n for n, _ in m}
        for name in COMMON + EXTRAS.get(node, []):
            assert name in names, f"{node} lacks {name}"
        assert not any(dict(ls).get("route") == "/metrics" for _, ls in m), f"{node} counts /metrics"
        assert total(m, "worker_pool_size") >= 32

    def downstream_calls_seen():
        for caller in SERVICES:
            m = platform.scrape(caller)
            seen = {dict(ls)["downstream"] for n, ls in m if n == "http_client_requests_total"}
            if seen != set(CALL_GRAPH[caller]):
                return False
        return True

    wait_for(downstream_calls_seen, 20, 0.5, "client-side counters for every call-graph edge")


def test_traffic_flows(platform):
    before = platform.value("gateway", "http_requests_total")
    time.sleep(1.5)
    after = platform.value("gateway", "http_requests_total")
    assert after - before >= 10  # 30 req/s offered
    stats = platform.http.get(platform.info["control"] + "/traffic").json()
    assert stats["sent"] > 0 and stats["dropped"] == 0


def test_errors_on_gift(platform):
    gift500 = platform.value("gift", "http_requests_total", code="500")
    gw502 = platform.value("gateway", "http_requests_total", route="/api/gift", code="502")
    r = platform.post_fault({"kind": "errors", "target": "gift", "duration_seconds": 10,
                             "params": {"error_ratio": 1.0}})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["kind"] == "errors" and rec["target"] == "gift" and rec["params"] == {"error_ratio": 1.0}

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

    r = platform.post_fault({"kind": "latency", "target": "postgres", "duration_seconds": 10})
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


@pytest.mark.parametrize("body,needles", [
    ({"kind": "meltdown", "target": "postgres", "duration_seconds": 5}, ["meltdown", "latency", "saturation"]),
    ({"kind": "latency", "target": "mysql", "duration_seconds": 5}, ["mysql", "postgres", "gateway"]),
    ({"kind": "latency", "target": "redis", "duration_seconds": -3}, ["duration_seconds"]),
    ({"kind": "latency", "target": "redis"}, ["duration_seconds"]),
    ({"kind": "errors", "target": "redis", "duration_seconds": 5, "params": {"error_ratio": 2}}, ["error_ratio"]),
    (b"{not json", ["JSON"]),
    (b"[1, 2]", ["object"]),
])
def test_bad_fault_requests(platform, body, needles):
    r = platform.post_fault(body)
    assert r.status_code == 400
    err = r.json()["error"]
    for needle in needles:
        assert needle in err, err


def test_fault_listing_kinds_and_ground_truth_file(platform):
    faults = platform.http.get(platform.info["control"] + "/faults").json()["faults"]
    assert [(f["kind"], f["target"]) for f in faults] == [("errors", "gift"), ("latency", "postgres")]
    lines = [json.loads(x) for x in platform.faults_log.read_text().splitlines()]
    assert lines == faults
    for f in faults:
        assert f["start"].endswith("Z") and f["end"] > f["start"]
    kinds = platform.http.get(platform.info["control"] + "/faults/kinds").json()["kinds"]
    assert set(kinds) == {"latency", "errors", "saturation"}
    assert all(sorted(targets) == sorted(NODES) for targets in kinds.values())


def test_sigterm_exits_cleanly(platform):
    os.kill(platform.proc.pid, signal.SIGTERM)
    assert platform.proc.wait(15) == 0
    assert "Traceback" not in platform.log.read_text()


def test_cli_usage_error():
    r = subprocess.run([sys.executable, "-m", "sample_platform", "run"], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--ports-file" in r.stderr
