"""Golden signals per job from raw series in a real SQLite store: detection/signals.py."""

from __future__ import annotations

import math

import pytest

from collectors.samples import Sample
from detection.signals import MIN_COVERAGE, SIGNALS, compute_golden_signals
from storage.sqlite import SQLiteStore

START = 1_700_000_000_000  # window start, ms
WINDOW_S = 30
NOW = START + WINDOW_S * 1000
STEPS = range(0, WINDOW_S + 1, 5)  # a scrape every 5 s: t = 0, 5, ..., 30 s


def linear(name: str, labels: dict, per_second: float, start_value: float = 0.0) -> list[Sample]:
    """A counter growing by ``per_second`` from ``start_value``, sampled every 5 s over the window."""
    return [Sample(name, labels, START + t * 1000, start_value + per_second * t) for t in STEPS]


def constant(name: str, labels: dict, value: float) -> list[Sample]:
    return [Sample(name, labels, START + t * 1000, value) for t in STEPS]


FEED = {"job": "feed", "instance": "feed:9100"}
GIFT = {"job": "gift", "instance": "gift:9100"}
NEW = {"job": "new", "instance": "new:9100"}


def feed_samples() -> list[Sample]:
    out = []
    # requests: 10/s ok, 1/s 500, 2/s 404 -> request_rate 13, error_ratio 1/13 (a 404 is not an error)
    out += linear("http_requests_total", {**FEED, "code": "200"}, 10, start_value=1000)
    out += linear("http_requests_total", {**FEED, "code": "500"}, 1)
    out += linear("http_requests_total", {**FEED, "code": "404"}, 2)
    # a sample before the window must not count (it would look like a huge reset)
    out.append(Sample("http_requests_total", {**FEED, "code": "200"}, START - 10_000, 1e9))
    # latency buckets, rates per le: 5, 10, 12, 12.9, 13 req/s
    for le, r in [("0.1", 5), ("0.25", 10), ("0.5", 12), ("1", 12.9), ("+Inf", 13)]:
        out += linear("http_request_duration_seconds_bucket", {**FEED, "le": le}, r)
    # 2 busy worker-seconds per second on a pool of 8
    out += linear("worker_busy_seconds_total", FEED, 2)
    out += constant("worker_pool_size", FEED, 8)
    out += constant("up", FEED, 1)
    return out


def gift_samples() -> list[Sample]:
    out = []
    # 200s: the process restarted at t=15 s: 100, 115, 130, then 15, 30, 45, 60 -> +15 every 5 s = 3/s
    values = [100, 115, 130, 15, 30, 45, 60]
    out += [Sample("http_requests_total", {**GIFT, "code": "200"}, START + t * 1000, v) for t, v in zip(STEPS, values)]
    out += linear("http_requests_total", {**GIFT, "code": "503"}, 1)  # 1/s of 4/s fail
    for le, r in [("0.05", 2), ("0.1", 4), ("+Inf", 4)]:
        out += linear("http_request_duration_seconds_bucket", {**GIFT, "le": le}, r)
    # 5 busy seconds per second on a pool of 4: over 1, capped at 1
    out += linear("worker_busy_seconds_total", GIFT, 5)
    out += constant("worker_pool_size", GIFT, 4)
    out += constant("up", GIFT, 1)[:-1] + [Sample("up", GIFT, NOW, 0.0)]  # the last scrape failed
    return out


def new_samples() -> list[Sample]:
    # a target scraped only for the last 5 s of the window: too short for any rate
    out = [Sample("up", NEW, NOW - 5000, 1.0), Sample("up", NEW, NOW, 1.0)]
    out += [Sample("http_requests_total", {**NEW, "code": "200"}, NOW - 5000, 0.0),
            Sample("http_requests_total", {**NEW, "code": "200"}, NOW, 50.0)]
    out += [Sample("worker_busy_seconds_total", NEW, NOW - 5000, 0.0), Sample("worker_busy_seconds_total", NEW, NOW, 1.0)]
    out += [Sample("worker_pool_size", NEW, NOW, 2.0)]
    return out


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "signals.db")
    s.append(feed_samples() + gift_samples() + new_samples())
    yield s
    s.close()


