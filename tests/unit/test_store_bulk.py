"""Bulk columnar append into the SQLite store: storage/bulk.py, SQLiteStore.append_block, pack_float_rows."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from collectors.samples import STALE_NAN, Sample, is_stale_nan
from storage.encoding import pack_float_rows, pack_floats, unpack_floats
from storage.sqlite import BLOCK_MS, SQLiteStore

STEP_MS = 60_000
NOW = 1_800_000_000.0  # the stores' clock (s); every range below ends at or before it
HOUR_MS = 3_600_000


def _grid(hours: float, end_ms: int = int(NOW * 1000)) -> np.ndarray:
    n = int(hours * HOUR_MS / STEP_MS)
    return end_ms // STEP_MS * STEP_MS - STEP_MS * np.arange(n - 1, -1, -1, dtype=np.int64)


def _matrix(rng: np.random.Generator, n_series: int, n_ts: int) -> np.ndarray:
    counters = np.cumsum(rng.poisson(7, (n_series, n_ts)), axis=1).astype(float)
    counters[1::3] = rng.lognormal(0, 1, (len(counters[1::3]), n_ts))  # not decimals: XOR-encoded
    counters[2::3] = np.round(counters[2::3] / 7, 3)  # decimals with 3 digits
    return counters


def _series(n: int) -> list[tuple[str, dict[str, str]]]:
    return [("http_requests_total", {"job": f"job{i}", "code": "200"}) for i in range(n)]


def _samples(series, ts, values, present) -> list[Sample]:
    return [Sample(name, labels, int(ts[j]), float(values[i, j]))
            for i, (name, labels) in enumerate(series) for j in range(len(ts)) if present[i, j]]


def _store(path, **kwargs) -> SQLiteStore:
    return SQLiteStore(path, clock=lambda: NOW, **kwargs)


def _assert_same(a: SQLiteStore, b: SQLiteStore, name: str = "http_requests_total") -> None:
    for step in (None, 300_000, HOUR_MS):
        got = {tuple(sorted(s.labels.items())): s for s in a.select(name, step_ms=step)}
        want = {tuple(sorted(s.labels.items())): s for s in b.select(name, step_ms=step)}
        assert got.keys() == want.keys()
        for key, series in got.items():
            assert np.array_equal(series.values.to_numpy().view(np.uint64), want[key].values.to_numpy().view(np.uint64))
            assert series.values.index.equals(want[key].values.index)
            if step:
                assert series.rollup.equals(want[key].rollup), (step, key)


def test_pack_float_rows_is_pack_floats_of_each_row():
    rng = np.random.default_rng(3)
    rows = np.vstack([_matrix(rng, 9, 50), np.full((1, 50), np.nan), np.full((1, 50), -0.0),
                      np.full((1, 50), 1e300), np.r_[np.inf, np.ones(49)][None], np.r_[STALE_NAN, np.ones(49)][None]])
    for small in (True, False):
        blobs = pack_float_rows(rows, small)
        assert blobs == [pack_floats(r, small) for r in rows]
        assert all(np.array_equal(unpack_floats(b).view(np.uint64), r.view(np.uint64)) for b, r in zip(blobs, rows))
    with pytest.raises(ValueError, match="2-D"):
        pack_float_rows(np.ones(3))


def test_block_reads_back_like_appended_and_compacted_samples(tmp_path):
    """Closed blocks (level 2 with rollups) and the open ones (level 1) read back exactly as the same
    samples written through the head and compacted."""
    rng = np.random.default_rng(1)
    ts = _grid(9)
    series = _series(12)
    values = _matrix(rng, len(series), len(ts))
    present = np.ones(values.shape, bool)
    present[4, :200] = False  # starts inside the range
    present[5, 300:] = False  # ends inside it
    values[6, 10] = np.nan
    values[6, 11] = STALE_NAN
    bulk, ref = _store(tmp_path / "bulk.db"), _store(tmp_path / "ref.db", head_max_samples=10**9)
    assert bulk.append_block(series, ts, values, present) == int(present.sum())
    ref.append(_samples(series, ts, values, present))
    ref.compact()
    _assert_same(bulk, ref)
    got = bulk.select("http_requests_total", {"job": "job6"})[0].values.to_numpy()
    assert np.isnan(got[10]) and not is_stale_nan(got[10]) and is_stale_nan(got[11])
    db = sqlite3.connect(tmp_path / "bulk.db")
    levels = dict(db.execute("SELECT level, count(DISTINCT block) FROM chunks GROUP BY level").fetchall())
    assert levels[2] >= 3 and levels[1] >= 1  # 9 h: closed blocks, and the last ones still open
    for step in (300_000, HOUR_MS):  # every closed chunk has its rollups, and no other has
        assert db.execute("SELECT series_id, block FROM rollups WHERE step_ms = ? ORDER BY 1, 2", (step,)).fetchall() \
            == db.execute("SELECT series_id, block FROM chunks WHERE level = 2 ORDER BY 1, 2").fetchall()


def test_block_merges_with_stored_samples_and_wins_on_equal_timestamps(tmp_path):
    rng = np.random.default_rng(2)
    ts = _grid(6)
    series = _series(4)
    old = _matrix(rng, 4, len(ts))
    new = old + 1000
    store = _store(tmp_path / "s.db", head_max_samples=10**9)
    store.append(_samples(series, ts, old, np.ones(old.shape, bool)))
    store.compact()  # chunks in every block
    store.append([Sample("http_requests_total", series[0][1], int(ts[-1]) + STEP_MS, 5.0)])  # still in the head
    present = np.zeros(new.shape, bool)
    present[:, ::2] = True  # every other timestamp is rewritten
    store.append_block(series, ts, new, present)
    got = store.select("http_requests_total", {"job": "job0"})[0].values.to_numpy()
    assert np.array_equal(got[:-1], np.where(present[0], new[0], old[0]))
    assert got[-1] == 5.0  # the head was compacted first, not lost


def test_retention_keeps_the_newest_part(tmp_path):
    """A range older than the retention: blocks the next compaction would delete are not written."""
    store = _store(tmp_path / "s.db", retention_ms=4 * HOUR_MS)
    ts = _grid(10)
    values = np.ones((2, len(ts)))
    written = store.append_block(_series(2), ts, values)
    first_kept = (int(NOW * 1000) - 4 * HOUR_MS) // BLOCK_MS * BLOCK_MS
    assert written == 2 * int((ts >= first_kept).sum()) < values.size
    got = store.select("http_requests_total")[0].values
    assert got.index[0].value // 10**6 == first_kept
    store.compact()  # retention itself finds nothing more to delete
    assert store.select("http_requests_total")[0].values.equals(got)


@pytest.mark.parametrize("ts, shape, message", [
    (np.array([0, 60_000, 60_000]), (1, 3), "strictly increasing; index 2"),
    (np.array([0.0, 1.0]), (1, 2), "integer milliseconds"),
    (np.array([0, 1]), (2, 2), r"values must have shape \(series, timestamps\) = \(1, 2\)"),
])
def test_bad_blocks_are_refused_and_write_nothing(tmp_path, ts, shape, message):
    store = _store(tmp_path / "s.db")
    with pytest.raises(ValueError, match=message):
        store.append_block(_series(1), ts, np.ones(shape))
    assert store.metric_names() == []
