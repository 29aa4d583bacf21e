"""Ingest benchmark: OpsWatch's scrape -> parse -> store path side by side with a real Prometheus.

    python -m benchmarks.ingest [--json] [--series 10000] [--scrapes 20] [--repeats 3]
                                [--prometheus-seconds 20] [--query-series 1000] [--query-hours 24]

1. A child process serves a page of ``--series`` series on loopback (Prometheus text format 0.0.4; half
   counters, half gauges with two decimals, 50 families; every value changes on every request).
2. A real Prometheus (``prometheus`` on PATH) scrapes that page every 1 s from the start of the run.
3. OpsWatch's real path -- :class:`collectors.scrape.ScrapeManager` fetching over HTTP, parsing, and its
   append queue writing into :class:`storage.sqlite.SQLiteStore` (``append_columns``: a page laid out as
   the last one goes as columns) -- scrapes the same page ``--scrapes``
   times back to back after two warm-up scrapes (series creation), ``--repeats`` times. CPU seconds are
   this process's (``time.process_time``: every thread); the store's own share is the append thread's
   ``time.thread_time``.
4. Prometheus is then measured over ``--repeats`` windows of ``--prometheus-seconds``: the increase of its
   ``prometheus_tsdb_head_samples_appended_total`` over that of its ``process_cpu_seconds_total``.
5. Storage: ``--query-series`` series of 15 s samples over ``--query-hours`` (values like the page's),
   appended one scrape at a time into a fresh store and compacted; ``bytes_per_sample`` is the file size
   (database + WAL) over the samples, and ``range_query_seconds_1d_1000_series`` the median time of
   selecting all of them raw (plus the same at a 1 h step, from the rollups).

Prints a table, or with ``--json`` one JSON object (medians over the repeats). A benchmark, not a test:
its numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np

from collectors.samples import Sample
from collectors.scrape import ScrapeManager, Target
from opswatch.processes import free_port, stop_process_group
from storage.sqlite import SQLiteStore

FAMILIES = 50
QUERY_STEP_MS = 15_000


class Page:
    """The benchmark page: ``series`` series in ``FAMILIES`` families; :meth:`render` advances every value."""

    def __init__(self, series: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        per_family = max(1, series // FAMILIES)
        self.blocks: list[tuple[str, list[str], bool]] = []  # (HELP/TYPE header, series prefixes, counter?)
        made = 0
        for f in range(FAMILIES):
            counter = f % 2 == 0
            name = f"bench_requests_{f}_total" if counter else f"bench_queue_depth_{f}"
            n = min(per_family, series - made) if f < FAMILIES - 1 else series - made
            made += n
            header = f"# HELP {name} Benchmark {'counter' if counter else 'gauge'} {f}.\n" \
                     f"# TYPE {name} {'counter' if counter else 'gauge'}\n"
            self.blocks.append((header, [f'{name}{{pod="pod-{i}",zone="zone-{i % 4}"}} ' for i in range(n)], counter))
        self.counters = [np.zeros(len(prefixes)) for _, prefixes, _ in self.blocks]

    def render(self) -> bytes:
        parts = []
        for (header, prefixes, counter), totals in zip(self.blocks, self.counters):
            if counter:
                totals += self.rng.integers(0, 100, len(totals))
                values = totals
            else:
                values = np.round(self.rng.normal(500, 100, len(prefixes)), 2)
            parts.append(header + "".join(p + repr(float(v)) + "\n" for p, v in zip(prefixes, values)))
        return "".join(parts).encode()


def serve_page(port_file: Path, series: int) -> None:
    """Child mode: serve the page on a loopback port chosen by the kernel, written to ``port_file``."""
    page, lock = Page(series), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's name
            with lock:
                body = page.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.rename(port_file)
    server.serve_forever()


class Child:
    """A child process in its own process group, stopped (SIGTERM, then SIGKILL) by :meth:`stop`."""

    def __init__(self, args: list[str], log: Path):
        with open(log, "w") as out:
            self.proc = subprocess.Popen(args, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process_group(self.proc)


def _wait(condition, what: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not within {deadline_s:g}s")


def _metric(url: str, name: str) -> float:
    """The sum of a metric's samples on a Prometheus server's own /metrics (2.42 labels the appended
    samples counter with ``type="float"``)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
              if line.startswith((name + " ", name + "{"))]
    if not values:
        raise ValueError(f"{url}/metrics has no {name}")
    return sum(values)