def test_golden_signals_for_two_jobs(store):
    got = compute_golden_signals(store, NOW, WINDOW_S)
    assert set(got) == {"feed", "gift", "new"}

    feed = got["feed"]
    assert feed["request_rate"] == pytest.approx(13.0)
    assert feed["error_ratio"] == pytest.approx(1 / 13)
    # rank 0.99 * 13 = 12.87 falls in (0.5, 1]: 0.5 + 0.5 * (12.87 - 12) / (12.9 - 12)
    assert feed["latency_p99_seconds"] == pytest.approx(0.5 + 0.5 * 0.87 / 0.9)
    assert feed["saturation_ratio"] == pytest.approx(2 / 8)
    assert feed["up"] == 1.0

    gift = got["gift"]
    assert gift["request_rate"] == pytest.approx(4.0)  # 3/s across the restart + 1/s of 503
    assert gift["error_ratio"] == pytest.approx(0.25)
    # rank 0.99 * 4 = 3.96 in (0.05, 0.1]: 0.05 + 0.05 * (3.96 - 2) / 2
    assert gift["latency_p99_seconds"] == pytest.approx(0.099)
    assert gift["saturation_ratio"] == 1.0  # 5 / 4 capped
    assert gift["up"] == 0.0  # the last up sample

    new = got["new"]
    assert new["up"] == 1.0
    for signal in ("request_rate", "error_ratio", "latency_p99_seconds", "saturation_ratio"):
        assert math.isnan(new[signal]), signal  # 5 s of a 30 s window is below MIN_COVERAGE


def test_every_job_has_every_signal(store):
    got = compute_golden_signals(store, NOW, WINDOW_S)
    assert all(list(values) == list(SIGNALS) for values in got.values())


def test_job_without_traffic_has_nan_rates_but_up(tmp_path):
    store = SQLiteStore(tmp_path / "idle.db")
    try:
        store.append(constant("up", FEED, 1) + linear("http_requests_total", {**FEED, "code": "200"}, 0))
        feed = compute_golden_signals(store, NOW, WINDOW_S)["feed"]
        assert feed["up"] == 1.0 and feed["request_rate"] == 0.0
        assert math.isnan(feed["error_ratio"])  # 0 / 0 requests: no ratio
        assert math.isnan(feed["latency_p99_seconds"]) and math.isnan(feed["saturation_ratio"])
    finally:
        store.close()


@pytest.mark.parametrize(
    "span_ms, covered",
    [
        (int(MIN_COVERAGE * WINDOW_S * 1000), True),  # exactly 75 % of the window (22.5 s) counts
        (int(MIN_COVERAGE * WINDOW_S * 1000) - 1, False),  # 1 ms less does not
        (WINDOW_S * 1000, True),  # the whole window
        (5_000, False),  # a target scraped for 5 s
    ],
)
def test_min_coverage(tmp_path, span_ms, covered):
    store = SQLiteStore(tmp_path / "cov.db")
    try:
        # the target's `up` says how long it has been scraped; its counter runs at 6 req/s from 1000
        store.append([
            Sample("up", FEED, NOW - span_ms, 1.0), Sample("up", FEED, NOW, 1.0),
            Sample("http_requests_total", {**FEED, "code": "200"}, NOW - span_ms, 1000.0),
            Sample("http_requests_total", {**FEED, "code": "200"}, NOW, 1000 + span_ms / 1000 * 6),
        ])
        rate = compute_golden_signals(store, NOW, WINDOW_S)["feed"]["request_rate"]
        if covered:
            assert rate == pytest.approx(6.0)  # extrapolated to the whole window, as Prometheus's rate()
        else:
            assert math.isnan(rate)
    finally:
        store.close()


def test_a_series_that_appears_in_a_warm_target_counts_at_once(tmp_path):
    """The first 5xx of a fault: the ``code="500"`` series is 5 s old in a target scraped all window."""
    store = SQLiteStore(tmp_path / "new.db")
    try:
        store.append([Sample("up", FEED, START + t * 1000, 1.0) for t in STEPS]
                     + linear("http_requests_total", {**FEED, "code": "200"}, 10, start_value=1000)
                     + [Sample("http_requests_total", {**FEED, "code": "500"}, NOW - 5000, 1.0),
                        Sample("http_requests_total", {**FEED, "code": "500"}, NOW, 26.0)])  # 5/s for 5 s
        feed = compute_golden_signals(store, NOW, WINDOW_S)["feed"]
        # Prometheus: the new series' increase (25, plus half an interval back, not below zero: 26) over 30 s
        errors = feed["error_ratio"] * feed["request_rate"]
        assert errors == pytest.approx(26 / 30, rel=0.01)
        assert feed["error_ratio"] > 0.05
    finally:
        store.close()


def test_evaluation_later_in_time_only_sees_its_window(store):
    # 20 s later the window [20 s, 50 s] holds only t = 20, 25, 30: a 10 s span, under coverage
    later = compute_golden_signals(store, NOW + 20_000, WINDOW_S)
    assert later["feed"]["up"] == 1.0
    assert math.isnan(later["feed"]["request_rate"])
    # and with a window short enough, the same samples are enough again: 13 req/s over [20 s, 30 s]
    short = compute_golden_signals(store, NOW, 10)
    assert short["feed"]["request_rate"] == pytest.approx(13.0)
