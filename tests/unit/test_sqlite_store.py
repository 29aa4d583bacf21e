"""The embedded SQLite time-series store and label matchers: storage/sqlite.py, storage/matchers.py."""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pandas as pd
import pytest

from collectors.samples import STALE_NAN, Sample, is_stale_nan
from opswatch.errors import StorageError
from storage.matchers import Matcher
from storage.sqlite import SQLiteStore

REQ = "http_requests_total"

# five series of one metric; the last has no `code` label at all
SERIES = [
    {"job": "feed", "code": "200"},
    {"job": "feed", "code": "500"},
    {"job": "feed", "code": "503"},
    {"job": "gift", "code": "5000"},
    {"job": "gift"},
]


@pytest.fixture(params=["head", "chunks"])
def store(request, tmp_path):
    """Every test runs twice: samples still in the head, and compacted into chunks after every append."""
    head_max = 10**9 if request.param == "head" else 1
    # retention is measured from an injected clock: samples near the epoch are not "too old"
    s = SQLiteStore(tmp_path / "nested" / "dir" / "opswatch.db", clock=lambda: 10.0, head_max_samples=head_max)
    yield s  # missing directories are created
    s.close()


@pytest.fixture
def filled(store):
    """Each series i has value 10*i + k at t = 1000 * (k + 1) ms, k = 0, 1, 2."""
    store.append(Sample(REQ, labels, 1000 * (k + 1), 10.0 * i + k) for i, labels in enumerate(SERIES) for k in range(3))
    return store


def label_sets(result) -> list[dict[str, str]]:
    return sorted((dict(ts.labels) for ts in result), key=lambda d: sorted(d.items()))


def expected(*indexes: int) -> list[dict[str, str]]:
    return sorted((SERIES[i] for i in indexes), key=lambda d: sorted(d.items()))


@pytest.mark.parametrize(
    "matchers, indexes",
    [
        (None, [0, 1, 2, 3, 4]),  # no matcher: every series of the name
        ({"job": "feed"}, [0, 1, 2]),  # a mapping means equality
        ([Matcher("code", "=", "500")], [1]),  # equality
        ([Matcher("code", "!=", "200")], [1, 2, 3, 4]),  # inequality; the absent label "" is != "200"
        ([Matcher("code", "=~", "5..")], [1, 2]),  # regex is anchored: "5000" does not match 5..
        ([Matcher("code", "!~", "5..")], [0, 3, 4]),  # negated regex, absent label included
        ([Matcher("code", "=~", "200|5..")], [0, 1, 2]),  # alternation is anchored as a whole
        ([Matcher("code", "=~", "5")], []),  # a prefix is not a match
        ([Matcher("code", "=~", "00")], []),  # nor a suffix (no search semantics)
        ([Matcher("code", "=", "")], [4]),  # absent label equals ""
        ([Matcher("code", "=~", ".*")], [0, 1, 2, 3, 4]),  # .* matches the absent label too
        ([Matcher("code", "=~", ".+")], [0, 1, 2, 3]),  # .+ requires the label
        ([Matcher("job", "=", "feed"), Matcher("code", "=~", "5..")], [1, 2]),  # matchers are ANDed
        ([Matcher("job", "=", "nope")], []),  # nothing matches
    ],
)
def test_select_with_matchers(filled, matchers, indexes):
    assert label_sets(filled.select(REQ, matchers)) == expected(*indexes)
    # the in-memory series index agrees with select
    assert sorted(filled.series(REQ, matchers), key=lambda d: sorted(d.items())) == expected(*indexes)


def test_unknown_metric_name_selects_nothing(filled):
    assert filled.select("no_such_metric") == []
    assert filled.metric_names() == [REQ]


