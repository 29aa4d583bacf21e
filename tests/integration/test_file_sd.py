"""file_sd_configs end to end: `opswatch run` follows a target file as it is rewritten, marks the series of
targets that went away stale, and keeps its targets when the file turns bad."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pandas as pd
import pytest

from collectors.samples import is_stale_nan
from storage.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.integration.test_run_real_exporters import wait_http

pytestmark = pytest.mark.integration


class Exporter:
    """A real HTTP server on loopback serving a one-series page whose value is ``value``."""

    def __init__(self, value: float):
        page = f"# TYPE demo_value gauge\ndemo_value {value}\n".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def replace(path, content: str) -> None:
    """Write ``path`` the way file_sd writers do: a temporary file renamed over it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


def wait_until(condition, what: str, deadline_s: float = 10):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (httpx.HTTPError, KeyError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {deadline_s}s")


def test_run_follows_a_rewritten_target_file(spawn, tmp_path):
    a, b = Exporter(1.0), Exporter(2.0)
    try:
        (tmp_path / "targets").mkdir()
        targets = tmp_path / "targets" / "demo.json"
        replace(targets, json.dumps([{"targets": [a.address], "labels": {"team": "a"}}]))
        web = free_port()
        config = tmp_path / "opswatch.yaml"
        config.write_text(f"""
data_dir: {tmp_path / 'data'}
scrape_interval: 500ms
scrape_configs:
  - job_name: demo
    file_sd_configs: [{{files: ["targets/*.json"]}}]
""")
        run = spawn([sys.executable, "-m", "opswatch", "run", "--config", str(config), "--port", str(web),
                     "--duration", "14"])
        wait_http(f"http://127.0.0.1:{web}/-/healthy")

        def up_targets() -> dict[str, str]:
            body = httpx.get(f"http://127.0.0.1:{web}/api/v1/targets", timeout=5).json()
            return {t["instance"]: t["labels"].get("team") for t in body["data"]["activeTargets"]
                    if t["health"] == "up"}

        assert wait_until(lambda: up_targets() == {a.address: "a"}, "target a is scraped")
        time.sleep(1)
        replace(targets, json.dumps([{"targets": [b.address], "labels": {"team": "b"}}]))
        assert wait_until(lambda: up_targets() == {b.address: "b"}, "the rewritten file's target b replaces a")

        targets.write_text("[{not json")  # a bad edit: the targets stay, the error is counted
        errors = wait_until(lambda: [line for line in httpx.get(f"http://127.0.0.1:{web}/metrics").text.splitlines()
                                     if line.startswith("opswatch_sd_file_read_errors_total ")
                                     and float(line.split()[1]) >= 1], "the read error is counted")
        assert errors
        time.sleep(1.5)
        assert up_targets() == {b.address: "b"}
        assert run.wait(timeout=30) == 0
    finally:
        a.close()
        b.close()

    store = SQLiteStore(tmp_path / "data" / "opswatch.db")
    try:
        series = {ts.labels["instance"]: ts.values for ts in store.select("demo_value")}
        a_values, b_values = series[a.address], series[b.address]
        assert len(a_values) >= 3 and set(a_values.iloc[:-1]) == {1.0}
        # a's last sample is its staleness marker (the special NaN, bit for bit), written when it left the file
        assert is_stale_nan(a_values.iloc[-1])
        assert a_values.index[-1] <= b_values.index[0] + pd.Timedelta(seconds=1)
        assert len(b_values) >= 5 and set(b_values) == {2.0}
        [a_up] = store.select("up", {"instance": a.address})
        assert is_stale_nan(a_up.values.iloc[-1])  # synthetic series too
    finally:
        store.close()
