"""The remote store (storage/remote.py) against a real VictoriaMetrics and a real Prometheus with its
remote-write receiver, both started on loopback in temp dirs: what it writes reads back exactly as the
SQLite store answers, the evaluation pipeline runs on it unchanged, failures are retried, queued within
a bound, counted, and raised as StorageError."""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import cramjam
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from collectors.samples import Sample, labels_key
from opswatch.config import load_config
from opswatch.errors import StorageError
from opswatch.pipeline import Pipeline
from storage.matchers import Matcher
from storage.prompb import WriteRequest
from storage.remote import RemoteStore
from storage.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.integration.test_run_real_exporters import binary, wait_http
from tests.unit.test_pipeline import FakeService

pytestmark = pytest.mark.integration

MINUTE = 60_000


def start_victoria_metrics(spawn, data_dir: Path, port: int | None = None) -> str:
    """A VictoriaMetrics on loopback; returns its root URL. ``-search.latencyOffset=0s`` makes samples of
    the last minute visible to range queries as they are (see README, Storage)."""
    port = port or free_port()
    with open(data_dir.parent / f"vm-{port}.log", "w") as log:
        spawn([binary("victoria-metrics"), f"-storageDataPath={data_dir}", f"-httpListenAddr=127.0.0.1:{port}",
               "-retentionPeriod=100y", "-search.latencyOffset=0s"], stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/health")
    return f"http://127.0.0.1:{port}"


def start_prometheus_receiver(spawn, tmp_path: Path) -> str:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\nscrape_configs: []\n")
    with open(tmp_path / "prometheus.log", "w") as log:
        spawn([binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
              stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/-/ready")
    return f"http://127.0.0.1:{port}"


@pytest.fixture(params=["victoria-metrics", "prometheus"])
def remote(request, spawn, tmp_path):
    url = (start_victoria_metrics(spawn, tmp_path / "vm") if request.param == "victoria-metrics"
           else start_prometheus_receiver(spawn, tmp_path))
    store = RemoteStore(f"{url}/api/v1/write", url, timeout_seconds=10)
    yield store
    store.close()


def wait_visible(store, name: str, count: int, start_ms: int, end_ms: int, deadline_s: float = 30) -> None:
    """VictoriaMetrics shows new samples after a few seconds; poll (bounded) until all ``count`` are there."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if sum(len(ts.values) for ts in store.select(name, None, start_ms, end_ms)) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"{count} samples of {name} not visible within {deadline_s}s")


def as_points(result) -> dict[str, list]:
    return {labels_key(ts.labels): list(zip(ts.values.index.as_unit("ms").asi8.tolist(), ts.values.tolist()))
            for ts in result}


def test_the_write_request_follows_remote_write_1_0():
    body = RemoteStore.encode([
        Sample("http_requests_total", {"job": "feed", "code": "500", "empty": ""}, 2000, 7.0),
        Sample("http_requests_total", {"code": "500", "job": "feed"}, 1000, 5.0),  # same series, earlier
        Sample("up", {"job": "feed"}, 1000, 1.0),
    ])
    request = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))  # snappy *block* format
    series = {tuple((l.name, l.value) for l in ts.labels): [(s.timestamp, s.value) for s in ts.samples]
              for ts in request.timeseries}
    assert series == {
        # labels sorted by name, __name__ included, empty values left out; samples in timestamp order
        (("__name__", "http_requests_total"), ("code", "500"), ("job", "feed")): [(1000, 5.0), (2000, 7.0)],
        (("__name__", "up"), ("job", "feed")): [(1000, 1.0)],
    }


ODD = 'a "quoted" \\ value\nwith a newline'  # PromQL string escaping in the selectors


def sample_set(t0: int) -> list[Sample]:
    """20 minutes of 15 s samples of 5 series; values exactly representable in VictoriaMetrics."""
    labels = [{"job": "feed", "code": "200"}, {"job": "feed", "code": "500"}, {"job": "gift", "code": "503"},
              {"job": "gift", "path": ODD}, {"job": "gift"}]
    return [Sample("http_requests_total", l, t0 + k * 15_000, float(i * 1000 + k * 3) + 0.25)
            for k in range(80) for i, l in enumerate(labels)]


def test_selects_read_back_what_the_sqlite_store_answers(remote, tmp_path):
    t0 = (int(time.time() * 1000) - 30 * MINUTE) // (5 * MINUTE) * 5 * MINUTE + 1234
    samples = sample_set(t0)
    local = SQLiteStore(tmp_path / "local.db", clock=lambda: t0 / 1000)
    try:
        local.append(samples)
        assert remote.append(samples) == len(samples)
        end = t0 + 20 * MINUTE
        wait_visible(remote, "http_requests_total", len(samples), t0, end)
        for matchers in (None, {"job": "feed"}, [Matcher("code", "=~", "5..")], [Matcher("code", "!~", "5..")],
                         [Matcher("code", "!=", "200"), Matcher("job", "=", "gift")], {"path": ODD},
                         [Matcher("job", "=", "nope")]):
            for lo, hi in ((t0, end), (t0 + 15_000, t0 + 45_000), (t0 + 1, t0 + 14_999), (t0 + 30_000, t0 + 30_000)):
                assert as_points(remote.select("http_requests_total", matchers, lo, hi)) == \
                    as_points(local.select("http_requests_total", matchers, lo, hi)), (matchers, lo, hi)
        for step in (5 * MINUTE, 15 * MINUTE, 7 * MINUTE):
            got = {labels_key(ts.labels): ts.rollup for ts in remote.select("http_requests_total", None, t0, end, step)}
            want = {labels_key(ts.labels): ts.rollup for ts in local.select("http_requests_total", None, t0, end, step)}
            assert got.keys() == want.keys()
            for key in want:
                assert got[key].index.equals(want[key].index), (step, key)
                assert np.allclose(got[key][["min", "max", "avg"]], want[key][["min", "max", "avg"]], rtol=1e-12)
                assert got[key]["count"].tolist() == want[key]["count"].tolist()
        key = lambda d: sorted(d.items())  # noqa: E731
        assert sorted(remote.series("http_requests_total", {"job": "gift"}), key=key) == \
            sorted(local.series("http_requests_total", {"job": "gift"}), key=key)
    finally:
        local.close()


def test_the_evaluation_pipeline_runs_unchanged_on_victoria_metrics(spawn, tmp_path):
    url = start_victoria_metrics(spawn, tmp_path / "vm")
    overrides = dict(scrape_interval="1s", rate_window="10s")
    now_s = time.time() // 60 * 60 - 300  # five minutes ago, on a minute
    on_vm = Pipeline(load_config(None, data_dir=str(tmp_path / "a"), **overrides,
                                 storage={"backend": "remote", "remote": {"url": f"{url}/api/v1/write",
                                                                        "query_url": url}}),
                     targets=[], clock=lambda: now_s)
    on_sqlite = Pipeline(load_config(None, data_dir=str(tmp_path / "b"), **overrides), targets=[], clock=lambda: now_s)
    try:
        assert isinstance(on_vm.store, RemoteStore)
        rng = np.random.default_rng(3)
        services = [FakeService("gateway", 40, rng), FakeService("gift", 10, rng)]
        t0 = int(now_s * 1000)
        written = []
        for second in range(40):
            batch = [s for svc in services for s in svc.step(t0 + second * 1000, 0.3 if svc.job == "gift" else 0.0)]
            on_vm.store.append(batch)
            on_sqlite.store.append(batch)
            written += batch
        wait_visible(on_vm.store, "up", 80, t0, t0 + 40_000)
        wait_visible(on_vm.store, "http_request_duration_seconds_bucket", 2 * 9 * 40, t0, t0 + 40_000)
        for second in (15, 25, 39):
            on_vm.evaluate(t0 + second * 1000)
            on_sqlite.evaluate(t0 + second * 1000)
            vm, lite = on_vm.snapshot.signals, on_sqlite.snapshot.signals
            assert vm.keys() == lite.keys() == {"gateway", "gift"}
            for job in lite:
                for signal, value in lite[job].items():
                    assert (math.isnan(value) and math.isnan(vm[job][signal])) or \
                        math.isclose(vm[job][signal], value, rel_tol=1e-9), (second, job, signal)
            assert lite["gift"]["error_ratio"] > 0.1 and lite["gateway"]["request_rate"] > 20
    finally:
        on_vm.close()
        on_sqlite.close()


def test_an_unreachable_remote_is_retried_queued_within_bounds_counted_and_caught_up(spawn, tmp_path):
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}"
    delays: list[float] = []
    registry = CollectorRegistry()
    store = RemoteStore(f"{url}/api/v1/write", url, timeout_seconds=5, max_samples_per_send=40, capacity=150,
                        max_retries=2, backoff_seconds=0.5, registry=registry, sleep=delays.append)
    t0 = int(time.time() * 1000) - 10 * MINUTE
    batches = [[Sample("queued_total", {"i": str(n)}, t0 + n * 1000, float(n))] for n in range(210)]
    metric = lambda name: registry.get_sample_value(name)  # noqa: E731
    try:
        with pytest.raises(StorageError) as info:
            store.append([s for b in batches[:100] for s in b])
        assert url in str(info.value) and "100 samples wait" in str(info.value)
        assert delays == [0.5, 1.0]  # exponential backoff between the retries of the first request
        assert metric("opswatch_remote_storage_samples_retried_total") == 2 * 40
        assert metric("opswatch_remote_storage_samples_pending") == 100
        with pytest.raises(StorageError) as info:
            store.append([s for b in batches[100:200] for s in b])  # 200 > capacity 150: the 50 oldest go
        assert "50 oldest dropped" in str(info.value)
        assert metric("opswatch_remote_storage_samples_dropped_total") == 50
        assert metric("opswatch_remote_storage_samples_pending") == 150

        start_victoria_metrics(spawn, tmp_path / "vm", port)  # the remote comes up
        assert store.append([s for b in batches[200:] for s in b]) == 150  # 10 more dropped, 150 sent in order
        assert metric("opswatch_remote_storage_samples_dropped_total") == 60
        assert metric("opswatch_remote_storage_samples_total") == 150
        assert metric("opswatch_remote_storage_samples_pending") == 0
        deadline = time.monotonic() + 30
        while len(stored := store.series("queued_total")) < 150 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert sorted(int(s["i"]) for s in stored) == list(range(60, 210))  # the newest 150, none of the oldest
    finally:
        store.close()


def test_a_refused_write_is_not_retried_and_is_counted_as_failed(spawn, tmp_path):
    url = start_prometheus_receiver(spawn, tmp_path)
    registry = CollectorRegistry()
    store = RemoteStore(f"{url}/api/v1/write", url, registry=registry, sleep=lambda s: pytest.fail("no retry of a 4xx"))
    now = int(time.time() * 1000)
    try:
        assert store.append([Sample("ooo", {}, now, 1.0)]) == 1
        with pytest.raises(StorageError) as info:  # Prometheus refuses an out-of-order sample with a 400
            store.append([Sample("ooo", {}, now - 1000, 2.0)])
        assert "refused 1 samples" in str(info.value) and "400" in str(info.value)
        assert registry.get_sample_value("opswatch_remote_storage_samples_failed_total") == 1
        assert registry.get_sample_value("opswatch_remote_storage_samples_pending") == 0
        assert store.append([Sample("ooo", {}, now + 1000, 3.0)]) == 1  # and the store goes on
    finally:
        store.close()
