"""The scrape loop against real HTTP servers on loopback: collectors/scrape.py."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collectors.samples import Sample
from collectors.scrape import ScrapeManager, ScrapeMetrics, Target
from tests.conftest import free_port

NOW = 1_700_000_000.0  # the injected clock, seconds
NOW_MS = 1_700_000_000_000

GOOD_PAGE = """\
# TYPE http_requests_total counter
http_requests_total{code="200"} 10
http_requests_total{code="500"} 2
# TYPE worker_pool_size gauge
worker_pool_size 8
"""
GOOD_PAGE_SAMPLES = 3

BODIES = {
    "good": (200, GOOD_PAGE),
    "malformed": (200, 'http_requests_total{code="200"} not_a_number\n'),
    "http500": (500, "internal error\n"),
    # a timestamp the text format cannot hold (not an int64)
    "inf_timestamp": (200, "http_requests_total 1 +Inf\n"),
}


class Server:
    """A real ThreadingHTTPServer on 127.0.0.1:0 that serves one kind of response on every path."""

    def __init__(self, kind: str, delay_seconds: float = 0.0, port: int = 0):
        self.release = threading.Event()  # set at close so slow handlers finish at once
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                if delay_seconds:
                    server.release.wait(delay_seconds)
                status, body = BODIES.get(kind, BODIES["good"])
                data = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    """``servers(kind)`` starts a server; all are shut down at the end of the test."""
    started: list[Server] = []

    def start(kind: str, delay_seconds: float = 0.0, port: int = 0) -> Server:
        started.append(Server(kind, delay_seconds, port))
        return started[-1]

    yield start
    for s in started:
        s.close()


class Collector:
    """An in-memory ``append``: keeps every batch, returns how many samples it took."""

    def __init__(self):
        self.batches: list[list[Sample]] = []

    def __call__(self, samples: list[Sample]) -> int:
        self.batches.append(list(samples))
        return len(samples)

    def samples(self, name: str, job: str | None = None) -> list[Sample]:
        return [s for b in self.batches for s in b if s.name == name and (job is None or s.labels["job"] == job)]


def make_target(kind: str, servers) -> Target:
    if kind == "down":
        return Target("down", f"http://127.0.0.1:{free_port()}/metrics")  # nothing listens there
    if kind == "slow":
        return Target("slow", servers("slow", delay_seconds=5.0).url)
    return Target(kind, servers(kind).url)


async def scrape_once(manager: ScrapeManager, target: Target) -> list[Sample]:
    try:
        return await manager.scrape(target)
    finally:
        await manager.close()


def failures(metrics: ScrapeMetrics, job: str, reason: str) -> float | None:
    return metrics.registry.get_sample_value("opswatch_scrape_failures_total", {"job": job, "reason": reason})


def test_good_target_is_up_with_target_labels_and_synthetic_series(servers):
    target = make_target("good", servers)
    append, metrics = Collector(), ScrapeMetrics()
    manager = ScrapeManager([target], append, interval_seconds=1.0, timeout_seconds=0.5, clock=lambda: NOW,
                            metrics=metrics)
    returned = asyncio.run(scrape_once(manager, target))

    instance = target.url.split("/")[2]  # "127.0.0.1:<port>", as Prometheus sets it
    assert instance.startswith("127.0.0.1:") and target.instance == instance
    base = {"job": "good", "instance": instance}
    assert append.batches == [returned]  # one batch, exactly what scrape returned
    assert returned[:GOOD_PAGE_SAMPLES] == [
        Sample("http_requests_total", {"code": "200", **base}, NOW_MS, 10.0),
        Sample("http_requests_total", {"code": "500", **base}, NOW_MS, 2.0),
        Sample("worker_pool_size", base, NOW_MS, 8.0),
    ]
    synthetic = {s.name: s for s in returned[GOOD_PAGE_SAMPLES:]}
    assert set(synthetic) == {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
    assert synthetic["up"] == Sample("up", base, NOW_MS, 1.0)
    assert synthetic["scrape_samples_scraped"] == Sample("scrape_samples_scraped", base, NOW_MS, 3.0)
    duration = synthetic["scrape_duration_seconds"]
    assert duration.labels == base and duration.timestamp_ms == NOW_MS and 0 < duration.value < 0.5

    health = manager.health[target]
    assert (health.health, health.last_error, health.samples_scraped, health.last_scrape_ms) == ("up", "", 3, NOW_MS)
    assert health.last_scrape_duration_seconds == duration.value
    assert failures(metrics, "good", "fetch") is None and failures(metrics, "good", "parse") is None
    assert metrics.registry.get_sample_value("opswatch_samples_appended_total") == 6.0  # 3 page + 3 synthetic
    assert metrics.registry.get_sample_value("opswatch_scrape_duration_seconds_count", {"job": "good"}) == 1.0


@pytest.mark.parametrize(
    "kind, reason, error_text",
    [
        ("down", "fetch", "ConnectError"),  # nothing listens on the port: connection refused
        ("malformed", "parse", "malformed"),  # the page does not parse
        ("http500", "fetch", "HTTP status 500"),  # the server answers with an error status
        ("slow", "fetch", "timeout after 0.5s"),  # the server answers after the 0.5 s deadline
        # Regression test (fixed bug): an OverflowError from parse_text escapes scrape() instead of becoming up 0
        ("inf_timestamp", "parse", "malformed"),  # a timestamp that is not an integer
    ],
    ids=["down", "malformed", "http500", "slow", "fixed-inf-timestamp"],
)
def test_failing_target_gives_up_0_and_is_counted(servers, kind, reason, error_text):
    target = make_target(kind, servers)
    append, metrics = Collector(), ScrapeMetrics()
    manager = ScrapeManager([target], append, interval_seconds=1.0, timeout_seconds=0.5, clock=lambda: NOW,
                            metrics=metrics)
    returned = asyncio.run(scrape_once(manager, target))

    base = {"job": kind, "instance": target.instance}
    assert [s.name for s in returned] == ["up", "scrape_duration_seconds", "scrape_samples_scraped"]
    assert returned[0] == Sample("up", base, NOW_MS, 0.0)
    assert returned[2] == Sample("scrape_samples_scraped", base, NOW_MS, 0.0)
    assert append.batches == [returned]  # the failure is still written, so `up == 0` can alert

    health = manager.health[target]
    assert health.health == "down" and health.samples_scraped == 0 and health.last_scrape_ms == NOW_MS
    assert error_text in health.last_error
    assert failures(metrics, kind, reason) == 1.0
    other = {"fetch": "parse", "parse": "fetch"}[reason]
    assert failures(metrics, kind, other) is None


def test_health_recovers_and_error_clears(servers):
    # down first (nothing listens on the port), then a server comes up on that very port
    port = free_port()
    target = Target("flappy", f"http://127.0.0.1:{port}/metrics")
    append, metrics = Collector(), ScrapeMetrics()
    clock = iter([NOW, NOW + 1.0])
    manager = ScrapeManager([target], append, interval_seconds=1.0, timeout_seconds=0.5,
                            clock=lambda: next(clock), metrics=metrics)

    async def go():
        first = await manager.scrape(target)
        first_health = (manager.health[target].health, manager.health[target].last_error)
        servers("good", port=port)
        second = await manager.scrape(target)
        await manager.close()
        return first, first_health, second

    first, (first_state, first_error), second = asyncio.run(go())
    assert first[0] == Sample("up", {"job": "flappy", "instance": f"127.0.0.1:{port}"}, NOW_MS, 0.0)
    assert first_state == "down" and "ConnectError" in first_error
    assert second[GOOD_PAGE_SAMPLES] == Sample("up", {"job": "flappy", "instance": f"127.0.0.1:{port}"},
                                               NOW_MS + 1000, 1.0)
    health = manager.health[target]
    assert (health.health, health.last_error, health.last_scrape_ms) == ("up", "", NOW_MS + 1000)
    assert failures(metrics, "flappy", "fetch") == 1.0  # only the first scrape failed


def test_run_keeps_scraping_good_target_while_others_fail(servers):
    kinds = ["good", "down", "malformed", "http500", "slow"]
    targets = [make_target(k, servers) for k in kinds]
    append, metrics = Collector(), ScrapeMetrics()
    manager = ScrapeManager(targets, append, interval_seconds=0.5, metrics=metrics)  # timeout = min(10, 0.5)

    async def run_for(seconds: float) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(manager.run(), seconds)

    asyncio.run(run_for(2.5))

    good_up = [s.value for s in append.samples("up", "good")]
    assert len(good_up) >= 4 and set(good_up) == {1.0}  # scraped at 0, 0.5, 1.0, 1.5, 2.0 s
    for kind in kinds[1:]:
        ups = [s.value for s in append.samples("up", kind)]
        assert len(ups) >= 2 and set(ups) == {0.0}, kind
        assert manager.health[targets[kinds.index(kind)]].health == "down"
    assert manager.health[targets[0]].health == "up"
    assert failures(metrics, "down", "fetch") >= 2
    assert failures(metrics, "malformed", "parse") >= 2
    assert manager._client.is_closed  # cancelling run() closes the HTTP client
