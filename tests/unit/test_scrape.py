"""The scrape loop against real HTTP servers on loopback: collectors/scrape.py.

Synthetic series, failures, staleness markers, honor_labels / metric relabeling, content negotiation and
gzip, target changes, and backpressure (a slow store or slow targets never delay the other targets).
Timestamps come from an injected clock; only the tests of ``run`` take real time.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collectors.config import ScrapeConfig
from collectors.samples import Sample, is_stale_nan
from collectors.scrape import SYNTHETIC, ScrapeManager, ScrapeMetrics, Target
from collectors.targets import build_target
from opswatch.errors import StorageError
from tests.conftest import free_port
from tests.integration.test_probes import make_certificates

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
OPENMETRICS_PAGE = """\
# TYPE http_requests counter
http_requests_total{code="200"} 10
http_requests_created{code="200"} 1700000000.5
# EOF
"""

BODIES = {
    "good": (200, GOOD_PAGE),
    "malformed": (200, 'http_requests_total{code="200"} not_a_number\n'),
    "http500": (500, "internal error\n"),
    "http204": (204, ""),
    # a timestamp the text format cannot hold (not an int64)
    "inf_timestamp": (200, "http_requests_total 1 +Inf\n"),
    "not_utf8": (200, b'm{path="\xff"} 1\n'),
}


class Server:
    """A real ThreadingHTTPServer on 127.0.0.1:0. ``page`` may be changed between scrapes; it answers
    OpenMetrics when asked and allowed, gzips when asked and allowed, and records request headers."""

    def __init__(self, kind: str = "good", delay_seconds: float = 0.0, port: int = 0, tls: tuple | None = None):
        self.release = threading.Event()  # set at close so slow handlers finish at once
        self.hits = 0
        self.status, self.page = BODIES.get(kind, BODIES["good"])
        self.openmetrics_page: str | None = None
        self.gzip = False
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                server.requests.append(dict(self.headers))
                if delay_seconds:
                    server.release.wait(delay_seconds)
                body, content_type = server.page, "text/plain; version=0.0.4; charset=utf-8"
                if server.openmetrics_page is not None and "openmetrics" in self.headers.get("Accept", ""):
                    body, content_type = server.openmetrics_page, "application/openmetrics-text; version=1.0.0"
                data = body if isinstance(body, bytes) else body.encode()
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", content_type)
                    if server.gzip and "gzip" in self.headers.get("Accept-Encoding", ""):
                        data = gzip.compress(data)
                        self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, tls))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.address}/metrics"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    """``servers(kind)`` starts a server; all are shut down at the end of the test."""
    started: list[Server] = []

    def start(kind: str = "good", delay_seconds: float = 0.0, port: int = 0) -> Server:
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


def job_target(server: Server, **config) -> Target:
    """The target a scrape config makes of ``server`` (interval 1 s, timeout 0.5 s unless given)."""
    job = ScrapeConfig.model_validate({"job_name": "job", "static_configs": [{"targets": [server.address]}], **config})
    return build_target({"__address__": server.address}, job.with_defaults(1.0, 0.5))


def manager_for(target: Target, append=None, clock=lambda: NOW, **kwargs) -> ScrapeManager:
    return ScrapeManager([target], append or Collector(), interval_seconds=1.0, timeout_seconds=0.5, clock=clock,
                         metrics=kwargs.pop("metrics", None) or ScrapeMetrics(), **kwargs)


async def scrape_once(manager: ScrapeManager, target: Target) -> list[Sample]:
    try:
        return await manager.scrape(target)
    finally:
        await manager.close()


def scrape_pages(manager: ScrapeManager, target: Target, server: Server, pages: list) -> list[list[Sample]]:
    """Scrape ``target`` once per page (``None``: the server answers 500), closing the manager at the end."""

    async def go():
        results = []
        for page in pages:
            server.status, server.page = (500, "down\n") if page is None else (200, page)
            results.append(await manager.scrape(target))
        await manager.close()
        return results

    return asyncio.run(go())


def failures(metrics: ScrapeMetrics, job: str, reason: str) -> float | None:
    return metrics.registry.get_sample_value("opswatch_scrape_failures_total", {"job": job, "reason": reason})


def dropped(metrics: ScrapeMetrics, job: str, reason: str) -> float | None:
    return metrics.registry.get_sample_value("opswatch_scrape_samples_dropped_total", {"job": job, "reason": reason})


def by_name(samples: list[Sample]) -> dict[str, Sample]:
    return {s.name: s for s in samples}


def test_good_target_is_up_with_target_labels_and_synthetic_series(servers):
    target = make_target("good", servers)
    append, metrics = Collector(), ScrapeMetrics()
    manager = manager_for(target, append, metrics=metrics)
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
    synthetic = by_name(returned[GOOD_PAGE_SAMPLES:])
    assert list(synthetic) == list(SYNTHETIC) == ["up", "scrape_duration_seconds", "scrape_samples_scraped",
                                                  "scrape_samples_post_metric_relabeling", "scrape_series_added"]
    assert synthetic["up"] == Sample("up", base, NOW_MS, 1.0)
    assert synthetic["scrape_samples_scraped"] == Sample("scrape_samples_scraped", base, NOW_MS, 3.0)
    assert synthetic["scrape_samples_post_metric_relabeling"].value == 3.0
    assert synthetic["scrape_series_added"].value == 3.0  # all new on the first scrape
    duration = synthetic["scrape_duration_seconds"]
    assert duration.labels == base and duration.timestamp_ms == NOW_MS and 0 < duration.value < 0.5

    health = manager.health[target]
    assert (health.health, health.last_error, health.samples_scraped, health.last_scrape_ms) == ("up", "", 3, NOW_MS)
    assert health.last_scrape_duration_seconds == duration.value and health.labels == base
    assert failures(metrics, "good", "fetch") is None and failures(metrics, "good", "parse") is None
    assert metrics.registry.get_sample_value("opswatch_samples_appended_total") == 8.0  # 3 page + 5 synthetic
    assert metrics.registry.get_sample_value("opswatch_scrape_duration_seconds_count", {"job": "good"}) == 1.0


def test_request_asks_for_openmetrics_then_text_with_a_timeout_header(servers):
    server = servers()
    target = job_target(server)
    asyncio.run(scrape_once(manager_for(target), target))
    [headers] = server.requests
    # Prometheus 2.42's Accept header, word for word
    assert headers["Accept"] == ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                                 "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert headers["X-Prometheus-Scrape-Timeout-Seconds"] == "0.5"
    assert "gzip" in headers["Accept-Encoding"]


@pytest.mark.parametrize(
    "kind, reason, error_text",
    [
        ("down", "fetch", "ConnectError"),  # nothing listens on the port: connection refused
        ("malformed", "parse", "malformed"),  # the page does not parse
        ("http500", "fetch", "HTTP status 500"),  # the server answers with an error status
        ("http204", "fetch", "HTTP status 204"),  # Prometheus accepts 200 only
        ("slow", "fetch", "timeout after 0.5s"),  # the server answers after the 0.5 s deadline
        # Regression test (fixed bug): an OverflowError from parse_text escapes scrape() instead of becoming up 0
        ("inf_timestamp", "parse", "malformed"),  # a timestamp that is not an integer
        ("not_utf8", "parse", "not UTF-8"),  # the text formats are UTF-8
    ],
    ids=["down", "malformed", "http500", "http204", "slow", "fixed-inf-timestamp", "not-utf8"],
)
def test_failing_target_gives_up_0_and_is_counted(servers, kind, reason, error_text):
    target = make_target(kind, servers)
    append, metrics = Collector(), ScrapeMetrics()
    manager = manager_for(target, append, metrics=metrics)
    returned = asyncio.run(scrape_once(manager, target))

    base = {"job": kind, "instance": target.instance}
    assert [s.name for s in returned] == list(SYNTHETIC)
    assert [s.value for s in returned if s.name != "scrape_duration_seconds"] == [0.0, 0.0, 0.0, 0.0]
    assert returned[0] == Sample("up", base, NOW_MS, 0.0)
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
    metrics = ScrapeMetrics()
    clock = iter([NOW, NOW + 1.0])
    manager = manager_for(target, clock=lambda: next(clock), metrics=metrics)

    async def go():
        first = await manager.scrape(target)
        first_health = (manager.health[target].health, manager.health[target].last_error)
        servers("good", port=port)
        second = await manager.scrape(target)
        await manager.close()
        return first, first_health, second

    first, (first_state, first_error), second = asyncio.run(go())
    base = {"job": "flappy", "instance": f"127.0.0.1:{port}"}
    assert first[0] == Sample("up", base, NOW_MS, 0.0)
    assert first_state == "down" and "ConnectError" in first_error
    assert by_name(second)["up"] == Sample("up", base, NOW_MS + 1000, 1.0)
    health = manager.health[target]
    assert (health.health, health.last_error, health.last_scrape_ms) == ("up", "", NOW_MS + 1000)
    assert failures(metrics, "flappy", "fetch") == 1.0  # only the first scrape failed


# -- staleness ---------------------------------------------------------------------------------------


def stale(samples: list[Sample]) -> dict[str, Sample]:
    return {s.labels.get("code", s.name): s for s in samples if is_stale_nan(s.value)}


def test_series_that_disappears_gets_a_staleness_marker_and_comes_back_as_new(servers):
    server = servers()
    target = job_target(server)
    clock = iter([NOW, NOW + 1, NOW + 2])
    manager = manager_for(target, clock=lambda: next(clock))
    without_500 = GOOD_PAGE.replace('http_requests_total{code="500"} 2\n', "")
    first, second, third = scrape_pages(manager, target, server, [GOOD_PAGE, without_500, GOOD_PAGE])

    assert stale(first) == {}
    markers = stale(second)
    assert list(markers) == ["500"]  # only the series that went away
    marker = markers["500"]
    assert marker.name == "http_requests_total" and marker.timestamp_ms == NOW_MS + 1000
    assert marker.labels == {"code": "500", "job": "job", "instance": server.address}
    assert marker.value != marker.value and is_stale_nan(marker.value)  # the special NaN, bit for bit
    assert by_name(second)["scrape_series_added"].value == 0
    assert stale(third) == {} and by_name(third)["scrape_series_added"].value == 1  # back: a new series


def test_failed_scrape_marks_every_series_stale_once(servers):
    server = servers()
    target = job_target(server)
    clock = iter([NOW, NOW + 1, NOW + 2, NOW + 3])
    manager = manager_for(target, clock=lambda: next(clock))
    ok, failed, failed_again, back = scrape_pages(manager, target, server, [GOOD_PAGE, None, None, GOOD_PAGE])

    markers = stale(failed)
    assert set(markers) == {"200", "500", "worker_pool_size"}
    assert {s.timestamp_ms for s in markers.values()} == {NOW_MS + 1000}
    assert by_name(failed)["up"].value == 0.0  # synthetic series are written, never marked stale here
    assert stale(failed_again) == {}  # nothing left to mark
    assert stale(back) == {} and by_name(back)["scrape_series_added"].value == 3


def test_series_with_their_own_timestamp_are_not_marked_stale(servers):
    server = servers()
    target = job_target(server)
    clock = iter([NOW, NOW + 1])
    manager = manager_for(target, clock=lambda: next(clock))
    first, second = scrape_pages(manager, target, server, ["a 1 1600000000000\nb 2\n", "\n"])
    assert [s.name for s in stale(second).values()] == ["b"]  # as Prometheus: explicit timestamps bypass staleness


def test_honor_timestamps_false_stamps_the_scrape_time(servers):
    server = servers()
    target = job_target(server, honor_timestamps=False)
    [samples] = scrape_pages(manager_for(target), target, server, ["a 1 1600000000000\n"])
    assert samples[0].timestamp_ms == NOW_MS


def test_duplicate_series_keeps_the_first_sample_and_counts_the_rest(servers):
    server = servers()
    target = job_target(server)
    metrics = ScrapeMetrics()
    [samples] = scrape_pages(manager_for(target, metrics=metrics), target, server, ['a{x="1"} 1\na{x="1"} 2\nb 3\n'])
    assert [(s.name, s.value) for s in samples if s.name in "ab"] == [("a", 1.0), ("b", 3.0)]
    assert by_name(samples)["scrape_samples_scraped"].value == 3
    assert by_name(samples)["scrape_samples_post_metric_relabeling"].value == 3  # counted before the check
    assert dropped(metrics, "job", "duplicate") == 1.0


# -- labels: honor_labels and metric_relabel_configs -------------------------------------------------------


@pytest.mark.parametrize("honor, expected", [
    (False, {"job": "job", "exported_job": "batch", "instance": "X", "exported_instance": "pod-1"}),
    (True, {"job": "batch", "instance": "pod-1"}),
])
def test_honor_labels_decides_who_wins_a_clash(servers, honor, expected):
    server = servers()
    target = job_target(server, honor_labels=honor)
    [samples] = scrape_pages(manager_for(target), target, server, ['m{job="batch",instance="pod-1"} 1\n'])
    labels = dict(samples[0].labels)
    if not honor:
        assert labels.pop("instance") == server.address
        labels["instance"] = "X"
    assert labels == expected
    assert by_name(samples)["up"].labels == {"job": "job", "instance": server.address}  # synthetic: target labels


def test_metric_relabel_configs_drop_rename_and_count(servers):
    server = servers()
    target = job_target(server, metric_relabel_configs=[
        {"source_labels": ["__name__"], "regex": "worker_.*", "action": "drop"},
        {"source_labels": ["__name__", "code"], "regex": "http_requests_total;(5..)", "target_label": "__name__",
         "replacement": "http_errors_total"},
        {"regex": "code", "action": "labeldrop"},
    ])
    metrics = ScrapeMetrics()
    clock = iter([NOW, NOW + 1])
    first, second = scrape_pages(manager_for(target, clock=lambda: next(clock), metrics=metrics), target, server,
                                 [GOOD_PAGE, GOOD_PAGE])
    base = {"job": "job", "instance": server.address}
    assert first[:2] == [Sample("http_requests_total", base, NOW_MS, 10.0),
                         Sample("http_errors_total", base, NOW_MS, 2.0)]
    synthetic = by_name(first)
    assert synthetic["scrape_samples_scraped"].value == 3
    assert synthetic["scrape_samples_post_metric_relabeling"].value == 2
    assert second[:2] == [s._replace(timestamp_ms=NOW_MS + 1000) for s in first[:2]]  # the cached labels


def test_metric_relabeling_that_removes_the_name_fails_the_scrape(servers):
    server = servers()
    target = job_target(server, metric_relabel_configs=[{"regex": "__name__", "action": "labeldrop"}])
    metrics = ScrapeMetrics()
    manager = manager_for(target, metrics=metrics)
    [samples] = scrape_pages(manager, target, server, [GOOD_PAGE])
    assert by_name(samples)["up"].value == 0 and "without a metric name" in manager.health[target].last_error


@pytest.mark.parametrize("limit, up", [(2, 0.0), (3, 1.0)])
def test_sample_limit_fails_the_whole_scrape_after_metric_relabeling(servers, limit, up):
    server = servers()
    # 3 samples on the page; relabeling drops none, so a limit of 2 fails the scrape and 3 passes.
    target = job_target(server, sample_limit=limit)
    metrics = ScrapeMetrics()
    manager = manager_for(target, metrics=metrics)
    first, second = scrape_pages(manager, target, server, [GOOD_PAGE, GOOD_PAGE])
    assert by_name(second)["up"].value == up
    if up:
        assert failures(metrics, "job", "sample_limit") is None
    else:
        assert [s.name for s in first if s.name not in SYNTHETIC] == []  # nothing of the page is stored
        assert failures(metrics, "job", "sample_limit") == 2
        assert "sample limit exceeded: 3 samples" in manager.health[target].last_error


def test_sample_limit_counts_samples_left_after_relabeling(servers):
    server = servers()
    target = job_target(server, sample_limit=2,
                        metric_relabel_configs=[{"source_labels": ["__name__"], "regex": "worker_.*", "action": "drop"}])
    [samples] = scrape_pages(manager_for(target), target, server, [GOOD_PAGE])
    assert by_name(samples)["up"].value == 1


@pytest.mark.parametrize("gzip_page", [False, True])
def test_body_size_limit_applies_to_the_uncompressed_page(servers, gzip_page):
    server = servers()
    server.gzip = gzip_page
    size = len(GOOD_PAGE.encode())
    metrics = ScrapeMetrics()
    small, fits = job_target(server, body_size_limit=size - 1), job_target(server, body_size_limit=f"{size}B")
    manager = manager_for(small, metrics=metrics)
    [failed] = scrape_pages(manager, small, server, [GOOD_PAGE])
    assert by_name(failed)["up"].value == 0 and failures(metrics, "job", "body_size_limit") == 1
    assert "body size limit exceeded" in manager.health[small].last_error
    [ok] = scrape_pages(manager_for(fits), fits, server, [GOOD_PAGE])
    assert by_name(ok)["up"].value == 1 and by_name(ok)["worker_pool_size"].value == 8


def test_body_size_limit_takes_prometheus_sizes():
    job = ScrapeConfig.model_validate({"job_name": "j", "body_size_limit": "10MB"})
    assert job.body_size_limit == 10 * 1024 * 1024
    with pytest.raises(ValueError, match="not like 512KB"):
        ScrapeConfig.model_validate({"job_name": "j", "body_size_limit": "ten megs"})
    with pytest.raises(ValueError):
        ScrapeConfig.model_validate({"job_name": "j", "sample_limit": -1})


# -- formats: OpenMetrics negotiation, gzip ----------------------------------------------------------------


def test_openmetrics_answer_is_parsed_as_openmetrics(servers):
    server = servers()
    server.openmetrics_page = OPENMETRICS_PAGE
    target = job_target(server)
    [samples] = scrape_pages(manager_for(target), target, server, [GOOD_PAGE])
    page = [(s.name, s.value) for s in samples if s.name not in SYNTHETIC]
    assert page == [("http_requests_total", 10.0), ("http_requests_created", 1700000000.5)]


def test_scrape_protocols_text_only_does_not_ask_for_openmetrics(servers):
    server = servers()
    server.openmetrics_page = OPENMETRICS_PAGE
    target = job_target(server, scrape_protocols=["PrometheusText0.0.4"])
    [samples] = scrape_pages(manager_for(target), target, server, [GOOD_PAGE])
    assert server.requests[0]["Accept"] == "text/plain;version=0.0.4,*/*;q=0.1"
    assert len([s for s in samples if s.name not in SYNTHETIC]) == GOOD_PAGE_SAMPLES


def test_gzip_page_is_decoded(servers):
    server = servers()
    server.gzip = True
    target = job_target(server)
    [samples] = scrape_pages(manager_for(target), target, server, [GOOD_PAGE])
    assert by_name(samples)["up"].value == 1 and by_name(samples)["worker_pool_size"].value == 8


def test_https_target_is_checked_against_tls_config(tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    server = Server(tls=(cert, key))
    try:
        trusted = job_target(server, scheme="https", tls_config={"ca_file": str(ca)})
        untrusted = job_target(server, scheme="https")
        assert trusted.url.startswith("https://")
        [ok] = scrape_pages(manager_for(trusted), trusted, server, [GOOD_PAGE])
        manager = manager_for(untrusted)
        [refused] = scrape_pages(manager, untrusted, server, [GOOD_PAGE])
    finally:
        server.close()
    assert by_name(ok)["up"].value == 1 and by_name(ok)["worker_pool_size"].value == 8
    assert by_name(refused)["up"].value == 0 and "CERTIFICATE_VERIFY_FAILED" in manager.health[untrusted].last_error


# -- the loop: many targets, target changes ---------------------------------------------------------------


def run_for(manager: ScrapeManager, seconds: float, during=None) -> None:
    async def go():
        task = asyncio.create_task(manager.run())
        if during is not None:
            await during()
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())


def test_run_keeps_scraping_good_target_while_others_fail(servers):
    kinds = ["good", "down", "malformed", "http500", "slow"]
    targets = [make_target(k, servers) for k in kinds]
    append, metrics = Collector(), ScrapeMetrics()
    manager = ScrapeManager(targets, append, interval_seconds=0.5, metrics=metrics)  # timeout = min(10, 0.5)
    run_for(manager, 2.5)

    good_up = [s.value for s in append.samples("up", "good")]
    assert len(good_up) >= 4 and set(good_up) == {1.0}  # one scrape per 0.5 s slot
    for kind in kinds[1:]:
        ups = [s.value for s in append.samples("up", kind)]
        assert len(ups) >= 2 and set(ups) == {0.0}, kind
        assert manager.health[targets[kinds.index(kind)]].health == "down"
    assert manager.health[targets[0]].health == "up"
    assert failures(metrics, "down", "fetch") >= 2
    assert failures(metrics, "malformed", "parse") >= 2
    assert not manager._clients  # cancelling run() wrote the queue and closed the HTTP clients


def test_targets_set_their_own_interval(servers):
    fast, slow = servers(), servers()
    job = ScrapeConfig.model_validate({"job_name": "j", "scrape_interval": "1s"})
    targets = [build_target({"__address__": fast.address, "__scrape_interval__": "200ms",
                                 "__scrape_timeout__": "150ms"}, job.with_defaults(1, 1)),
               build_target({"__address__": slow.address}, job.with_defaults(1, 1))]
    append = Collector()
    run_for(ScrapeManager(targets, append, interval_seconds=5), 2.1)
    ups = {s.labels["instance"]: 0 for s in append.samples("up")}
    for s in append.samples("up"):
        ups[s.labels["instance"]] += 1
    assert ups[fast.address] >= 8 and 1 <= ups[slow.address] <= 3, ups


def test_sync_starts_new_targets_and_retires_old_ones_with_staleness_markers(servers):
    a, b = servers(), servers()
    ta, tb = Target("j", a.url), Target("j", b.url)
    append = Collector()
    manager = ScrapeManager([], append, interval_seconds=0.2, clock=time.time)

    async def during():
        await manager.sync([ta])
        await asyncio.sleep(0.7)
        await manager.sync([tb])  # a goes, b comes

    run_for(manager, 0.7, during)
    a_samples = [s for batch in append.batches for s in batch if s.labels.get("instance") == a.address]
    b_samples = [s for batch in append.batches for s in batch if s.labels.get("instance") == b.address]
    last_a = max(s.timestamp_ms for s in a_samples)
    final = [s for s in a_samples if s.timestamp_ms == last_a]
    # a's last write: a staleness marker for every series it had, synthetic ones included
    assert {s.name for s in final} == {"http_requests_total", "worker_pool_size", *SYNTHETIC}
    assert all(is_stale_nan(s.value) for s in final) and len(final) == GOOD_PAGE_SAMPLES + len(SYNTHETIC)
    assert [s.value for s in b_samples if s.name == "up"][:2] == [1.0, 1.0]
    assert set(manager.health) == {tb}


# -- backpressure -----------------------------------------------------------------------------------------


class SlowStore:
    """An ``append`` that blocks until released, like a store stuck on a disk or a network."""

    def __init__(self):
        self.release = threading.Event()
        self.collector = Collector()

    def __call__(self, samples):
        self.release.wait(10)
        return self.collector(samples)


def test_slow_store_delays_no_scrape_and_drops_oldest_counted(servers):
    targets = [Target(f"t{i}", servers().url) for i in range(3)]
    store, metrics = SlowStore(), ScrapeMetrics()
    capacity = 3 * (GOOD_PAGE_SAMPLES + len(SYNTHETIC))  # room for one round of scrapes
    manager = ScrapeManager(targets, store, interval_seconds=0.1, metrics=metrics, queue_capacity_samples=capacity)
    depth = []

    async def during():
        for _ in range(15):
            await asyncio.sleep(0.1)
            depth.append(len(manager.queue))
        store.release.set()

    run_for(manager, 0.3, during)
    for target in targets:  # every target kept scraping (~18 slots of 0.1 s) while the store hung for 1.5 s
        scrapes = metrics.registry.get_sample_value("opswatch_scrape_duration_seconds_count", {"job": target.job})
        assert scrapes >= 8, (target.job, scrapes)  # loose: the machine is shared; blocked would be 1
    assert max(depth) <= capacity  # bounded
    lost = sum(dropped(metrics, t.job, "queue_full") or 0 for t in targets)
    assert lost > 0 and lost % (GOOD_PAGE_SAMPLES + len(SYNTHETIC)) == 0  # whole scrapes, oldest first
    written = [s for b in store.collector.batches for s in b]
    appended = metrics.registry.get_sample_value("opswatch_samples_appended_total")
    produced = sum(metrics.registry.get_sample_value("opswatch_scrape_duration_seconds_count", {"job": t.job})
                   for t in targets) * (GOOD_PAGE_SAMPLES + len(SYNTHETIC))
    assert appended == len(written) and appended + lost == produced  # every sample stored or counted


def test_store_errors_are_counted_as_dropped_and_scraping_goes_on(servers):
    target = Target("j", servers().url)

    def broken(samples):
        raise StorageError("disk full")

    metrics = ScrapeMetrics()
    run_for(ScrapeManager([target], broken, interval_seconds=0.1, metrics=metrics), 1.0)
    scrapes = metrics.registry.get_sample_value("opswatch_scrape_duration_seconds_count", {"job": "j"})
    assert scrapes >= 3  # it went on after the first failed append (10 on time; fewer on a loaded machine)
    assert dropped(metrics, "j", "store_error") == scrapes * (GOOD_PAGE_SAMPLES + len(SYNTHETIC))


def test_slow_targets_do_not_delay_a_good_one(servers):
    good = Target("good", servers().url)
    hanging = [Target("slow", servers("slow", delay_seconds=5).url) for _ in range(120)]  # > any pool's default
    append = Collector()
    manager = ScrapeManager([good, *hanging], append, interval_seconds=0.5, timeout_seconds=0.45, clock=time.time)
    run_for(manager, 3.0)
    ups = append.samples("up", "good")
    # the k-th scrape on its 500 ms schedule (up to 350 ms late on a shared machine: a late scrape is
    # followed by one on time, so slots are checked, not gaps), never held up by the 5 s hangs
    late_ms = [s.timestamp_ms - ups[0].timestamp_ms - 500 * k for k, s in enumerate(ups)]
    assert len(ups) >= 4 and all(-50 <= d <= 350 for d in late_ms), late_ms
    assert [s.value for s in ups].count(1.0) >= len(ups) - 1, manager.health[good]
    assert {s.value for s in append.samples("up", "slow")} == {0.0}


def test_queue_unit_drop_oldest_and_oversized():
    from collectors.append_queue import AppendQueue

    got = Collector()
    queue = AppendQueue(got, capacity_samples=4)
    batch = lambda n, v: [Sample("m", {}, 0, float(v))] * n  # noqa: E731
    queue.submit("a", batch(2, 1))
    queue.submit("b", batch(2, 2))
    queue.submit("c", batch(3, 3))  # does not fit: both older scrapes go
    queue.submit("d", batch(5, 4))  # larger than the queue: dropped itself
    asyncio.run(queue.drain())
    assert [s.value for b in got.batches for s in b] == [3.0, 3.0, 3.0]
    value = lambda job: queue.dropped.labels(job, "queue_full")._value.get()  # noqa: E731
    assert (value("a"), value("b"), value("c"), value("d")) == (2, 2, 0, 5)


# -- the columnar path into a real store --------------------------------------------------------------------


def test_scrapes_stored_as_columns_equal_scrapes_stored_as_samples(servers, tmp_path):
    """The same pages scraped into two SQLite stores, one through ``append_columns`` (pages laid out as the
    last one go as columns) and one through ``append`` (samples): both hold the same samples, staleness
    markers bit for bit included."""
    from collectors.samples import ColumnBatch
    from storage.sqlite import SQLiteStore

    server = servers()
    target = job_target(server)
    columns_store, samples_store = SQLiteStore(tmp_path / "c.db"), SQLiteStore(tmp_path / "s.db")
    clock = iter(NOW + k for k in range(20))
    now = [NOW]

    def tick():
        now[0] = next(clock)
        return now[0]

    columnar = manager_for(target, columns_store.append, clock=tick, append_columns=columns_store.append_columns)
    plain = manager_for(target, samples_store.append, clock=lambda: now[0])
    pages = [GOOD_PAGE, GOOD_PAGE.replace(" 10\n", " 11\n"),
             GOOD_PAGE.replace(" 2\n", " 0\n").replace(" 8\n", " 9.5\n"),
             GOOD_PAGE.replace('http_requests_total{code="500"} 2\n', ""),  # a series leaves: staleness marker
             None, GOOD_PAGE, GOOD_PAGE.replace(" 8\n", " NaN\n")]  # a failed scrape, then back

    async def go():
        kinds = []
        for page in pages:
            server.status, server.page = (500, "down\n") if page is None else (200, page)
            batch = await columnar.scrape(target)
            kinds.append(any(isinstance(p, ColumnBatch) for p in batch.parts))
            await plain.scrape(target)
        await columnar.close()
        await plain.close()
        return kinds

    try:
        kinds = asyncio.run(go())
        assert kinds == [False, True, True, False, False, False, True]  # unchanged layout: columns
        def contents(store):  # scrape_duration_seconds is measured, so only its timestamps can agree
            return {n: [(dict(s.labels), s.values.index.asi8.tolist(),
                         [struct.pack(">d", v) for v in s.values] if n != "scrape_duration_seconds" else None)
                        for s in store.select(n)] for n in ["http_requests_total", "worker_pool_size", *SYNTHETIC]}

        assert contents(columns_store) == contents(samples_store)
        [pool] = columns_store.select("worker_pool_size")
        assert pool.values.iloc[2] == 9.5 and len(pool.values) == len(pages) and is_stale_nan(pool.values.iloc[4])
    finally:
        columns_store.close()
        samples_store.close()


def test_queue_hands_parts_to_append_columns():
    import numpy as np

    from collectors.append_queue import AppendQueue
    from collectors.samples import ColumnBatch, SampleBatch, SeriesRefs

    got, plain = [], Collector()
    queue = AppendQueue(plain, capacity_samples=10, append_columns=lambda parts: got.append(parts) or 3)
    column = ColumnBatch(SeriesRefs.of([("a", {}), ("b", {})]), 1, np.array([1.0, 2.0]))
    queue.submit("j", SampleBatch([column, [Sample("up", {}, 1, 1.0)]]))
    asyncio.run(queue.drain())
    assert plain.batches == [] and len(got) == 1 and got[0][0] is column and got[0][1] == [Sample("up", {}, 1, 1.0)]
    assert queue.appended._value.get() == 3
