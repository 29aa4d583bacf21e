"""The PromQL engine (storage/promql.py) on a real SQLite store: lookback, staleness, offset, matching and
errors. Value-for-value parity with Prometheus is tests/integration/test_promql_parity.py."""

from __future__ import annotations

import math

import pytest

from collectors.samples import STALE_NAN, Sample
from storage.promql import Engine, PromQLError
from storage.sqlite import SQLiteStore

S, M = 1000, 60_000
T0 = 1_700_000_000_000


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "opswatch.db")
    yield s
    s.close()


def values(result) -> dict:
    return {tuple(sorted(x.labels.items())): x.value for x in result}


def test_lookback_delta_is_five_minutes_inclusive(store):
    store.append([Sample("g", {"a": "1"}, T0, 3.0)])
    engine = Engine(store)
    assert values(engine.instant("g", T0 + 5 * M)) == {(("__name__", "g"), ("a", "1")): 3.0}
    assert engine.instant("g", T0 + 5 * M + 1) == []
    assert engine.instant("g", T0 - 1) == []


def test_staleness_marker_ends_a_series_at_once(store):
    store.append([Sample("g", {"a": "1"}, T0, 3.0)])
    store.append([Sample("g", {"a": "1"}, T0 + 10 * S, STALE_NAN)])
    store.append([Sample("g", {"a": "1"}, T0 + 20 * S, math.nan)])  # an ordinary NaN is a value
    engine = Engine(store)
    assert len(engine.instant("g", T0 + 9 * S)) == 1
    assert engine.instant("g", T0 + 15 * S) == []
    [nan] = engine.instant("g", T0 + 25 * S)
    assert math.isnan(nan.value)
    # range selectors skip the marker: two real samples remain in [T0, T0 + 20 s]
    [count] = engine.instant("count_over_time(g[1m])", T0 + 20 * S)
    assert count.value == 2 and count.labels == {"a": "1"}


def test_offset_and_functions_drop_the_metric_name(store):
    store.append([Sample("c", {"job": "x"}, T0 + i * 15 * S, float(i * 15)) for i in range(41)])  # 1/s
    engine = Engine(store)
    [r] = engine.instant("rate(c[5m])", T0 + 10 * M)
    assert r.labels == {"job": "x"} and r.value == pytest.approx(1.0)
    [o] = engine.instant("c offset 2m", T0 + 10 * M)
    assert o.value == 480 and o.labels["__name__"] == "c"
    [kept] = engine.instant("c > 100", T0 + 10 * M)  # a filtering comparison keeps the name
    assert kept.labels["__name__"] == "c" and kept.value == 600
    [flag] = engine.instant("c > bool 1000", T0 + 10 * M)
    assert flag.labels == {"job": "x"} and flag.value == 0.0


def test_one_to_one_matching_on_and_ignoring_and_duplicates(store):
    store.append([Sample("a", {"job": "x", "i": "1"}, T0, 6.0), Sample("a", {"job": "x", "i": "2"}, T0, 8.0),
                  Sample("b", {"job": "x"}, T0, 2.0)])
    engine = Engine(store)
    assert values(engine.instant('a{i="1"} / ignoring (i) b', T0)) == {(("job", "x"),): 3.0}
    assert values(engine.instant('a{i="2"} - on (job) b', T0)) == {(("job", "x"),): 6.0}
    with pytest.raises(PromQLError, match="many-to-one matching"):
        engine.instant("a / on (job) b", T0)
    with pytest.raises(PromQLError, match="duplicate series for the match group"):
        engine.instant("b / on (job) a", T0)


@pytest.mark.parametrize("query, message", [
    ("topk(2, a)", "the aggregation 'topk' at character 1 is not supported"),
    ("a / on (job) group_left b", "group_left/group_right at character 14 is not supported"),
    ("rate(a[5m:1m])", "a subquery"),
    ("a @ 100", "the @ modifier at character 3"),
    ("label_replace(a, 'x', '$1', 'y', '(.*)')", "the function 'label_replace' at character 1"),
    ("sum(rate(a[5m])", "cannot parse 'sum(rate(a[5m])': unclosed left parenthesis"),
])
def test_unsupported_or_bad_queries_name_the_construct_and_position(store, query, message):
    with pytest.raises(PromQLError) as info:
        Engine(store).instant(query, T0)
    assert message in str(info.value)


def test_histogram_quantile_groups_by_labels_without_le(store):
    buckets = {"0.1": 50.0, "0.5": 90.0, "+Inf": 100.0}
    store.append([Sample("h_bucket", {"job": "x", "le": le}, T0, v) for le, v in buckets.items()])
    [q] = Engine(store).instant("histogram_quantile(0.7, h_bucket)", T0)
    assert q.labels == {"job": "x"} and q.value == pytest.approx(0.1 + 0.4 * (70 - 50) / 40)


def test_extra_function_receives_its_argument(store):
    store.append([Sample("g", {"job": "x"}, T0, 2.0)])
    seen = []

    def double(ctx):
        seen.append((ctx.arg_text, ctx.time_ms))
        return [type(s)(s.labels, 2 * s.value) for s in ctx.vector]

    engine = Engine(store, functions={"twice": double})
    [x] = engine.instant("twice(g) > 3", T0)
    assert x.value == 4.0 and seen == [("g", T0)]


def test_windows_kept_between_forward_queries_give_what_a_full_read_gives(store):
    kept, full = Engine(store, late_samples_ms=5 * S), Engine(store)
    queries = ["g", "rate(c[1m])", 'sum by (job) (g{job!="z"})', "g offset 30s", 'r{job="x"} + r offset 10s',
               "max_over_time(r[20s])"]
    for step in range(120):
        t = T0 + step * S
        samples = [Sample("c", {"job": "x"}, t, float(step * 3 % 200)), Sample("g", {"job": "x"}, t, step % 7)]
        if step % 10:
            samples.append(Sample("g", {"job": "y"}, t, -step))
        if step == 60:
            samples.append(Sample("g", {"job": "x"}, t, STALE_NAN))  # replaces the sample at the same time
        store.append(samples)
        recorded = [Sample("r", {"job": "x"}, t, step / 3)] if step % 17 else [Sample("r", {"job": "x"}, t, STALE_NAN)]
        store.append(recorded)
        kept.push(recorded)  # a recorded series: handed over, not read back
        if step % 13 == 5:  # a late scrape: stored now with a timestamp 3 s back
            store.append([Sample("g", {"job": "late"}, t - 3 * S, 1.0)])
        for query in queries:
            assert values(kept.instant(query, t)) == values(full.instant(query, t)), (query, step)
