"""Column batches in the SQLite store (SQLiteStore.append_columns, storage/head.py runs): what a select
returns is what was written last, whether it came as columns or as samples, from the head, the chunks or
a reopened file; series references cached on a batch stay right across retention."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from collectors.samples import STALE_NAN, ColumnBatch, Sample, SeriesRefs, is_stale_nan
from opswatch.errors import StorageError
from storage.base import Store
from storage.sqlite import SQLiteStore

T0 = 1_700_000_000_000
STEP = 15_000


def bits(v: float) -> bytes:
    return struct.pack(">d", v)


def stored(store: SQLiteStore, name: str) -> dict:
    """{(name, labels): {timestamp ms: value bits}} of every series named ``name``."""
    return {(name, tuple(sorted(ts.labels.items()))): {t: bits(v) for t, v in zip(
        ts.values.index.as_unit("ms").asi8.tolist(), ts.values.tolist())} for ts in store.select(name)}


def model_of(model: dict, name: str) -> dict:
    return {k: {t: bits(v) for t, v in points.items()} for k, points in model.items() if k[0] == name and points}


def test_any_mix_of_columns_samples_compactions_and_reopening_selects_what_was_written_last(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "ow.db"

    def open_store() -> SQLiteStore:
        return SQLiteStore(path, clock=lambda: T0 / 1000, head_max_samples=900)

    store = open_store()
    targets = [SeriesRefs.of([("m", {"i": str(i), "t": str(t)}) for i in range(20)]) for t in range(3)]
    model: dict = {}
    try:
        for step in range(150):
            if step % 50 == 49:  # reopen: runs come back from the head table as per-series samples
                store.close()
                store = open_store()
            if step % 30 == 29:  # a target's page changed: new series list, partly the same series
                t = int(rng.integers(0, 3))
                targets[t] = SeriesRefs.of([("m", {"i": str(i), "t": str(t)}) for i in range(int(rng.integers(5, 25)))])
            parts = []
            for _ in range(int(rng.integers(1, 4))):
                # scrapes mostly in order; sometimes an old timestamp again, which the later write replaces
                ts = T0 + (step if rng.random() < 0.8 else int(rng.integers(0, step + 1))) * STEP
                if rng.random() < 0.6:
                    refs = targets[int(rng.integers(0, 3))]
                    values = rng.integers(0, 1000, len(refs)) / 8
                    values[rng.random(len(refs)) < 0.05] = STALE_NAN
                    parts.append(ColumnBatch(refs, ts, values))
                    for (name, labels), v in zip(refs, values.tolist()):
                        model.setdefault((name, tuple(sorted(labels.items()))), {})[ts] = v
                else:
                    samples = []
                    for _ in range(int(rng.integers(1, 10))):
                        labels = {"t": str(int(rng.integers(0, 3))), "i": str(int(rng.integers(0, 25)))}
                        v = math.nan if rng.random() < 0.1 else float(rng.integers(0, 100))
                        samples.append(Sample("m", labels, ts, v))
                        model.setdefault(("m", tuple(sorted(labels.items()))), {})[ts] = v
                    parts.append(samples)
            assert store.append_columns(parts) == sum(len(p) for p in parts)
            if step % 10 == 0:
                assert stored(store, "m") == model_of(model, "m"), step
        assert stored(store, "m") == model_of(model, "m")
        store.compact()
        assert stored(store, "m") == model_of(model, "m")
    finally:
        store.close()


def test_columns_survive_reopening_bit_for_bit(tmp_path):
    refs = SeriesRefs.of([("up", {"job": "a"}), ("up", {"job": "b"})])
    store = SQLiteStore(tmp_path / "ow.db")
    store.append_columns([ColumnBatch(refs, T0, np.array([1.0, STALE_NAN]))])
    store.append_columns([ColumnBatch(refs, T0 + STEP, np.array([-0.0, math.inf]))])
    store.close()
    store = SQLiteStore(tmp_path / "ow.db")
    try:
        [a, b] = sorted(store.select("up"), key=lambda ts: ts.labels["job"])
        assert [bits(v) for v in a.values] == [bits(1.0), bits(-0.0)]
        assert is_stale_nan(b.values.iloc[0]) and b.values.iloc[1] == math.inf
    finally:
        store.close()


def test_a_batch_looks_its_series_up_once_and_again_after_retention_deleted_some(tmp_path):
    now = [T0 / 1000]
    store = SQLiteStore(tmp_path / "ow.db", clock=lambda: now[0], retention_ms=3600_000)
    refs = SeriesRefs.of([("m", {"i": "1"}), ("m", {"i": "2"})])
    try:
        store.append_columns([ColumnBatch(refs, T0, np.array([1.0, 2.0]))])
        first = refs.refs
        assert first is not None and len(set(first.tolist())) == 2
        store.append_columns([ColumnBatch(refs, T0 + STEP, np.array([3.0, 4.0]))])
        assert refs.refs is first  # cached: no lookup
        now[0] += 10 * 3600  # everything is past retention: the series leave the index
        store.append([Sample("other", {}, T0 + 10 * 3600_000, 1.0)])
        store.compact()
        assert store.select("m") == []
        store.append_columns([ColumnBatch(refs, T0 + 10 * 3600_000, np.array([5.0, 6.0]))])
        assert {k[1]: v for k, v in stored(store, "m").items()} == {
            (("i", "1"),): {T0 + 10 * 3600_000: bits(5.0)}, (("i", "2"),): {T0 + 10 * 3600_000: bits(6.0)}}
    finally:
        store.close()


def test_a_failed_call_keeps_nothing_and_caches_no_reference(tmp_path):
    store = SQLiteStore(tmp_path / "ow.db")
    refs = SeriesRefs.of([("m", {"i": "1"})])
    try:
        with pytest.raises(StorageError, match="OverflowError"):
            store.append_columns([ColumnBatch(refs, T0, np.array([1.0])), [Sample("m", {"i": "2"}, 2**63, 1.0)]])
        assert refs.refs is None and store.select("m") == [] and store.head_samples == 0
        assert store.append_columns([ColumnBatch(refs, T0, np.array([1.0]))]) == 1
        assert stored(store, "m") == {("m", (("i", "1"),)): {T0: bits(1.0)}}
    finally:
        store.close()


def test_the_default_append_columns_hands_samples_to_append():
    class Plain(Store):
        def __init__(self):
            self.got = []

        def append(self, samples):
            self.got.extend(samples)
            return len(self.got)

    plain = Plain()
    refs = SeriesRefs.of([("a", {"x": "1"}), ("b", {})])
    assert plain.append_columns([ColumnBatch(refs, 5, np.array([1.0, 2.0])), [Sample("c", {}, 6, 3.0)]]) == 3
    assert plain.got == [Sample("a", {"x": "1"}, 5, 1.0), Sample("b", {}, 5, 2.0), Sample("c", {}, 6, 3.0)]


def test_a_column_batch_that_does_not_fit_its_series_is_refused_naming_why():
    refs = SeriesRefs.of([("a", {}), ("b", {})])
    with pytest.raises(ValueError, match="must be 2 float64"):
        ColumnBatch(refs, T0, np.array([1.0]))
    with pytest.raises(ValueError, match="not int64"):
        ColumnBatch(refs, T0, np.array([1, 2]))
    with pytest.raises(TypeError, match="integer number of ms"):
        ColumnBatch(refs, 1.5, np.array([1.0, 2.0]))
