"""Smoke test of the ingest benchmark (benchmarks/ingest.py) at tiny sizes: it starts its page server and
a real Prometheus, measures both, builds and queries its storage data set, and prints one JSON object.
The numbers are not checked (a benchmark, not a test), only that each one was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_the_ingest_benchmark_runs_at_tiny_sizes(spawn):
    proc = spawn([sys.executable, "-m", "benchmarks.ingest", "--json", "--series", "100", "--scrapes", "2",
                  "--repeats", "1", "--prometheus-seconds", "2", "--query-series", "5", "--query-hours", "3"],
                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out)
    for key in ("opswatch_samples_per_cpu_second", "prometheus_samples_per_cpu_second", "ratio", "bytes_per_sample",
                "range_query_seconds_1d_1000_series"):
        assert result[key] > 0, key
    assert result["opswatch_runs"][0]["samples"] >= 2 * 100  # two scrapes of 100 series (+ synthetic ones)
    assert result["stored_samples"] == 5 * 3 * 240