# -- OpsWatch ------------------------------------------------------------------------------------------

async def _opswatch_run(url: str, db: Path, scrapes: int) -> dict:
    store = SQLiteStore(db)
    store_cpu = [0.0]

    def timed(append):
        def call(batch) -> int:
            t0 = time.thread_time()
            try:
                return append(batch)
            finally:
                store_cpu[0] += time.thread_time() - t0
        return call

    target = Target("bench", url)
    manager = ScrapeManager([target], timed(store.append), interval_seconds=1.0, timeout_seconds=30.0,
                            append_columns=timed(store.append_columns))
    try:
        for _ in range(2):  # warm-up: series creation, connection
            await manager.scrape(target)
            await manager.queue.drain()
        store_cpu[0], samples = 0.0, 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(scrapes):
            samples += len(await manager.scrape(target))
            await manager.queue.drain()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await manager.close()
        store.close()
    return {"samples": samples, "cpu_seconds": cpu, "store_cpu_seconds": store_cpu[0], "wall_seconds": wall}


def measure_opswatch(url: str, scrapes: int, work: Path, run: int) -> dict:
    return asyncio.run(_opswatch_run(url, work / f"opswatch-{run}.db", scrapes))


# -- Prometheus ----------------------------------------------------------------------------------------

def start_prometheus(page_port: int, work: Path) -> tuple[Child, str]:
    binary = "prometheus"
    config = work / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1m}\n"
                      "scrape_configs:\n"
                      f"  - job_name: bench\n    static_configs: [{{targets: ['127.0.0.1:{page_port}']}}]\n")
    port = free_port()
    child = Child([binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
                   f"--web.listen-address=127.0.0.1:{port}"], work / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, "Prometheus ready")
    return child, url




def measure_prometheus(url: str, seconds: float) -> dict:
    """One window of ``seconds``, extended (up to 4 times) until Prometheus has used 0.05 CPU-seconds:
    ``process_cpu_seconds_total`` moves in steps of 0.01 s.

    :raises RuntimeError: when it used no measurable CPU even then.
    """
    samples0 = _metric(url, "prometheus_tsdb_head_samples_appended_total")
    cpu0 = _metric(url, "process_cpu_seconds_total")
    for _ in range(4):
        time.sleep(seconds)
        cpu = _metric(url, "process_cpu_seconds_total") - cpu0
        if cpu >= 0.05:
            break
    if cpu <= 0:
        raise RuntimeError(f"Prometheus used no measurable CPU in {4 * seconds:g} s; raise --prometheus-seconds")
    samples = _metric(url, "prometheus_tsdb_head_samples_appended_total") - samples0
    return {"samples": samples, "cpu_seconds": cpu}


# -- storage: bytes per sample, range query -------------------------------------------------------------

def build_day(db: Path, series: int, hours: float, end_ms: int) -> int:
    """``series`` series (half counters, half gauges) of 15 s samples over ``hours`` ending at ``end_ms``,
    appended one scrape at a time, then compacted. Returns the number of samples."""
    store = SQLiteStore(db, clock=lambda: end_ms / 1000)
    rng = np.random.default_rng(1)
    labels = [{"job": "bench", "instance": f"host-{i // 100}:9100", "pod": f"pod-{i}"} for i in range(series)]
    counter = np.arange(series) % 2 == 0
    totals = np.zeros(series)
    stamps = range(end_ms - int(hours * 3600_000) + QUERY_STEP_MS, end_ms + 1, QUERY_STEP_MS)
    try:
        for t in stamps:
            totals += rng.integers(0, 100, series)
            values = np.where(counter, totals, np.round(rng.normal(500, 100, series), 2)).tolist()
            store.append([Sample("bench_day", l, t, v) for l, v in zip(labels, values)])
        store.compact()
    finally:
        store.close()
    return series * len(stamps)


def measure_query(db: Path, hours: float, end_ms: int, repeats: int, step_ms: int | None) -> float:
    store = SQLiteStore(db, clock=lambda: end_ms / 1000)
    try:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = store.select("bench_day", None, end_ms - int(hours * 3600_000), end_ms, step_ms)
            times.append(time.perf_counter() - t0)
        assert result, "the range query found nothing"
        return statistics.median(times)
    finally:
        store.close()


