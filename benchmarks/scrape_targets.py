"""Scrape-loop benchmark: many targets on one interval, measuring interval jitter and CPU.

    python -m benchmarks.scrape_targets [--json] [--targets 1000] [--interval 15] [--series 100]
                                        [--seconds 60]

A child process serves ``--targets`` pages of ``--series`` series each on loopback (values change on
every request). This process scrapes them all with :class:`collectors.scrape.ScrapeManager` for
``--seconds`` (samples go to a counting ``append``; the store has its own benchmark,
``benchmarks.ingest``). Reported: the jitter of each target's scrape times (the gap between two
consecutive scrapes of a target minus the interval, in ms: median, 99th percentile, worst), the CPU
this process used per wall-clock second (``time.process_time``, all threads), and samples per
CPU-second. A benchmark, not a test: its numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from collectors.scrape import ScrapeManager, ScrapeMetrics, Target

SERVER = """
import random, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
series = int(sys.argv[1])
lines = [f'bench_value{{series="{i}"}} ' for i in range(series)]
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = "".join(f"{line}{random.random():.4f}\\n" for line in lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # the scraper hanging up at the end of the run
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Counter:
    """The ``append`` of the run: counts samples and keeps each target's scrape timestamps."""

    def __init__(self):
        self.samples = 0
        self.scrapes: dict[str, list[int]] = {}

    def __call__(self, samples) -> int:
        self.samples += len(samples)
        for s in samples:
            if s.name == "up":
                self.scrapes.setdefault(s.labels["instance"], []).append(s.timestamp_ms)
        return len(samples)


def run(targets: int, interval: float, series: int, seconds: float) -> dict:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(series)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        port = int(server.stdout.readline())
        counter, metrics = Counter(), ScrapeMetrics()
        scrape_targets = [Target("bench", f"http://127.0.0.1:{port}/t/{i}",
                                 (("instance", f"t-{i}"), ("job", "bench"))) for i in range(targets)]
        manager = ScrapeManager(scrape_targets, counter, interval_seconds=interval,
                                timeout_seconds=min(10.0, interval), metrics=metrics)

        async def main() -> tuple[float, float]:
            task = asyncio.create_task(manager.run())
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return cpu, wall

        cpu, wall = asyncio.run(main())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
    gaps = np.concatenate([np.diff(ts) for ts in counter.scrapes.values() if len(ts) > 1] or [np.array([])])
    jitter = np.abs(gaps - interval * 1000)
    failed = sum(metrics.registry.get_sample_value("opswatch_scrape_failures_total", {"job": "bench", "reason": r})
                 or 0 for r in ("fetch", "parse"))
    return {
        "targets": targets, "interval_seconds": interval, "series_per_target": series, "seconds": round(wall, 1),
        "scrapes": int(sum(len(ts) for ts in counter.scrapes.values())), "failed_scrapes": int(failed),
        "jitter_ms_p50": float(np.percentile(jitter, 50)) if len(jitter) else None,
        "jitter_ms_p99": float(np.percentile(jitter, 99)) if len(jitter) else None,
        "jitter_ms_max": float(jitter.max()) if len(jitter) else None,
        "cpu_seconds_per_second": round(cpu / wall, 3),
        "samples_per_cpu_second": round(counter.samples / cpu) if cpu else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds")
    parser.add_argument("--series", type=int, default=100, help="series per target page")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run")
    args = parser.parse_args(argv)
    result = run(args.targets, args.interval, args.series, args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
