"""The cache_hit_ratio and consumer_lag_seconds signals from raw series in a real SQLite store, and their policies
(detection/signals.py, detection/policy.py)."""

from __future__ import annotations

import math

import pytest

from collectors.samples import Sample
from detection.engine import DEFAULT_POLICIES, ScoringEngine
from detection.signals import CONSUMER_INFO, compute_golden_signals
from storage.sqlite import SQLiteStore
from topology.graph import Topology
from topology.rca import Evidence, rank_root_causes
from tests.unit.test_signals import FEED, NOW, START, STEPS, WINDOW_S, constant, linear

REDIS = {"job": "redis", "instance": "redis:6379"}
USER = {"job": "user", "instance": "user:9100"}
KAFKA = {"job": "kafka", "instance": "kafka:9308"}
NOTIFY = {"job": "notification", "instance": "notification:9100"}


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "signals.db")
    yield s
    s.close()


def test_cache_hit_ratio_of_redis_and_not_of_an_in_process_cache(store):
    store.append(
        constant("up", REDIS, 1) + constant("up", USER, 1) + constant("up", FEED, 1)
        # redis_exporter: 90 hits/s, 10 misses/s -> 0.9
        + linear("redis_keyspace_hits_total", REDIS, 90, start_value=5000)
        + linear("redis_keyspace_misses_total", REDIS, 10)
        # the user service's own cache counters are not redis_exporter's: not counted
        + linear("user_cache_requests_total", {**USER, "tier": "l1", "result": "hit"}, 3)
        + linear("user_cache_requests_total", {**USER, "tier": "l1", "result": "miss"}, 1)
        + linear("user_cache_requests_total", {**USER, "tier": "l2", "result": "miss"}, 100)
    )
    got = compute_golden_signals(store, NOW, WINDOW_S)
    assert got["redis"]["cache_hit_ratio"] == pytest.approx(0.9)
    assert math.isnan(got["user"]["cache_hit_ratio"]) and math.isnan(got["feed"]["cache_hit_ratio"])


def test_cache_outage_drops_the_ratio_and_an_idle_cache_has_none(store):
    hits = [Sample("redis_keyspace_hits_total", REDIS, START + t * 1000, 100.0) for t in STEPS]  # flat: outage
    store.append(constant("up", REDIS, 1) + hits + linear("redis_keyspace_misses_total", REDIS, 50))
    assert compute_golden_signals(store, NOW, WINDOW_S)["redis"]["cache_hit_ratio"] == 0.0
    idle = [Sample("redis_keyspace_misses_total", REDIS, START + t * 1000, 7.0) for t in STEPS]
    store.append([Sample(s.name, {**REDIS, "instance": "idle"}, s.timestamp_ms, s.value) for s in hits + idle]
                 + constant("up", {**REDIS, "instance": "idle"}, 1))
    # the idle instance adds no lookups: the job's ratio is still the busy one's
    assert compute_golden_signals(store, NOW, WINDOW_S)["redis"]["cache_hit_ratio"] == 0.0


def lag(group: str, values: list[float], topic: str = "t") -> list[Sample]:
    return [Sample("kafka_consumergroup_lag", {**KAFKA, "topic": topic, "consumergroup": group}, START + t * 1000, v)
            for t, v in zip(STEPS, values)]


def consumed(group: str, per_second: float, topic: str = "t",
             name: str = "kafka_messages_consumed_total") -> list[Sample]:
    return linear(name, {**KAFKA, "topic": topic, "consumergroup": group}, per_second)


def test_consumer_lag_is_the_backlog_in_seconds_on_the_job_that_runs_the_group(store):
    store.append(
        constant("up", KAFKA, 1) + constant("up", NOTIFY, 1) + constant("up", FEED, 1)
        + constant(CONSUMER_INFO, {**NOTIFY, "topic": "t", "consumergroup": "push-sender"}, 1)
        + lag("push-sender", [0, 3, 10, 40, 90, 160, 250]) + consumed("push-sender", 2.0)  # 250 / 2 = 125 s
        # a second group run by the same job: max by (job); kafka_exporter's committed offset as the counter
        + constant(CONSUMER_INFO, {**NOTIFY, "topic": "c", "consumergroup": "campaigner"}, 1)
        + lag("campaigner", [5] * len(STEPS), "c") + consumed("campaigner", 1.0, "c", "kafka_consumergroup_current_offset")
        # a group named after its job, with no info metric: the naming convention; stalled: 1 message per window
        + lag("feed", [1, 2, 3, 4, 5, 6, 7]) + consumed("feed", 0.0)
        # a group nobody runs or is named after: recorded nowhere, certainly not on the broker
        + lag("orphan", [1000] * len(STEPS)) + consumed("orphan", 1.0)
    )
    got = compute_golden_signals(store, NOW, WINDOW_S)
    assert got["notification"]["consumer_lag_seconds"] == pytest.approx(125.0)
    assert got["feed"]["consumer_lag_seconds"] == pytest.approx(7 * WINDOW_S)
    assert math.isnan(got["kafka"]["consumer_lag_seconds"])
    assert "orphan" not in got


