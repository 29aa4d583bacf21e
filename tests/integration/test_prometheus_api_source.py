"""PrometheusAPISource against a real Prometheus scraping a real node_exporter (Debian's binaries), plus
its failure modes: bad PromQL, an unreachable server, a server that never answers, malformed answers.

The helpers at the top (start a node_exporter + Prometheus pair, call the API directly) are shared with
test_prometheus_parity.py.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from collectors.prometheus_api import PrometheusAPISource
from collectors.samples import Sample, labels_key
from opswatch.errors import ScrapeError
from storage.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.integration.test_run_real_exporters import binary, wait_http


# -- shared helpers ------------------------------------------------------------------------------------


@dataclass
class Stack:
    """A Prometheus scraping one target every second (a node_exporter unless said otherwise), on loopback."""

    prom_url: str
    logs: Path
    node_port: int | None = None

    @property
    def node_instance(self) -> str:
        return f"127.0.0.1:{self.node_port}"

    def log_tail(self, lines: int = 15) -> str:
        text = []
        for name in ("node_exporter.log", "prometheus.log"):
            path = self.logs / name
            if path.exists():
                text.append(f"--- {name} (last {lines} lines)\n" + "\n".join(path.read_text().splitlines()[-lines:]))
        return "\n".join(text)


def prom_api(prom_url: str, path: str, params: dict | list | None = None) -> object:
    """GET a Prometheus API endpoint directly (not through the code under test) and return ``data``."""
    response = httpx.get(prom_url + path, params=params, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{response.url}: {response.text[:500]}"
    return body["data"]


def wait_for(condition, what: str, stack: Stack, deadline_s: float = 30, every_s: float = 0.2):
    """Poll ``condition()`` until it returns something truthy; fail with the processes' logs otherwise."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (httpx.HTTPError, AssertionError, KeyError, ValueError):
            result = None
        if result:
            return result
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {deadline_s}s\n{stack.log_tail()}")