@pytest.mark.parametrize(
    "start_ms, end_ms, stamps",
    [
        (None, None, [1000, 2000, 3000]),  # unbounded
        (1000, 3000, [1000, 2000, 3000]),  # both bounds inclusive
        (2000, 2000, [2000]),  # a single instant
        (1001, 2999, [2000]),  # just inside both bounds
        (None, 1999, [1000]),  # only an upper bound
        (3000, None, [3000]),  # only a lower bound
    ],
)
def test_time_range_is_inclusive(filled, start_ms, end_ms, stamps):
    [ts] = filled.select(REQ, {"code": "500"}, start_ms, end_ms)
    assert list(ts.values.index.as_unit("ms").asi8) == stamps
    # series 1 holds 10, 11, 12 at 1000, 2000, 3000
    assert list(ts.values) == [10.0 + (t // 1000 - 1) for t in stamps]


def test_series_with_no_sample_in_range_is_left_out(filled):
    filled.append([Sample(REQ, {"job": "late"}, 9000, 1.0)])
    assert label_sets(filled.select(REQ, None, 5000, 10000)) == [{"job": "late"}]
    assert filled.select(REQ, None, 4000, 5000) == []


def test_values_are_a_float_series_with_utc_datetime_index(filled):
    [ts] = filled.select(REQ, {"code": "503"})
    assert ts.name == REQ and ts.labels == {"job": "feed", "code": "503"}
    assert isinstance(ts.values, pd.Series) and ts.values.dtype == "float64"
    assert isinstance(ts.values.index, pd.DatetimeIndex) and str(ts.values.index.tz) == "UTC"
    assert list(ts.values.index) == [
        pd.Timestamp("1970-01-01 00:00:01", tz="UTC"),
        pd.Timestamp("1970-01-01 00:00:02", tz="UTC"),
        pd.Timestamp("1970-01-01 00:00:03", tz="UTC"),
    ]
    assert list(ts.values) == [20.0, 21.0, 22.0]


def test_real_world_timestamps_keep_millisecond_precision(store):
    store.append([Sample("m", {}, 1_700_000_000_123, 1.0), Sample("m", {}, 1_700_000_000_124, 2.0)])
    [ts] = store.select("m")
    assert list(ts.values.index) == [
        pd.Timestamp("2023-11-14 22:13:20.123", tz="UTC"),
        pd.Timestamp("2023-11-14 22:13:20.124", tz="UTC"),
    ]


def test_samples_come_back_sorted_by_time(store):
    store.append([Sample("m", {}, t, float(t)) for t in (3000, 1000, 2000)])
    [ts] = store.select("m")
    assert list(ts.values) == [1000.0, 2000.0, 3000.0]


@pytest.mark.parametrize(
    "value, check",
    [
        (math.nan, math.isnan),  # stored as NULL, read back as NaN
        (math.inf, lambda v: v == math.inf),  # stored as is
        (-math.inf, lambda v: v == -math.inf),
        (-0.0, lambda v: v == 0.0),
        (1e-300, lambda v: v == 1e-300),  # tiny doubles survive
    ],
)
def test_special_values_round_trip(store, value, check):
    store.append([Sample("m", {"k": "v"}, 5, value)])
    [ts] = store.select("m")
    assert len(ts.values) == 1 and check(ts.values.iloc[0])


def test_same_series_and_timestamp_replaces(store):
    assert store.append([Sample("m", {"a": "1"}, 1000, 1.0), Sample("m", {"a": "1"}, 2000, 2.0)]) == 2
    assert store.append([Sample("m", {"a": "1"}, 1000, 7.0)]) == 1
    [ts] = store.select("m")
    assert list(ts.values) == [7.0, 2.0]
    # label order does not make a new series
    store.append([Sample("m2", {"a": "1", "b": "2"}, 1, 1.0), Sample("m2", {"b": "2", "a": "1"}, 1, 3.0)])
    [ts2] = store.select("m2")
    assert list(ts2.values) == [3.0]


def test_reopening_finds_series_and_samples_again(tmp_path):
    path = tmp_path / "ow.db"
    first = SQLiteStore(path)
    first.append([Sample("up", {"job": "feed"}, 1000, 1.0), Sample("up", {"job": "gift"}, 1000, 0.0),
                  Sample("rtt", {"job": "feed"}, 2000, math.nan)])
    first.close()

    again = SQLiteStore(path)
    try:
        assert again.metric_names() == ["rtt", "up"]
        assert label_sets(again.select("up")) == [{"job": "feed"}, {"job": "gift"}]
        [gift] = again.select("up", {"job": "gift"})
        assert list(gift.values) == [0.0]
        [rtt] = again.select("rtt")
        assert math.isnan(rtt.values.iloc[0])
        # appending to an existing series after reopening reuses it; a new series gets its own id
        again.append([Sample("up", {"job": "feed"}, 2000, 1.0), Sample("up", {"job": "post"}, 2000, 1.0)])
        [feed] = again.select("up", {"job": "feed"})
        assert list(feed.values) == [1.0, 1.0]
        [post] = again.select("up", {"job": "post"})
        assert list(post.values) == [1.0]
        assert len(again.select("up")) == 3
    finally:
        again.close()


def test_a_reader_thread_reads_while_the_main_thread_writes(store):
    batches, per_batch = 100, 10
    # the three series exist before the reader starts (see the next test for series created mid-read)
    store.append([Sample("load", {"i": str(i)}, -1 - i, 0.0) for i in range(3)])
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def count() -> int:
        return sum(len(ts.values) for ts in store.select("load", None, 0, None))

    def reader():
        try:
            while not done.is_set():
                seen.append(count())
            seen.append(count())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for b in range(batches):
            store.append([Sample("load", {"i": str(i % 3)}, b * per_batch + i, float(i)) for i in range(per_batch)])
    finally:
        done.set()
        thread.join(timeout=10)
    assert not errors
    assert len(seen) >= 2
    assert seen == sorted(seen)  # a reader never sees the data shrink
    assert seen[-1] == batches * per_batch  # and finally sees every committed sample
    assert [n for n in seen if n % per_batch] == []  # a batch is one transaction: whole batches only


class PausingMatcher(Matcher):
    """A real matcher (matches everything) that, the first time it is asked, lets the writer run a batch
    before select() goes on: it pins the moment between reading the series index and reading samples."""

    def __init__(self, asked: threading.Event, go_on: threading.Event):
        super().__init__("i", "=~", ".*")
        object.__setattr__(self, "asked", asked)
        object.__setattr__(self, "go_on", go_on)

    def matches(self, labels):
        if not self.asked.is_set():
            self.asked.set()
            self.go_on.wait(5)
        return super().matches(labels)


def test_a_select_never_sees_half_of_a_committed_batch(store):
    # Regression test (fixed bug): select() takes the series set from the in-memory index, then reads samples in a
    # later SQLite snapshot. A batch committed in between is seen for its old series but not for the
    # series it created: one scrape is half visible (e.g. code="200" without the new code="500").
    store.append([Sample("load", {"i": "0"}, 1000, 1.0)])
    asked, go_on = threading.Event(), threading.Event()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(store.select("load", [PausingMatcher(asked, go_on)])))
    thread.start()
    assert asked.wait(5)
    # one scrape, one transaction: an old series and a new one at t = 2000
    store.append([Sample("load", {"i": "0"}, 2000, 2.0), Sample("load", {"i": "1"}, 2000, 5.0)])
    go_on.set()
    thread.join(5)
    [series] = result
    at_2000 = {ts.labels["i"]: ts.values.get(pd.Timestamp(2000, unit="ms", tz="UTC")) for ts in series}
    # either the whole batch (both series at t=2000) or none of it
    assert at_2000 in ({"0": 2.0, "1": 5.0}, {"0": None})


def test_a_select_across_a_compaction_sees_the_store_as_it_began(store):
    # select() reads the series, their chunks and their in-memory head samples as of one moment: a
    # compaction committed meanwhile (head -> chunks) must neither hide samples nor show newer ones
    store.append([Sample("load", {"i": "0"}, 1000, 1.0), Sample("load", {"i": "0"}, 3000, 3.0)])
    asked, go_on = threading.Event(), threading.Event()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(store.select("load", [PausingMatcher(asked, go_on)])))
    thread.start()
    assert asked.wait(5)
    store.append([Sample("load", {"i": "0"}, 1000, 9.0), Sample("load", {"i": "0"}, 2000, 2.0)])  # a rewrite
    store.compact()
    go_on.set()
    thread.join(5)
    [[before]] = result
    assert before.values.index.as_unit("ms").asi8.tolist() == [1000, 3000] and list(before.values) == [1.0, 3.0]
    [after] = store.select("load")
    assert list(after.values) == [9.0, 2.0, 3.0]


