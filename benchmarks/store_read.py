"""Recent-range read benchmark of the SQLite store: what the live evaluation path asks of it.

    python -m benchmarks.store_read [--json] [--targets 25] [--series 200] [--minutes 8] [--repeats 7]

Builds a fresh store in a temporary directory: ``--targets`` targets (8 jobs) scraped every 1 s for
``--minutes``, each scrape one :meth:`SQLiteStore.append` of ``--series`` series shaped like the sample
platform's pages (``up``, request counters by route and code, a latency histogram, worker pool gauges and
counters, filler gauges). With the defaults the head compacts every 200 s (1,000,000 samples), so the
reads cover chunks and 80 s of head. Then, at the time of the last scrape, it times (median over
``--repeats``):

* ``select_one_series_5m_seconds``: one series by its full label set over the last 5 minutes;
* ``select_by_name_5m_seconds``: ``up`` (one series per target) over the last 5 minutes;
* ``golden_signals_seconds``: :func:`detection.signals.compute_golden_signals` over a 30 s window, as one
  evaluation of :class:`opswatch.pipeline.Pipeline` with the default ``rate_window`` does.

Also reported: ``append_seconds`` (median of one scrape's append) and ``head_samples`` (samples in the head
at the time of the reads). Prints a table, or with ``--json`` one JSON object. A benchmark, not a test: its
numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from collectors.samples import Sample
from detection.signals import compute_golden_signals
from storage.sqlite import SQLiteStore

JOBS = ("frontend", "api-gateway", "feed", "posts", "media", "users", "search", "notifications")
ROUTES = ("/", "/feed", "/post", "/user")
CODES = ("200", "404", "500", "503")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
WINDOW_SECONDS = 30.0
READ_MINUTES = 5


def _target_labels(targets: int) -> list[dict[str, str]]:
    return [{"job": JOBS[i % len(JOBS)], "instance": f"127.0.0.1:{9100 + i}"} for i in range(targets)]


def scrape(target: dict[str, str], ts_ms: int, step: int, series: int, rng: np.random.Generator) -> list[Sample]:
    """One scrape of one target at ``ts_ms`` (``step`` scrapes since the start): ``series`` samples."""
    out = [Sample("up", target, ts_ms, 1.0)]
    for route in ROUTES:
        for code in CODES:
            out.append(Sample("http_requests_total", {**target, "route": route, "code": code}, ts_ms,
                              float(step * (50 if code == "200" else 1) + rng.integers(0, 3))))
        for le in BUCKETS:
            out.append(Sample("http_request_duration_seconds_bucket", {**target, "route": route, "le": le}, ts_ms,
                              float(step * 10 * (BUCKETS.index(le) + 1))))
    out += [Sample("worker_pool_size", target, ts_ms, 16.0),
            Sample("worker_busy_seconds_total", target, ts_ms, step * 4.0 + float(rng.random()))]
    out += [Sample("process_gauge", {**target, "n": str(i)}, ts_ms, round(float(rng.random()) * 100, 2))
            for i in range(max(0, series - len(out)))]
    return out[:series]


def build(path: Path, targets: int, series: int, minutes: int, end_ms: int) -> tuple[SQLiteStore, list[float]]:
    """A store holding ``minutes`` of 1 s scrapes ending at ``end_ms``; returns it and each append's time."""
    store = SQLiteStore(path, clock=lambda: end_ms / 1000)
    rng = np.random.default_rng(0)
    labels = _target_labels(targets)
    appends = []
    steps = minutes * 60
    for step in range(steps):
        ts_ms = end_ms - (steps - 1 - step) * 1000
        for target in labels:
            batch = scrape(target, ts_ms, step, series, rng)
            t0 = time.perf_counter()
            store.append(batch)
            appends.append(time.perf_counter() - t0)
    return store, appends


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(targets: int, series: int, minutes: int, repeats: int) -> dict:
    end_ms = 1_800_000_000_000
    start_ms = end_ms - READ_MINUTES * 60_000
    with tempfile.TemporaryDirectory() as tmp:
        store, appends = build(Path(tmp) / "opswatch.db", targets, series, minutes, end_ms)
        try:
            one = {**_target_labels(targets)[0], "route": "/feed", "code": "200"}
            # what is timed must read what was written: one sample per second of the range, one `up` per target
            [picked] = store.select("http_requests_total", one, start_ms, end_ms)
            if len(picked.values) != min(minutes * 60, READ_MINUTES * 60 + 1) or \
                    len(store.select("up", None, start_ms, end_ms)) != targets:
                raise RuntimeError("the benchmark store does not hold what was appended")
            return {
                "targets": targets, "series_per_target": series, "minutes": minutes,
                "head_samples": store.head_samples,
                "append_seconds": statistics.median(appends),
                "select_one_series_5m_seconds": median_seconds(
                    lambda: store.select("http_requests_total", one, start_ms, end_ms), repeats),
                "select_by_name_5m_seconds": median_seconds(
                    lambda: store.select("up", None, start_ms, end_ms), repeats),
                "golden_signals_seconds": median_seconds(
                    lambda: compute_golden_signals(store, end_ms, WINDOW_SECONDS), repeats),
            }
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--targets", type=int, default=25, help="targets scraped every 1 s")
    parser.add_argument("--series", type=int, default=200, help="series per target")
    parser.add_argument("--minutes", type=int, default=8, help="minutes of scrapes in the store")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of each read (median)")
    args = parser.parse_args(argv)
    result = run(args.targets, args.series, args.minutes, args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value:.6f}" if isinstance(value, float) else f"{key:32s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