def start_prometheus(spawn, tmp_path: Path, job: str, target: str) -> Stack:
    """Start a Prometheus whose job ``job`` scrapes ``target`` (``host:port``, path /metrics) every 1 s, so
    its ``instance`` label is ``target``; wait until it has stored ``up == 1`` for it."""
    prometheus, prom = binary("prometheus"), free_port()
    stack = Stack(f"http://127.0.0.1:{prom}", tmp_path)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1m}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    with open(tmp_path / "prometheus.log", "w") as log:
        spawn([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom}"], stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"{stack.prom_url}/-/ready")

    def up() -> bool:
        result = prom_api(stack.prom_url, "/api/v1/query", {"query": f'up{{job="{job}"}}'})["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_for(up, f"Prometheus stores up == 1 for {target}", stack)
    return stack


def start_node_and_prometheus(spawn, tmp_path: Path, node_flags: tuple[str, ...] = (), job: str = "node") -> Stack:
    """Start node_exporter (with ``node_flags``) and a Prometheus scraping it as job ``job`` every 1 s."""
    node_exporter, node = binary("prometheus-node-exporter"), free_port()
    with open(tmp_path / "node_exporter.log", "w") as log:
        spawn([node_exporter, f"--web.listen-address=127.0.0.1:{node}", *node_flags],
              stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{node}/metrics")
    stack = start_prometheus(spawn, tmp_path, job, f"127.0.0.1:{node}")
    stack.node_port = node
    return stack


def same_float(a: float, b: float) -> bool:
    """Exact float64 equality, NaN equal to NaN."""
    return a == b or (math.isnan(a) and math.isnan(b))


# -- the source against a real Prometheus ----------------------------------------------------------------

SELECTORS = {  # selector -> (metric name, matchers for SQLiteStore.select)
    "node_memory_MemTotal_bytes": ("node_memory_MemTotal_bytes", {}),
    "up": ("up", {}),
    'node_cpu_seconds_total{mode="idle"}': ("node_cpu_seconds_total", {"mode": "idle"}),
}


@pytest.mark.integration
def test_import_range_stores_exactly_what_prometheus_query_api_returns(spawn, tmp_path):
    stack = start_node_and_prometheus(spawn, tmp_path)

    def scrapes_stored() -> bool:
        data = prom_api(stack.prom_url, "/api/v1/query", {"query": 'count_over_time(up{job="node"}[1m])'})
        return bool(data["result"]) and float(data["result"][0]["value"][1]) >= 6

    wait_for(scrapes_stored, "Prometheus stores 6 scrapes", stack)
    # Stay behind the scrape in flight: a sample stamped just before "now" may not be committed yet, and
    # the comparison below must query the same, settled data.
    end_ms = int(time.time() * 1000) - 1500
    start_ms = end_ms - 10_000

    store = SQLiteStore(tmp_path / "opswatch.db")
    try:
        with PrometheusAPISource(stack.prom_url, timeout_seconds=5) as source:
            written = source.import_range(store.append, list(SELECTORS), start_ms, end_ms, 1)
            found = source.series(list(SELECTORS), start_ms, end_ms)

        total = 0
        for selector, (name, matchers) in SELECTORS.items():
            data = prom_api(stack.prom_url, "/api/v1/query_range",
                            {"query": selector, "start": start_ms / 1000, "end": end_ms / 1000, "step": "1"})
            assert data["resultType"] == "matrix"
            expected = {}
            for series in data["result"]:
                labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
                assert series["metric"]["__name__"] == name
                expected[labels_key(labels)] = [(round(t * 1000), float(v)) for t, v in series["values"]]
            stored = {
                labels_key(ts.labels): list(zip(ts.values.index.asi8.tolist(), ts.values.tolist()))
                for ts in store.select(name, matchers, start_ms, end_ms)
            }
            assert expected, f"Prometheus has no {selector} in the range"
            assert set(stored) == set(expected), f"{selector}: series differ: {set(stored) ^ set(expected)}"
            for key, points in expected.items():
                got = stored[key]
                assert len(points) >= 3, f"{selector}{key}: only {len(points)} points in 10 s"
                assert [t for t, _ in got] == [t for t, _ in points], f"{name}{key}: timestamps differ"
                assert all(t % 1000 == start_ms % 1000 for t, _ in got), "points are not on the step grid"
                bad = [(t, v, w) for (t, v), (_, w) in zip(points, got) if not same_float(v, w)]
                assert not bad, f"{name}{key}: (ts, prometheus, stored) differ: {bad}"
                total += len(points)
        assert written == total

        cpus = {s["cpu"] for s in found if s["__name__"] == "node_cpu_seconds_total"}
        assert {s["__name__"] for s in found} == {"node_memory_MemTotal_bytes", "up", "node_cpu_seconds_total"}
        assert all(s.get("mode", "idle") == "idle" and s["job"] == "node" for s in found)
        assert len(cpus) == len(store.select("node_cpu_seconds_total")) >= 1

        # A PromQL syntax error: Prometheus answers 400 {"errorType": "bad_data"}.
        with PrometheusAPISource(stack.prom_url, timeout_seconds=5) as source:
            with pytest.raises(ScrapeError) as info:
                source.query_range("rate(up[5m]", start_ms, end_ms, 1)
        message = str(info.value)
        assert "bad_data" in message and "parse error" in message, message
        assert f"{stack.prom_url}/api/v1/query_range" in message and "rate(up[5m]" in message, message
    finally:
        store.close()


# -- failures without a Prometheus --------------------------------------------------------------------


def test_unreachable_server_is_a_scrape_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with PrometheusAPISource(url, timeout_seconds=2) as source:
        with pytest.raises(ScrapeError, match=r"ConnectError") as info:
            source.series(["up"], 0, 1000)
        assert f"{url}/api/v1/series" in str(info.value)
        with pytest.raises(ScrapeError, match=r"ConnectError"):
            source.import_range(lambda samples: pytest.fail("nothing to store"), ["up"], 0, 1000, 1)


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with PrometheusAPISource(url, timeout_seconds=0.5) as source:
            with pytest.raises(ScrapeError, match=r"timeout after 0.5s") as info:
                source.query_range("up", 0, 1000, 1)
        assert time.monotonic() - started < 5
        assert f"{url}/api/v1/query_range" in str(info.value)


def mock_source(handler) -> PrometheusAPISource:
    return PrometheusAPISource("http://prom.test:9090/", transport=httpx.MockTransport(handler))


def test_matrix_values_nan_inf_and_exact_millisecond_timestamps():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.url.params)
        body = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "x", "a": "1"},
             "values": [[1700000000.001, "NaN"], [1700000000.123, "+Inf"], [1700000001, "-Inf"]]},
            {"metric": {"b": "2"}, "values": [[1700000000.001, "1e-300"], [1700000000.002, "0.1"]]},
        ]}}
        return httpx.Response(200, text=json.dumps(body))

    with mock_source(handler) as source:
        samples = source.query_range("x", 1_700_000_000_001, 1_700_000_001_000, 0.5)
    assert seen == {"query": "x", "start": "1700000000.001", "end": "1700000001.000", "step": "0.500"}
    assert [(s.name, dict(s.labels), s.timestamp_ms) for s in samples] == [
        ("x", {"a": "1"}, 1_700_000_000_001),
        ("x", {"a": "1"}, 1_700_000_000_123),
        ("x", {"a": "1"}, 1_700_000_001_000),
        ("", {"b": "2"}, 1_700_000_000_001), ("", {"b": "2"}, 1_700_000_000_002),
    ]
    values = [s.value for s in samples]
    assert math.isnan(values[0]) and values[1:3] == [math.inf, -math.inf] and values[3:] == [1e-300, 0.1]


