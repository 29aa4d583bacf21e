"""Crash safety of the SQLite store: a real child process ingests in a loop and prints each batch once
``append`` has returned (committed); the test SIGKILLs it mid-ingest, restarts it, kills it again, and
then finds the database intact (``PRAGMA integrity_check``) and every acknowledged sample present.

The child writes each batch as samples (``append``) or as column batches (``append_columns``, one per
timestamp, sharing one series list as scrapes of a target do). Run as a script, this file is the child:
``python test_sqlite_crash.py DB FIRST_BATCH samples|columns``.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERIES, PER_BATCH = 50, 200  # each batch: 4 samples of each of 50 series
T0 = 4_102_444_800_000  # 2100-01-01 in ms: far from the retention cutoff of the real clock
STEP_MS = 15_000


def batch_samples(k: int) -> list:
    from collectors.samples import Sample

    return [Sample("crash_test_value", {"series": str(i % SERIES), "job": "crash"},
                   T0 + (k * PER_BATCH + i) // SERIES * STEP_MS, float(k * PER_BATCH + i))
            for i in range(PER_BATCH)]


def batch_columns(k: int, series) -> list:
    """``batch_samples(k)`` as one column batch per timestamp, over the series list ``series``."""
    import numpy as np

    from collectors.samples import ColumnBatch

    samples = batch_samples(k)
    return [ColumnBatch(series, samples[j].timestamp_ms, np.array([s.value for s in samples[j:j + SERIES]]))
            for j in range(0, PER_BATCH, SERIES)]


def child(db: str, first: int, mode: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from collectors.samples import SeriesRefs
    from storage.sqlite import SQLiteStore

    # a small head: compactions (head -> chunks -> closed blocks with rollups) happen often mid-ingest
    store = SQLiteStore(db, head_max_samples=2_000)
    series = SeriesRefs.of([(s.name, s.labels) for s in batch_samples(0)[:SERIES]])
    print("ready", flush=True)
    k = first
    while True:
        if mode == "columns":
            store.append_columns(batch_columns(k, series))
        else:
            store.append(batch_samples(k))
        print(f"ack {k}", flush=True)
        k += 1


def run_until_killed(spawn, db: Path, first: int, acks_before_kill: int, mode: str) -> int:
    """Start the child at batch ``first``; SIGKILL it right after its ``acks_before_kill``-th ack.
    Returns the last acknowledged batch."""
    proc = spawn([sys.executable, __file__, str(db), str(first), mode], stdout=subprocess.PIPE, text=True)
    last = first - 1
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.startswith("ack "):
            last = int(line.split()[1])
            if last - first + 1 >= acks_before_kill:
                os.killpg(proc.pid, signal.SIGKILL)  # mid-ingest: it is already writing the next batch
                break
        assert time.monotonic() < deadline, "the child ingests too slowly"
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the child ended by itself: {proc.returncode}"
    return last


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["samples", "columns"])
def test_sigkill_mid_ingest_loses_no_acknowledged_sample(spawn, tmp_path, mode):
    from collectors.samples import labels_key
    from storage.sqlite import SQLiteStore

    db = tmp_path / "opswatch.db"
    rng = random.Random(4)
    acked = -1
    for _ in range(4):  # crash, restart where the acknowledgements stopped, crash again
        acked = run_until_killed(spawn, db, acked + 1, rng.randint(15, 60), mode)

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] > 0, "no compaction ran: crash test too short"

    store = SQLiteStore(db)
    try:
        stored = {labels_key(ts.labels): dict(zip(ts.values.index.as_unit("ms").asi8.tolist(), ts.values.tolist()))
                  for ts in store.select("crash_test_value")}
        for k in range(acked + 1):
            for s in batch_samples(k):
                assert stored[labels_key(s.labels)].get(s.timestamp_ms) == s.value, f"acknowledged batch {k} lost"
        # a batch that was not acknowledged is there whole or not at all
        extra = batch_samples(acked + 1)
        present = [stored[labels_key(s.labels)].get(s.timestamp_ms) == s.value for s in extra]
        assert all(present) or not any(present)
    finally:
        store.close()


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]), sys.argv[3])
