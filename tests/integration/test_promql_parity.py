"""Parity of OpsWatch's PromQL engine (storage/promql.py) with a real Prometheus on the same data.

A fixed set of series (counters with a reset, gauges, a series ended by a staleness marker, a series that
simply stops, a histogram, several jobs and instances) is written into an OpsWatch SQLite store and, through
the remote-write protocol (storage/remote.py), into a real Prometheus started for the test. Each query is
then evaluated at several times by both — Prometheus through ``/api/v1/query`` — and the results must be the
same series with the same values (relative tolerance 1e-9).
"""

from __future__ import annotations

import math
import subprocess
import time

import numpy as np
import pytest

from collectors.samples import STALE_NAN, Sample
from storage.promql import Engine, InstantSample
from storage.remote import RemoteStore
from storage.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.integration.test_prometheus_api_source import prom_api
from tests.integration.test_run_real_exporters import binary, wait_http

pytestmark = pytest.mark.integration

STEP_MS = 15_000
POINTS = 160  # 40 minutes at 15 s
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")

QUERIES = [
    "http_requests_total",
    'http_requests_total{job="api"}',
    'http_requests_total{code!="200"}',
    'http_requests_total{code=~"5.."}',
    'http_requests_total{code!~"2..", job="db"}',
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "irate(http_requests_total[2m])",
    "increase(http_requests_total[10m])",
    "rate(http_requests_total[5m] offset 3m)",
    "http_requests_total offset 7m",
    "delta(temperature_celsius[5m])",
    "avg_over_time(temperature_celsius[10m])",
    "min_over_time(temperature_celsius[4m])",
    "max_over_time(temperature_celsius[4m])",
    "sum_over_time(temperature_celsius[3m])",
    "count_over_time(temperature_celsius[7m])",
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "avg by (instance) (temperature_celsius)",
    "max without (instance) (temperature_celsius)",
    "min by (job) (temperature_celsius)",
    "count by (code) (http_requests_total)",
    "sum without (code, instance) (increase(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))",
    "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
    'sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m]))',
    "temperature_celsius > 20",
    "temperature_celsius >= bool 20",
    "30 < temperature_celsius",
    "temperature_celsius * 1.8 + 32",
    "-temperature_celsius",
    "2 ^ (temperature_celsius / 10)",
    "temperature_celsius % 7",
    "temperature_celsius - on (instance, job) temperature_celsius offset 1m",
    "sum by (job) (temperature_celsius) / ignoring (instance) max by (job) (temperature_celsius)",
    "temperature_celsius > on (job, instance) (temperature_celsius offset 5m)",
    "max by (job) (temperature_celsius) != bool on (job) min by (job) (temperature_celsius)",
    "sum(rate(http_requests_total[5m])) > bool 1",
    "http_requests_total and on (job) temperature_celsius",
    "temperature_celsius unless on (instance) http_requests_total",
    "1 + 2 * 3",
    "scalar(sum(temperature_celsius)) / 2",
]


def build_samples(t0: int) -> list[Sample]:
    """The fixed data set, in time order; every value is a deterministic function of a seeded generator."""
    rng = np.random.default_rng(7)
    out: list[Sample] = []
    counters = {(job, inst, code): 0.0 for job in ("api", "db") for inst in ("a:1", "b:1") for code in ("200", "500")}
    buckets = {job: {le: 0.0 for le in BUCKETS} for job in ("api", "db")}
    sums = {job: 0.0 for job in ("api", "db")}
    for i in range(POINTS):
        ts = t0 + i * STEP_MS
        for (job, inst, code), value in counters.items():
            value += rng.uniform(0, 50 if code == "200" else 3)
            if (job, inst, code) == ("api", "a:1", "200") and i == 90:
                value = rng.uniform(0, 5)  # a counter reset (restarted process)
            counters[(job, inst, code)] = value
            out.append(Sample("http_requests_total", {"job": job, "instance": inst, "code": code}, ts, value))
        for job, inst in (("api", "a:1"), ("api", "b:1"), ("db", "a:1")):
            value = 20 + 10 * math.sin(i / 9 + len(inst + job)) + rng.normal(0, 1)
            out.append(Sample("temperature_celsius", {"job": job, "instance": inst}, ts, value))
        if i < 100:  # stops without a marker: visible for 5 minutes of lookback afterwards
            out.append(Sample("temperature_celsius", {"job": "db", "instance": "b:1"}, ts, 25 + rng.normal(0, 2)))
        if i < 120:
            out.append(Sample("temperature_celsius", {"job": "cache", "instance": "c:1"}, ts, 15 + rng.normal(0, 3)))
        elif i == 120:  # ended by a staleness marker: gone at once
            out.append(Sample("temperature_celsius", {"job": "cache", "instance": "c:1"}, ts, STALE_NAN))
        for job in ("api", "db"):
            n = int(rng.integers(5, 40))
            observations = rng.gamma(2.0, 0.1 if job == "api" else 0.2, n)
            sums[job] += float(observations.sum())
            for le in BUCKETS:
                buckets[job][le] += float((observations <= float(le)).sum())
                out.append(Sample("http_request_duration_seconds_bucket", {"job": job, "le": le}, ts,
                                  buckets[job][le]))
            out.append(Sample("http_request_duration_seconds_sum", {"job": job}, ts, sums[job]))
            out.append(Sample("http_request_duration_seconds_count", {"job": job}, ts, buckets[job]["+Inf"]))
    return out