def test_the_head_is_read_back_bit_for_bit_when_reopened(tmp_path):
    path = tmp_path / "ow.db"
    first = SQLiteStore(path)
    first.append([Sample("m", {"a": "1"}, 1000, STALE_NAN), Sample("m", {"a": "2"}, 1000, -0.0)])
    first.append([Sample("m", {"a": "2"}, 1000, 5.0), Sample("m", {"a": "1"}, 500, 1.0)])  # a rewrite, a backfill
    first.close()
    again = SQLiteStore(path)
    try:
        assert again.head_samples == 4
        one, two = sorted(again.select("m"), key=lambda ts: ts.labels["a"])
        assert one.values.index.as_unit("ms").asi8.tolist() == [500, 1000]
        assert one.values.iloc[0] == 1.0 and is_stale_nan(float(one.values.iloc[1]))
        assert list(two.values) == [5.0]
    finally:
        again.close()


def test_the_head_in_memory_stays_within_head_max_samples(tmp_path):
    store = SQLiteStore(tmp_path / "ow.db", clock=lambda: 100.0, head_max_samples=1_000)
    try:
        for k in range(35):
            store.append([Sample("m", {"i": str(i)}, 1000 * k, float(k)) for i in range(100)])
            assert len(store._head) == store.head_samples < 1_000
        assert [len(ts.values) for ts in store.select("m")] == [35] * 100  # from chunks and head alike
    finally:
        store.close()


