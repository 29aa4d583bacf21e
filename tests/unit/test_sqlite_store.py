"""The embedded SQLite time-series store and label matchers: storage/sqlite.py, storage/matchers.py."""

from __future__ import annotations

import math
import threading

import pandas as pd
import pytest

from collectors.samples import Sample
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


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "nested" / "dir" / "opswatch.db")  # missing directories are created
    yield s
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