# -- driver ---------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="opswatch-bench-") as tmp:
        work = Path(tmp)
        port_file = work / "page.port"
        page = Child([sys.executable, "-m", "benchmarks.ingest", "--serve-page", str(port_file),
                      "--series", str(args.series)], work / "page.log")
        prometheus = None
        try:
            _wait(port_file.exists, "the page server")
            page_port = int(port_file.read_text())
            page_url = f"http://127.0.0.1:{page_port}/metrics"
            prometheus, prom_url = start_prometheus(page_port, work)
            ops = [measure_opswatch(page_url, args.scrapes, work, r) for r in range(args.repeats)]
            _wait(lambda: _metric(prom_url, "prometheus_tsdb_head_samples_appended_total") >= 2 * args.series,
                  "Prometheus scraping the page")
            prom = [measure_prometheus(prom_url, args.prometheus_seconds) for _ in range(args.repeats)]
            version = httpx.get(f"{prom_url}/api/v1/status/buildinfo", timeout=10).json()["data"]["version"]
        finally:
            if prometheus is not None:
                prometheus.stop()
            page.stop()
        end_ms = int(time.time() * 1000) // 3600_000 * 3600_000
        db = work / "day.db"
        stored = build_day(db, args.query_series, args.query_hours, end_ms)
        size = sum(p.stat().st_size for p in work.glob("day.db*"))
        raw_query = measure_query(db, args.query_hours, end_ms, max(3, args.repeats), None)
        step_query = measure_query(db, args.query_hours, end_ms, max(3, args.repeats), 3600_000)

    ops_rate = statistics.median(r["samples"] / r["cpu_seconds"] for r in ops)
    prom_rate = statistics.median(r["samples"] / r["cpu_seconds"] for r in prom)
    return {
        "opswatch_samples_per_cpu_second": round(ops_rate),
        "prometheus_samples_per_cpu_second": round(prom_rate),
        "ratio": round(ops_rate / prom_rate, 3),
        "bytes_per_sample": round(size / stored, 3),
        "range_query_seconds_1d_1000_series": round(raw_query, 4),
        "range_query_seconds_1d_1000_series_step_1h": round(step_query, 4),
        "opswatch_store_cpu_us_per_sample": round(
            statistics.median(1e6 * r["store_cpu_seconds"] / r["samples"] for r in ops), 3),
        "opswatch_cpu_us_per_sample": round(statistics.median(1e6 * r["cpu_seconds"] / r["samples"] for r in ops), 3),
        "prometheus_version": version,
        "series": args.series, "scrapes": args.scrapes, "repeats": args.repeats,
        "prometheus_seconds": args.prometheus_seconds, "query_series": args.query_series,
        "query_hours": args.query_hours, "stored_samples": stored,
        "opswatch_runs": ops, "prometheus_runs": prom,
    }


def table(result: dict) -> str:
    rows = [
        ("samples per CPU-second", f"{result['opswatch_samples_per_cpu_second']:,}",
         f"{result['prometheus_samples_per_cpu_second']:,}"),
        ("CPU µs per sample", f"{result['opswatch_cpu_us_per_sample']:.2f}",
         f"{1e6 / result['prometheus_samples_per_cpu_second']:.2f}"),
        ("  of which the store", f"{result['opswatch_store_cpu_us_per_sample']:.2f}", ""),
    ]
    out = [f"{'':28}{'OpsWatch':>14}{'Prometheus ' + result['prometheus_version']:>22}"]
    out += [f"{a:28}{b:>14}{c:>22}" for a, b, c in rows]
    out += [f"ratio OpsWatch / Prometheus: {result['ratio']}",
            f"SQLite bytes per sample ({result['stored_samples']:,} samples): {result['bytes_per_sample']}",
            f"range query, {result['query_hours']:g} h x {result['query_series']} series, raw: "
            f"{result['range_query_seconds_1d_1000_series']} s; 1 h step: "
            f"{result['range_query_seconds_1d_1000_series_step_1h']} s"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--series", type=int, default=10_000, help="series on the page")
    parser.add_argument("--scrapes", type=int, default=20, help="measured OpsWatch scrapes per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; medians are reported")
    parser.add_argument("--prometheus-seconds", type=float, default=20.0, help="one Prometheus window")
    parser.add_argument("--query-series", type=int, default=1000, help="series of the range-query data set")
    parser.add_argument("--query-hours", type=float, default=24.0, help="hours of the range-query data set")
    parser.add_argument("--serve-page", type=Path, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.serve_page:
        serve_page(args.serve_page, args.series)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop the children
    result = run(args)
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()