def test_a_directory_is_not_a_store(tmp_path):
    with pytest.raises(StorageError) as info:
        SQLiteStore(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_a_non_database_file_is_not_a_store(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not an SQLite database\n" * 200)
    with pytest.raises(StorageError) as info:
        SQLiteStore(path)
    assert "not a database" in str(info.value)


def test_a_path_under_a_regular_file_raises_storage_error(tmp_path):
    # Regression test (fixed bug): the parent directory is created before the try block, so a FileExistsError
    # escapes instead of the documented StorageError.
    (tmp_path / "plain").write_text("x")
    with pytest.raises(StorageError):
        SQLiteStore(tmp_path / "plain" / "ow.db")


def test_out_of_range_timestamp_raises_storage_error(store):
    # Regression test (fixed bug): SQLite raises OverflowError (not sqlite3.Error) for an int beyond int64, which
    # append() does not translate. parse_text() accepts such timestamps (e.g. 1e30 in a page).
    with pytest.raises(StorageError):
        store.append([Sample("m", {}, 2**63, 1.0)])


def test_a_failed_batch_leaves_the_series_index_consistent(store):
    # Regression test (fixed bug): series created in a batch that rolls back stay in the in-memory index with
    # their ids; the next new series reuses such an id, so two series share samples.
    with pytest.raises(Exception):
        store.append([Sample("a", {"x": "1"}, 1, 1.0), Sample("b", {}, 2**63, 2.0)])
    store.append([Sample("c", {}, 5, 5.0)])
    store.append([Sample("a", {"x": "1"}, 7, 7.0)])
    [a] = store.select("a")
    [c] = store.select("c")
    assert list(a.values) == [7.0]
    assert list(c.values) == [5.0]


@pytest.mark.parametrize(
    "name, op, value, named",
    [
        ("code", "=~", "5(", "5("),  # unbalanced parenthesis
        ("code", "!~", "[a-", "[a-"),  # unterminated class
        ("code", "==", "500", "=="),  # unknown operator
        ("code", "~", "5..", "~"),  # unknown operator
    ],
)
def test_bad_matcher_raises_value_error_naming_it(name, op, value, named):
    with pytest.raises(ValueError) as info:
        Matcher(name, op, value)
    assert named in str(info.value) and name in str(info.value)


# -- layout: head, chunks, closed blocks, rollups, retention ---------------------------------------------

HOUR = 3_600_000
T_DAY = 1_700_006_400_000  # a multiple of one day, in ms


def reference_select(model, name, lo, hi):
    """What select must answer, from a dict model {(name, labels tuple): {ts: value}}."""
    out = {}
    for (n, labels), points in model.items():
        stamps = sorted(t for t in points if lo <= t <= hi)
        if n == name and stamps:
            out[labels] = [(t, points[t]) for t in stamps]
    return out


def as_dict(result):
    return {tuple(sorted(ts.labels.items())): list(zip(ts.values.index.as_unit("ms").asi8.tolist(),
                                                      ts.values.tolist())) for ts in result}


def same(a, b) -> bool:
    """Equal, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k]) and all(t1 == t2 and (v1 == v2 or (math.isnan(v1) and math.isnan(v2)))
                                       for (t1, v1), (t2, v2) in zip(a[k], b[k])) for k in a)


def test_any_mix_of_appends_compactions_and_reopening_selects_what_was_written_last(tmp_path):
    rng = np.random.default_rng(42)
    path = tmp_path / "ow.db"
    store = SQLiteStore(path, clock=lambda: T_DAY / 1000 + 86400, head_max_samples=700)
    model: dict = {}
    try:
        for step in range(120):
            if step % 40 == 39:  # reopen: the head and the chunks are read back from the file
                store.close()
                store = SQLiteStore(path, clock=lambda: T_DAY / 1000 + 86400, head_max_samples=700)
            batch = []
            # mostly in order 15 s scrapes over ~10 h, with backfills and rewrites of old points
            base = T_DAY + step * 300_000 if rng.random() < 0.8 else T_DAY + int(rng.integers(0, step + 1)) * 300_000
            for _ in range(int(rng.integers(1, 60))):
                name = "m" if rng.random() < 0.7 else "other"
                labels = {"i": str(int(rng.integers(0, 8))), "job": "j"}
                if rng.random() < 0.5:
                    labels = dict(reversed(list(labels.items())))  # another label order: the same series
                t = base + int(rng.integers(0, 20)) * 15_000
                v = math.nan if rng.random() < 0.05 else float(rng.integers(0, 1000)) / 8
                batch.append(Sample(name, labels, t, v))
                model.setdefault((name, tuple(sorted(labels.items()))), {})[t] = v
            store.append(batch)
            if step % 25 == 0:
                lo, hi = sorted(int(x) for x in rng.integers(T_DAY - HOUR, T_DAY + 12 * HOUR, 2))
                assert same(as_dict(store.select("m", None, lo, hi)), reference_select(model, "m", lo, hi))
        store.compact()
        levels = dict(sqlite3.connect(path).execute("SELECT level, count(*) FROM chunks GROUP BY level").fetchall())
        assert levels.get(2, 0) > 0, "some blocks were closed"
        for name in ("m", "other"):
            assert same(as_dict(store.select(name)), reference_select(model, name, -(2**63), 2**63 - 1))
        [one] = store.select("m", [Matcher("i", "=", "3")], T_DAY + HOUR, T_DAY + 5 * HOUR)
        assert same(as_dict([one]), reference_select({k: v for k, v in model.items() if ("i", "3") in k[1]},
                                                      "m", T_DAY + HOUR, T_DAY + 5 * HOUR))
    finally:
        store.close()


def reference_buckets(model, name, lo, hi, step):
    """{labels: [(bucket start, min, max, avg, count)]} over buckets starting in [lo // step * step, hi]."""
    out = {}
    for (n, labels), points in model.items():
        if n != name:
            continue
        buckets: dict = {}
        for t, v in points.items():
            start = t // step * step
            if lo // step * step <= start <= hi:
                buckets.setdefault(start, []).append(v)
        rows = []
        for start in sorted(buckets):
            vals = [v for v in buckets[start] if not math.isnan(v)]
            rows.append((start, min(vals, default=math.nan), max(vals, default=math.nan),
                         sum(vals) / len(vals) if vals else math.nan, len(vals)))
        if rows:
            out[labels] = rows
    return out


def rollup_dict(result):
    return {tuple(sorted(ts.labels.items())): [
        (t, r["min"], r["max"], r["avg"], int(r["count"]))
        for t, r in zip(ts.rollup.index.as_unit("ms").asi8.tolist(), ts.rollup.to_dict("records"))]
        for ts in result}


def close_rows(a, b) -> bool:
    def eq(x, y):
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9)
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k]) and all(r[0] == s[0] and r[4] == s[4] and all(eq(x, y) for x, y in zip(r[1:4], s[1:4]))
                                       for r, s in zip(a[k], b[k])) for k in a)