def test_a_surge_raises_the_backlog_not_the_time_lag(store):
    store.append(constant("up", KAFKA, 1) + constant("up", NOTIFY, 1)
                 + constant(CONSUMER_INFO, {**NOTIFY, "topic": "t", "consumergroup": "g"}, 1)
                 + constant(CONSUMER_INFO, {**NOTIFY, "topic": "u", "consumergroup": "h"}, 1)
                 + lag("g", [4] * len(STEPS)) + consumed("g", 2.0)  # normal: 2 s behind
                 + lag("h", [16] * len(STEPS), "u") + consumed("h", 8.0, "u"))  # 4x the traffic: still 2 s
    assert compute_golden_signals(store, NOW, WINDOW_S)["notification"]["consumer_lag_seconds"] == pytest.approx(2.0)


def test_a_stale_lag_sample_or_no_consume_rate_is_not_a_lag(store):
    store.append(constant("up", NOTIFY, 1) + constant("up", KAFKA, 1)
                 + constant(CONSUMER_INFO, {**NOTIFY, "topic": "t", "consumergroup": "g"}, 1)
                 + lag("g", [5.0] * (len(STEPS) - 1) + [math.nan]) + consumed("g", 1.0))  # a staleness marker last
    assert math.isnan(compute_golden_signals(store, NOW, WINDOW_S)["notification"]["consumer_lag_seconds"])
    store.append(lag("k", [5.0] * len(STEPS)) + constant(CONSUMER_INFO, {**NOTIFY, "topic": "t", "consumergroup": "k"}, 1))
    assert math.isnan(compute_golden_signals(store, NOW, WINDOW_S)["notification"]["consumer_lag_seconds"])


def test_policies_of_the_new_signals():
    cache, lag_ = DEFAULT_POLICIES["cache_hit_ratio"], DEFAULT_POLICIES["consumer_lag_seconds"]
    assert cache.direction == "down" and cache.impact_floor(0.9) == pytest.approx(0.05)
    assert lag_.direction == "up"
    assert lag_.impact_floor(20.0) == 30.0 and lag_.impact_floor(400.0) == 100.0


def engine_scores(signal: str, baseline: list[float], value: float) -> float:
    engine = ScoringEngine(detector="robust_zscore", window=60, min_points=10)
    for t, v in enumerate(baseline):
        engine.update(t * 1000, {"j": {signal: v}})
    return engine.update(len(baseline) * 1000, {"j": {signal: value}})[("j", signal)].score


def test_a_cache_outage_scores_and_a_warmer_cache_or_a_small_dip_does_not():
    wobble = [0.9 + 0.005 * ((t % 5) - 2) for t in range(30)]
    assert engine_scores("cache_hit_ratio", wobble, 0.0) > 5  # outage: 45 spreads of 2 points
    assert engine_scores("cache_hit_ratio", wobble, 0.99) == 0.0  # the harmless way
    assert engine_scores("cache_hit_ratio", wobble, 0.86) == 0.0  # 3 points: below the 5-point floor


def test_a_growing_backlog_scores_and_poll_jitter_does_not():
    jitter = [float(t % 20) for t in range(30)]  # a consumer polling every interval: 0..19 s behind
    assert engine_scores("consumer_lag_seconds", jitter, 400.0) > 5
    assert engine_scores("consumer_lag_seconds", jitter, 30.0) == 0.0  # 23 s above the median (7): below the floor
    assert engine_scores("consumer_lag_seconds", jitter, 0.0) == 0.0  # caught up: the harmless way


def test_a_redis_outage_ranks_redis_above_the_database_its_misses_load():
    """Reads fall through to postgres: its load and its callers' latency follow the hit ratio's drop. Redis and
    postgres do not depend on each other, so neither explains the other: onset order puts redis first."""
    topology = Topology.load()
    t0 = START
    evidence = [Evidence("redis", "cache_hit_ratio", 'job:cache_hit_ratio{job="redis"}', t0, 0.85, 0.2, 15.0),
                Evidence("postgres", "saturation_ratio", 'job:saturation_ratio{job="postgres"}', t0 + 10_000,
                         0.2, 0.6, 20.0),
                Evidence("user", "latency_p99_seconds", 'job:latency_p99_seconds{job="user"}', t0 + 10_000,
                         0.01, 0.05, 5.0)]
    ranked = rank_root_causes(topology, evidence, onset_tolerance_ms=1000)
    assert [c.node for c in ranked][:2] == ["redis", "postgres"]
    assert ranked[-1].node == "user"  # explained by both

