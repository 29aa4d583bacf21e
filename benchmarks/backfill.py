"""History backfill benchmark: seconds to write 1 and 14 days of the reference platform into a fresh store.

    python -m benchmarks.backfill [--json] [--days 1 14] [--repeats 3] [--faults 10] [--seed 1]

For each ``--days``, runs :func:`sample_platform.backfill.backfill` ``--repeats`` times into a new
temporary data directory (60 s step, ending at a fixed time, so every repeat writes the same samples) and
reports the median wall ``seconds`` (and ``cpu_seconds`` of this process), ``samples`` written and ``samples_per_second``, plus the store's file size
in bytes per sample. Prints a table, or with ``--json`` one JSON object. A benchmark, not a test: its
numbers depend on the machine and on what else runs on it (the issue asks for 14 days in under 60 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from sample_platform.backfill import backfill

END = 1_795_046_400.0  # 2026-11-19T00:00:00Z: fixed, so repeats and machines write the same history
RETENTION_MS = 10 * 365 * 86_400_000  # keep every sample of the fixed range, however long ago it ends


def measure(days: float, repeats: int, faults: int, seed: int) -> dict:
    """Median over ``repeats`` fresh backfills of ``days`` days."""
    seconds, cpu, samples, sizes = [], [], 0, []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="opswatch-backfill-") as tmp:
            cpu0 = time.process_time()
            result = backfill(tmp, days, seed, faults, end=END, retention_ms=RETENTION_MS)
            cpu.append(time.process_time() - cpu0)
            seconds.append(result.seconds)
            samples = result.samples
            sizes.append(sum(f.stat().st_size for f in Path(tmp).iterdir() if f.name.startswith("opswatch.db")))
    median = statistics.median(seconds)
    return {"days": days, "seconds": round(median, 3), "seconds_all": [round(s, 3) for s in seconds],
            "cpu_seconds": round(statistics.median(cpu), 3),
            "samples": samples, "samples_per_second": round(samples / median), "series": result.series,
            "bytes_per_sample": round(statistics.median(sizes) / samples, 3)}


def table(result: dict) -> str:
    lines = [f"{'days':>5} {'seconds':>9} {'cpu s':>7} {'samples':>12} {'samples/s':>11} {'series':>7} {'B/sample':>9}"]
    for r in result["runs"]:
        lines.append(f"{r['days']:>5g} {r['seconds']:>9.2f} {r['cpu_seconds']:>7.2f} {r['samples']:>12,} "
                     f"{r['samples_per_second']:>11,} "
                     f"{r['series']:>7,} {r['bytes_per_sample']:>9.2f}")
    lines.append(f"(median of {result['repeats']} runs each; load average at the end {result['load_average']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backfill", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--days", type=float, nargs="+", default=[1.0, 14.0], help="default: 1 14")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; the median is reported")
    parser.add_argument("--faults", type=int, default=10, help="faults drawn per backfill (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    runs = [measure(days, args.repeats, args.faults, args.seed) for days in args.days]
    result = {"benchmark": "backfill", "step_seconds": 60, "repeats": args.repeats, "runs": runs,
              "load_average": round(os.getloadavg()[0], 2)}
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