@pytest.mark.parametrize("step", [300_000, 900_000, HOUR, 3 * HOUR, 7 * 60_000])
def test_a_coarse_step_returns_min_max_avg_count_per_bucket(tmp_path, step):
    # 12 h of 15 s samples for 3 series, some NaN; the first blocks close and get rollups, the rest is raw
    store = SQLiteStore(tmp_path / "ow.db", clock=lambda: T_DAY / 1000, head_max_samples=5_000)
    rng = np.random.default_rng(1)
    model: dict = {}
    try:
        for t in range(T_DAY, T_DAY + 12 * HOUR, 15_000):
            batch = [Sample("g", {"i": str(i)}, t, math.nan if rng.random() < 0.02 else float(rng.normal(50, 10)))
                     for i in range(3)]
            store.append(batch)
            for s in batch:
                model.setdefault(("g", tuple(sorted(s.labels.items()))), {})[s.timestamp_ms] = s.value
        lo, hi = T_DAY + 1234, T_DAY + 11 * HOUR + 17
        result = store.select("g", None, lo, hi, step_ms=step)
        assert close_rows(rollup_dict(result), reference_buckets(model, "g", lo, hi, step))
        ts = result[0]
        assert ts.values.index.equals(ts.rollup.index) and ts.values.equals(ts.rollup["avg"].rename("g"))
        assert ts.rollup["count"].dtype == "int64"
    finally:
        store.close()