def as_map(result) -> dict[tuple, float] | float:
    if isinstance(result, float):
        return result
    return {tuple(sorted(s.labels.items())): s.value for s in result}


def prometheus_map(data: dict) -> dict[tuple, float] | float:
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_queries_match_prometheus_value_for_value(spawn, tmp_path):
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
    with open(tmp_path / "prometheus.log", "w") as log:
        spawn([binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
               f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
               "--web.enable-remote-write-receiver"], stdout=log, stderr=subprocess.STDOUT)
    prom_url = f"http://127.0.0.1:{prom_port}"
    wait_http(f"{prom_url}/-/ready")

    # Recent data (Prometheus's head takes remote-written samples within about an hour of its newest).
    t0 = (int(time.time() * 1000) - 50 * 60_000) // STEP_MS * STEP_MS
    samples = build_samples(t0)
    store = SQLiteStore(tmp_path / "opswatch.db")
    store.append(samples)
    remote = RemoteStore(f"{prom_url}/api/v1/write", prom_url)
    assert remote.append(samples) == len(samples)
    remote.close()

    end = t0 + (POINTS - 1) * STEP_MS
    times = [t0 + 4 * 60_000, t0 + 12 * 60_000 + 7_500, t0 + 24 * 60_000 + 1, t0 + 30 * 60_000 + 3_000,
             end, end + 4 * 60_000, end + 6 * 60_000]
    engine = Engine(store)
    compared, mismatches = 0, []
    for query in QUERIES:
        for at in times:
            answer = prom_api(prom_url, "/api/v1/query", {"query": query, "time": f"{at / 1000:.3f}"})
            theirs, ours = prometheus_map(answer), as_map(engine.instant(query, at))
            compared += 1
            if isinstance(theirs, float):
                if not (isinstance(ours, float) and close(ours, theirs)):
                    mismatches.append(f"{query} @ {at - t0} ms: ours {ours}, Prometheus {theirs}")
                continue
            if not isinstance(ours, dict) or set(ours) != set(theirs):
                mismatches.append(f"{query} @ {at - t0} ms: series differ: ours {sorted(ours)} "
                                  f"Prometheus {sorted(theirs)}")
                continue
            bad = {k: (ours[k], theirs[k]) for k in ours if not close(ours[k], theirs[k])}
            if bad:
                mismatches.append(f"{query} @ {at - t0} ms: values differ (ours, Prometheus): {bad}")
    store.close()
    assert not mismatches, f"{len(mismatches)} of {compared} results differ:\n" + "\n".join(mismatches[:20])
    assert compared == len(QUERIES) * len(times)


def test_range_query_is_the_instant_query_at_each_step(tmp_path):
    store = SQLiteStore(tmp_path / "opswatch.db")
    t0 = 1_700_000_000_000
    store.append(build_samples(t0))
    engine = Engine(store)
    query = "sum by (job) (rate(http_requests_total[5m]))"
    start, step = t0 + 10 * 60_000, 60_000
    series = engine.range(query, start, start + 10 * step, step)
    assert sorted(s.labels["job"] for s in series) == ["api", "db"]
    for s in series:
        assert len(s.values) == 11
        for stamp, value in s.values.items():
            [instant] = [x for x in engine.instant(query, int(stamp.timestamp() * 1000))
                         if x.labels["job"] == s.labels["job"]]
            assert isinstance(instant, InstantSample) and instant.value == value
    store.close()
