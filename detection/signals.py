"""Golden signals per job, derived from the raw series a scrape stores.

For each ``job`` at an evaluation time ``now`` over a window ``w`` (seconds), like the recording rules
an SRE would write:

=======================  =====================================================================================
``request_rate``         ``sum by (job) (rate(http_requests_total[w]))``, requests/s
``error_ratio``          ``sum by (job) (rate(http_requests_total{code=~"5.."}[w])) / request_rate``, 0..1
``latency_p99_seconds``  ``histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[w])))``
``latency_p90_seconds``  the same at 0.9: the bulk of the requests, where p99 of a quiet job is its slowest one
``saturation_ratio``     ``rate(worker_busy_seconds_total[w]) / worker_pool_size``, 0..1
``up``                   the last ``up`` sample (1 scraped fine, 0 down)
``cache_hit_ratio``      ``sum by (job) (rate(redis_keyspace_hits_total[w])) / sum by (job)
                         (rate(redis_keyspace_hits_total[w]) + rate(redis_keyspace_misses_total[w]))``, 0..1:
                         redis_exporter's GET hits and misses, any redis target (see :data:`CACHE_LOOKUPS`)
``consumer_lag_seconds`` the time a consumer group needs to work off its backlog, seconds: per (topic,
                         consumergroup), ``sum(kafka_consumergroup_lag) / clamp_min(rate(consumed[w]), 1 / w)``
                         (kafka_exporter's lag, scraped from the broker, ``job="kafka"``, over the group's consume
                         rate, :data:`CONSUMED`), the largest per job, on the job that consumes
                         (:data:`CONSUMER_INFO`). In messages a backlog grows with traffic (a surge is not a
                         fault); in seconds it grows when the consumer falls behind (kafka-lag-exporter's and
                         Burrow's "time lag"). A stalled group (nothing consumed) counts one message per window.
=======================  =====================================================================================

Each ``rate`` is Prometheus's (extrapolated over the window ``[now - w, now]``), so a series that appears
inside the window -- the first ``code="500"`` of a fault, a new ``version`` after a deploy -- counts at
once for what it added, and one that ended (the old version) for what it added before. A signal with no
data (no traffic, too few samples) is NaN. So is every rate-based signal of a target whose ``up`` does not
yet cover ``MIN_COVERAGE`` of the window (a target scraped for 5 s of a 30 s window): a tail quantile over
a short window is biased low, and a baseline learned from it would page as the window fills.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from storage.base import Store
from storage.functions import extrapolated_rate, histogram_quantile

SIGNALS = ("request_rate", "error_ratio", "latency_p99_seconds", "latency_p90_seconds", "saturation_ratio", "up",
           "cache_hit_ratio", "consumer_lag_seconds")
"""Signal names, in display order."""

OPTIONAL_SIGNALS = ("cache_hit_ratio", "consumer_lag_seconds")
"""Signals only some jobs have (a cache, a consumer): NaN on every other job, so views leave them out there."""

CACHE_LOOKUPS = {"redis_keyspace_hits_total": "hit", "redis_keyspace_misses_total": "miss"}
"""Counters of cache lookups (redis_exporter's names) and what each counts. An application's in-process cache
(the reference platform's ``user_cache_requests_total{tier="l1"}``) is left out: at a few lookups per second
its ratio over a 30 s window wanders by several points (binomial noise), as far as a record low that would
page under ``cache_hit_ratio``'s floor."""

CONSUMER_INFO = "kafka_consumer_group_info"
"""Info metric (always 1) a consuming service exposes, ``{topic, consumergroup}``: the job that exposes it
runs that consumer group, so the broker's lag for the group is that job's ``consumer_lag_seconds`` (the join on an
info metric Prometheus users write with ``group_left``/``group_right``). A group no job claims is attributed
to the job of the same name, if one is scraped (the convention of naming a group after its service); else it
is not recorded: a lag on ``job="kafka"`` would blame the broker for a slow consumer."""

CONSUMED = ("kafka_consumergroup_current_offset", "kafka_messages_consumed_total")
"""Counters of what a consumer group has committed, ``{topic, consumergroup}``: kafka_exporter's committed offset or
the reference platform's count; their rate is the group's consume rate (messages/s)."""

MIN_COVERAGE = 0.75
"""Fraction of the window a series must span before its rate counts."""

RECORDED_NAME = "job:{signal}"
"""Metric name under which a signal is written back to the store (recording-rule style)."""


def compute_golden_signals(store: Store, now_ms: int, window_seconds: float) -> dict[str, dict[str, float]]:
    """Evaluate every signal for every job at ``now_ms``.

    :returns: ``{job: {signal: value}}`` for each job seen in the window; a signal it lacks is NaN.
    """
    start = now_ms - int(window_seconds * 1000)

    def series(name: str, **matchers):
        return store.select(name, matchers or None, start, now_ms)

    def spans_window(ts) -> bool:
        index = ts.values.index  # integers in the index's unit: no Timestamp objects per series
        span_ms = np.timedelta64(int(index.asi8[-1] - index.asi8[0]), index.unit) / np.timedelta64(1, "ms")
        return span_ms >= MIN_COVERAGE * (now_ms - start)

    out: dict[str, dict[str, float]] = defaultdict(lambda: {s: math.nan for s in SIGNALS})
    warm: set[tuple[str, str]] = set()  # targets (job, instance) scraped over most of the window
    for ts in series("up"):
        out[ts.labels["job"]]["up"] = float(ts.values.iloc[-1])
        if spans_window(ts):
            warm.add((ts.labels["job"], ts.labels.get("instance", "")))

    def covered(ts) -> bool:
        return (ts.labels.get("job", ""), ts.labels.get("instance", "")) in warm

    def rate(values) -> float:
        v = values.to_numpy(dtype=float)
        kept = ~np.isnan(v)  # scrape gaps and staleness markers
        return extrapolated_rate(values.index.as_unit("ms").asi8[kept], v[kept], start, now_ms, True, True)

    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    for ts in filter(covered, series("http_requests_total")):
        r = rate(ts.values)
        if math.isnan(r):
            continue
        job = ts.labels.get("job", "")
        requests[job] += r
        if ts.labels.get("code", "").startswith("5"):
            errors[job] += r
    for job, r in requests.items():
        out[job]["request_rate"] = r
        out[job]["error_ratio"] = errors[job] / r if r > 0 else math.nan

    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for ts in filter(covered, series("http_request_duration_seconds_bucket")):
        r = rate(ts.values)
        if not math.isnan(r):
            buckets[ts.labels.get("job", "")][float(ts.labels["le"])] += r
    for job, b in buckets.items():
        out[job]["latency_p99_seconds"] = histogram_quantile(0.99, b)
        out[job]["latency_p90_seconds"] = histogram_quantile(0.9, b)

    pool = {ts.labels.get("job", ""): float(ts.values.iloc[-1]) for ts in series("worker_pool_size")}
    for ts in filter(covered, series("worker_busy_seconds_total")):
        job = ts.labels.get("job", "")
        busy = rate(ts.values)
        if pool.get(job, 0) > 0 and not math.isnan(busy):
            out[job]["saturation_ratio"] = min(1.0, busy / pool[job])

    lookups: dict[str, dict[str, float]] = defaultdict(lambda: {"hit": 0.0, "miss": 0.0})
    for name, result in CACHE_LOOKUPS.items():
        for ts in filter(covered, series(name)):
            r = rate(ts.values)
            if not math.isnan(r):
                lookups[ts.labels.get("job", "")][result] += r
    for job, n in lookups.items():
        total = n["hit"] + n["miss"]
        out[job]["cache_hit_ratio"] = n["hit"] / total if total > 0 else math.nan

    consumed: dict[tuple[str, str], float] = defaultdict(float)  # (topic, group) -> messages/s
    for name in CONSUMED:
        for ts in filter(covered, series(name)):
            r = rate(ts.values)
            if not math.isnan(r):
                consumed[(ts.labels.get("topic", ""), ts.labels.get("consumergroup", ""))] += r
    backlog: dict[tuple[str, str], float] = defaultdict(float)  # (topic, group) -> messages, summed over partitions
    for ts in series("kafka_consumergroup_lag"):
        backlog[(ts.labels.get("topic", ""), ts.labels.get("consumergroup", ""))] += float(ts.values.iloc[-1])
    consumer = {ts.labels["consumergroup"]: ts.labels.get("job", "")
                for ts in series(CONSUMER_INFO) if "consumergroup" in ts.labels}
    for (topic, group), lag in backlog.items():
        job = consumer.get(group, group if group in out else None)
        if job is None or math.isnan(lag) or (topic, group) not in consumed:  # stale, or no consume rate yet
            continue
        seconds = lag / max(consumed[(topic, group)], 1.0 / window_seconds)
        out[job]["consumer_lag_seconds"] = float(np.fmax(out[job]["consumer_lag_seconds"], seconds))  # max by (job)
    return dict(out)