def test_closed_blocks_are_answered_from_rollups_without_reading_raw_chunks(tmp_path):
    path = tmp_path / "ow.db"
    store = SQLiteStore(path, clock=lambda: T_DAY / 1000, head_max_samples=1)
    try:
        for t in range(T_DAY, T_DAY + 8 * HOUR, 60_000):
            store.append([Sample("g", {}, t, float(t // 60_000 % 7))])
        with sqlite3.connect(path) as side:  # remove the raw samples of the closed blocks behind its back
            removed = side.execute("DELETE FROM chunks WHERE level = 2").rowcount
        assert removed > 0
        assert store.select("g", None, T_DAY, T_DAY + 2 * HOUR - 1) == []  # raw: gone
        [ts] = store.select("g", None, T_DAY, T_DAY + 2 * HOUR - 1, step_ms=HOUR)  # rollups: still there
        assert list(ts.rollup["count"]) == [60, 60]
        assert list(ts.rollup["max"]) == [6.0, 6.0]
    finally:
        store.close()


def test_retention_deletes_old_blocks_and_series_left_without_samples(tmp_path):
    now = {"s": T_DAY / 1000}
    store = SQLiteStore(tmp_path / "ow.db", retention_ms=24 * HOUR, clock=lambda: now["s"], head_max_samples=1)
    try:
        store.append([Sample("old", {"job": "a"}, T_DAY - 30 * HOUR, 1.0),
                      Sample("m", {"job": "a"}, T_DAY - 30 * HOUR, 1.0)])
        store.append([Sample("m", {"job": "a"}, T_DAY - HOUR, 2.0)])
        assert store.metric_names() == ["m"]  # compaction applied retention: 30 h old samples are gone
        [m] = store.select("m")
        assert list(m.values) == [2.0]
        now["s"] += 48 * 3600  # two days later everything is past retention
        store.append([Sample("new", {}, T_DAY + 48 * HOUR, 3.0)])
        assert store.metric_names() == ["new"] and store.series("m") == []
        store.append([Sample("m", {"job": "a"}, T_DAY + 48 * HOUR, 4.0)])  # a deleted series comes back anew
        [m] = store.select("m")
        assert list(m.values) == [4.0]
    finally:
        store.close()


def test_the_series_cache_stays_within_its_bound(tmp_path):
    store = SQLiteStore(tmp_path / "ow.db", max_cached_series=5)
    try:
        for k in range(3):
            store.append([Sample("m", {"i": str(i)}, k, float(i + k)) for i in range(20)])
            assert len(store._ids) <= 5
        assert sorted(float(ts.values.iloc[-1]) for ts in store.select("m")) == [i + 2.0 for i in range(20)]
    finally:
        store.close()


def test_a_file_of_the_first_layout_is_converted(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript("CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL, "
                          "UNIQUE (name, labels)); CREATE TABLE samples (series_id INTEGER NOT NULL, ts INTEGER "
                          "NOT NULL, value REAL, PRIMARY KEY (series_id, ts)) WITHOUT ROWID;")
        old.execute("""INSERT INTO series VALUES (1, 'up', '{"job":"feed"}')""")
        old.executemany("INSERT INTO samples VALUES (1, ?, ?)", [(1000, 1.0), (2000, None), (3000, 0.0)])
    store = SQLiteStore(path, clock=lambda: 10.0)
    try:
        [up] = store.select("up", {"job": "feed"})
        assert up.values.index.as_unit("ms").asi8.tolist() == [1000, 2000, 3000]
        assert up.values.iloc[0] == 1.0 and math.isnan(up.values.iloc[1]) and up.values.iloc[2] == 0.0
        tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        assert ("samples",) not in tables
    finally:
        store.close()


@pytest.mark.parametrize("values", [
    np.round(np.random.default_rng(0).normal(500, 100, 700), 2),  # 2-decimal gauges: stored as decimals
    np.cumsum(np.random.default_rng(1).integers(0, 100, 700)).astype(float),  # integer counters
    np.random.default_rng(2).random(700),  # full-precision floats: XOR encoding
    np.array([-0.0, 1.5]), np.array([math.nan, 1.0, -math.inf]), np.array([]),
    np.array([0.1 + 0.2, 0.3]), np.array([1e300, 5e-324, -7.25]), np.array([2.0**60, 1.0]),
])
@pytest.mark.parametrize("small", [False, True])
def test_float_columns_round_trip_bit_for_bit(values, small):
    from storage.encoding import pack_floats, unpack_floats

    back = unpack_floats(pack_floats(values, small))
    assert np.array_equal(back.view(np.uint64), values.view(np.uint64))


@pytest.mark.parametrize("values", [np.array([], np.int64), np.array([-(2**63), 2**63 - 1, 0]),
                                    np.arange(500) * 15_000 + 1_700_000_000_123])
@pytest.mark.parametrize("small", [False, True])
def test_int_columns_round_trip(values, small):
    from storage.encoding import pack_ints, unpack_ints

    assert np.array_equal(unpack_ints(pack_ints(values, small)), values)
