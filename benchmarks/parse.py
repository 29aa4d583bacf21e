"""Parse benchmark: prometheus-client's text parser against OpsWatch's cached hot path, on the ingest
benchmark's 10,000-series page (:class:`benchmarks.ingest.Page`, every value changing on every render).

    python -m benchmarks.parse [--json] [--series 10000] [--pages 11]

Reported, in µs per sample (the best of ``--pages`` pages, each after a first page that fills the
caches): ``prometheus_client`` (:func:`collectors.exposition.text_samples`), ``cached_parser``
(:class:`collectors.text_parser.CachedTextParser`) and ``scrape_cache`` (the same plus target labels,
duplicates and staleness: :meth:`collectors.scrape_cache.ScrapeCache.ingest_page`). Single thread, no
HTTP, no store. A benchmark, not a test: its numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from benchmarks.ingest import Page
from collectors.exposition import text_samples
from collectors.scrape_cache import ScrapeCache
from collectors.targets import ScrapeOptions
from collectors.text_parser import CachedTextParser


def best_us_per_sample(parse: Callable[[str], object], pages: list[str], series: int) -> float:
    times = []
    for page in pages:
        t0 = time.perf_counter()
        parse(page)
        times.append(time.perf_counter() - t0)
    return round(min(times) / series * 1e6, 3)


def run(series: int, pages: int) -> dict:
    source = Page(series)
    first, *rest = [source.render().decode() for _ in range(pages + 1)]
    parser = CachedTextParser()
    cache = ScrapeCache({"job": "bench", "instance": "127.0.0.1:9100"}, ScrapeOptions())
    parser.parse(first)
    cache.ingest_page(first, "text/plain; version=0.0.4", 0)
    return {
        "series": series, "pages": pages,
        "prometheus_client_us_per_sample": best_us_per_sample(text_samples, rest, series),
        "cached_parser_us_per_sample": best_us_per_sample(parser.parse, rest, series),
        "scrape_cache_us_per_sample": best_us_per_sample(
            lambda page: cache.ingest_page(page, "text/plain; version=0.0.4", 1), rest, series),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=11)
    args = parser.parse_args(argv)
    result = run(args.series, args.pages)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>34}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