def test_import_range_splits_long_ranges_on_the_same_step_grid():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        p = request.url.params
        start, end, step = (round(float(p[k]) * 1000) for k in ("start", "end", "step"))
        calls.append((start, end))
        values = [[t / 1000, "1"] for t in range(start, end + 1, step)]
        body = {"status": "success", "data": {"resultType": "matrix",
                                               "result": [{"metric": {"__name__": "up"}, "values": values}]}}
        return httpx.Response(200, text=json.dumps(body))

    stored: list[Sample] = []

    def append(samples):
        stored.extend(samples)
        return len(samples)

    with mock_source(handler) as source:
        assert source.import_range(append, ["up"], 0, 25_000_000, 1) == 25_001
    assert calls == [(0, 10_999_000), (11_000_000, 21_999_000), (22_000_000, 25_000_000)]
    assert [s.timestamp_ms for s in stored] == list(range(0, 25_000_001, 1000))


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (200, "<html>not json</html>", r"HTTP status 200, not a Prometheus API JSON envelope: '<html>"),
        (502, "Bad Gateway", r"HTTP status 502, not a Prometheus API JSON envelope"),
        (422, '{"status":"error","errorType":"execution","error":"query timed out"}',
         r"HTTP status 422, errorType 'execution': query timed out"),
        (200, '{"status":"error","errorType":"internal","error":"boom"}', r"errorType 'internal': boom"),
        (200, '{"status":"success","data":{"resultType":"vector","result":[]}}',
         r"expected a matrix result, got 'vector'"),
        (200, '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,2]]}]}}',
         r"malformed answer: ValueError: sample value 2 is not a string"),
        (200, '{"status":"success"}', r"malformed answer: no 'data'"),
    ],
)
def test_bad_answers_are_scrape_errors_naming_the_url(status, body, expected):
    with mock_source(lambda request: httpx.Response(status, text=body)) as source:
        with pytest.raises(ScrapeError, match=expected) as info:
            source.query_range("up", 0, 1000, 1)
    assert "http://prom.test:9090/api/v1/query_range" in str(info.value)
