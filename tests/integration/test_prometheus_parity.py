"""Parity with Prometheus: for node_exporter, the values OpsWatch stored equal what a real Prometheus
scraping the same exporter stored, series for series (compared through Prometheus's query API).

Both scrape the same node_exporter every second under the same ``job``/``instance``, but at different
instants, so the comparison is made only where it can be exact:

* the **series set** (name + labels, synthetic ``up``/``scrape_*`` series aside) must be equal; a series
  only one side has is tolerated only if it came or went during the run (it is then reported). Per scrape,
  OpsWatch must have stored as many series as its ``scrape_samples_scraped`` says, and that count must be
  Prometheus's;
* series whose value is **constant** on both sides over the run must have exactly the same value; a named
  list (MemTotal, uname, filesystem sizes, ...) must be among them, and is also checked against
  Prometheus's instant query at the end;
* every **counter** (``node_cpu_seconds_total`` and the others Prometheus's metadata calls counters)
  read by OpsWatch at time t must lie between Prometheus's readings bracketing t.

Then the text format beyond what node_exporter writes: a fixed page (escapes, label clashes, special
floats, explicit timestamp...) served from the test, where every value can be compared exactly. Two
differences found there were bugs of collectors/exposition.py, now fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from collectors.config import ScrapeConfig
from collectors.discovery import TargetDiscovery
from collectors.exposition import parse_text
from collectors.samples import is_stale_nan, labels_key
from collectors.scrape import ScrapeManager, Target
from storage.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.integration.test_prometheus_api_source import (
    Stack,
    prom_api,
    same_float,
    start_node_and_prometheus,
    start_prometheus,
    wait_for,
)
from tests.integration.test_run_real_exporters import binary, wait_http

pytestmark = pytest.mark.integration

# Collectors whose series set does not change from one scrape to the next (no per-process, per-interface
# or per-interrupt series that come and go). node_exporter's own go_*/process_*/promhttp_* stay on.
NODE_FLAGS = (
    "--collector.disable-defaults",
    "--collector.cpu",
    "--collector.meminfo",
    "--collector.filesystem",
    "--collector.uname",
    "--collector.loadavg",
)
SCRAPE_SECONDS = 5.5
# Per-scrape series each scraper writes itself (the same five on both sides).
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added"}
# Constant for the life of the machine/exporter: every series of these must be equal, exactly.
CONSTANT = ["node_memory_MemTotal_bytes", "node_memory_SwapTotal_bytes", "node_uname_info",
            "node_filesystem_size_bytes", "node_filesystem_files", "node_filesystem_readonly",
            "node_scrape_collector_success", "go_info", "process_max_fds", "process_start_time_seconds"]
# Values that describe the scrape being served rather than the node: with two scrapers they can
# legitimately differ between them while staying constant for each (e.g. one scraper always arrives
# while the other's request is in flight).
SCRAPER_DEPENDENT = {"promhttp_metric_handler_requests_in_flight", "go_goroutines", "go_threads", "process_open_fds"}
# Prometheus must have scraped at least this long after OpsWatch's last scrape before we compare.
TAIL_MS = 1500

Key = tuple[str, str]  # (metric name, labels_key(labels without __name__))


def _points(series_values) -> list[tuple[int, float]]:
    return [(round(t * 1000), float(v)) for t, v in series_values]


def _constant(values: list[float]) -> bool:
    return all(same_float(v, values[0]) for v in values)


def _run_opswatch(manager: ScrapeManager, seconds: float) -> None:
    async def main():
        task = asyncio.create_task(manager.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())  # also waits for an append still running in its worker thread


def test_opswatch_stores_what_prometheus_stores_for_node_exporter(spawn, tmp_path):
    stack = start_node_and_prometheus(spawn, tmp_path, node_flags=NODE_FLAGS, job="node")
    url = stack.prom_url
    instance = stack.node_instance
    store = SQLiteStore(tmp_path / "opswatch.db")
    try:
        target = Target("node", f"http://{instance}/metrics")
        assert target.instance == instance
        manager = ScrapeManager([target], store.append, interval_seconds=1.0, append_columns=store.append_columns)
        _run_opswatch(manager, SCRAPE_SECONDS)
        health = manager.health[target]
        assert health.health == "up" and not health.last_error, health

        # -- what OpsWatch stored --
        [up] = store.select("up", {"job": "node", "instance": instance})
        assert set(up.values) == {1.0}, up.values
        scrape_times = up.values.index.asi8.tolist()
        assert len(scrape_times) >= 4, f"only {len(scrape_times)} OpsWatch scrapes in {SCRAPE_SECONDS}s"
        first, last = scrape_times[0], scrape_times[-1]
        ops: dict[Key, list[tuple[int, float]]] = {}
        for name in store.metric_names():
            for ts in store.select(name):
                assert ts.labels["job"] == "node" and ts.labels["instance"] == instance, (name, ts.labels)
                ops[(name, labels_key(ts.labels))] = list(zip(ts.values.index.asi8.tolist(), ts.values.tolist()))
        ops_set = {(name, labels_key(labels)) for name in store.metric_names() if name not in SYNTHETIC
                   for labels in store.series(name)}
        assert ops_set == {k for k in ops if k[0] not in SYNTHETIC}
        assert len(ops_set) > 100

        # -- what Prometheus stored: wait for a scrape well after OpsWatch's last, then read raw samples --
        def prometheus_caught_up() -> int | None:
            [r] = prom_api(url, "/api/v1/query", {"query": 'timestamp(up{job="node"})'})["result"]
            ts = round(float(r["value"][1]) * 1000)
            return ts if ts >= last + TAIL_MS else None

        eval_ms = wait_for(prometheus_caught_up, "Prometheus scrapes after OpsWatch stopped", stack, deadline_s=10)
        window_start = first - 2000
        raw = prom_api(url, "/api/v1/query", {  # a range selector at an instant: raw samples, own timestamps
            "query": f'{{job="node",instance="{instance}"}}[{eval_ms - window_start}ms]', "time": eval_ms / 1000})
        assert raw["resultType"] == "matrix"
        prom: dict[Key, list[tuple[int, float]]] = {}
        for series in raw["result"]:
            labels = dict(series["metric"])
            prom[(labels.pop("__name__"), labels_key(labels))] = _points(series["values"])
        base_key = labels_key({"instance": instance, "job": "node"})
        prom_scrapes = [t for t, _ in prom[("up", base_key)]]
        assert {v for _, v in prom[("up", base_key)]} == {1.0}
        assert prom_scrapes[0] < first and prom_scrapes[-1] >= last + TAIL_MS

        # -- 1. the series set: /api/v1/series over OpsWatch's run vs SQLiteStore.series --
        listed = prom_api(url, "/api/v1/series", {"match[]": '{job="node"}', "start": first / 1000, "end": last / 1000})
        prom_set = {(s["__name__"], labels_key({k: v for k, v in s.items() if k != "__name__"})) for s in listed}
        prom_set = {k for k in prom_set if k[0] not in SYNTHETIC}

        # Per scrape, which series it wrote (all samples of a scrape carry its timestamp). A series missing
        # from some scrape of its own side came or went during the run: the only excusable difference.
        def missing_per_scrape(side, scrapes, universe):
            at = {t: set() for t in scrapes}
            for key in universe:
                for t, _ in side.get(key, []):
                    if t in at:
                        at[t].add(key)
            return {t: universe - keys for t, keys in at.items()}

        ops_missing = missing_per_scrape(ops, scrape_times, ops_set)
        prom_run = [t for t in prom_scrapes if first - 1000 <= t <= last + 1000]
        prom_missing = missing_per_scrape(prom, prom_run, prom_set)
        churn = set().union(*ops_missing.values(), *prom_missing.values())
        # OpsWatch stored everything it parsed: per scrape, its series count is its scrape_samples_scraped.
        ops_scraped = dict(ops[("scrape_samples_scraped", base_key)])
        stored_per_scrape = {t: len(ops_set - ops_missing[t]) for t in scrape_times}
        assert stored_per_scrape == {t: ops_scraped[t] for t in scrape_times}, (
            f"OpsWatch stored fewer series than it scraped; per scrape (ts: stored vs scraped, missing): "
            f"{[(t, stored_per_scrape[t], ops_scraped[t], sorted(ops_missing[t])) for t in scrape_times]}")

        only_prom, only_ops = sorted(prom_set - ops_set), sorted(ops_set - prom_set)
        unexplained = [k for k in only_prom + only_ops if k not in churn]
        assert not unexplained, (
            f"series in every scrape of one side but absent from the other:\n"
            f"only in Prometheus: {[k for k in only_prom if k in unexplained]}\n"
            f"only in OpsWatch: {[k for k in only_ops if k in unexplained]}"
        )
        if churn:
            warnings.warn(f"series that came or went during the run (excused): {sorted(churn)}; "
                          f"Prometheus only {only_prom}, OpsWatch only {only_ops}")
        common = prom_set & ops_set
        prom_cpu = [s for s in listed if s["__name__"] == "node_cpu_seconds_total"]
        cpu_modes = {name: {(s["cpu"], s["mode"]) for s in side}
                     for name, side in (("Prometheus", prom_cpu), ("OpsWatch", store.series("node_cpu_seconds_total")))}
        assert cpu_modes["Prometheus"] == cpu_modes["OpsWatch"] and {m for _, m in cpu_modes["OpsWatch"]} >= {"idle"}

        # -- 2. constant series: exactly the same value --
        checked_constant = 0
        differing = []
        for key in sorted(common):
            if key[0] in SCRAPER_DEPENDENT:
                continue
            pv, ov = [v for _, v in prom[key]], [v for _, v in ops[key]]
            if _constant(pv) and _constant(ov):
                checked_constant += 1
                if not same_float(pv[-1], ov[-1]):
                    differing.append((key, pv[-1], ov[-1]))
        assert not differing, f"constant series with different values (series, Prometheus, OpsWatch): {differing}"
        for name in CONSTANT:
            keys = [k for k in common if k[0] == name]
            assert keys, f"no {name} on both sides"
            moving = [k for k in keys if not (_constant([v for _, v in prom[k]]) and _constant([v for _, v in ops[k]]))]
            assert not moving, f"{name} is expected constant but changed: {moving}"

        # ... and the named ones through Prometheus's instant query at the end, against OpsWatch's latest sample
        pattern = "|".join(CONSTANT)
        latest = prom_api(url, "/api/v1/query",
                          {"query": f'{{__name__=~"{pattern}",job="node"}}', "time": eval_ms / 1000})["result"]
        got = {}
        for r in latest:
            labels = dict(r["metric"])
            got[(labels.pop("__name__"), labels_key(labels))] = float(r["value"][1])
        assert set(got) == {k for k in common if k[0] in CONSTANT}
        assert all(same_float(v, ops[k][-1][1]) for k, v in got.items()), {
            k: (v, ops[k][-1][1]) for k, v in got.items() if not same_float(v, ops[k][-1][1])}

        # the number of samples each parsed per page (prometheus-client's parser vs Prometheus's own)
        prom_counts = {v for t, v in prom[("scrape_samples_scraped", base_key)] if t in prom_missing}
        if not churn:
            assert prom_counts == set(ops_scraped.values()) == {float(len(ops_set))}, (prom_counts, ops_scraped)

        # -- 3. counters: OpsWatch's reading at t lies between Prometheus's readings bracketing t --
        # A sample is stamped when its scrape starts and the exporter reads the kernel before the scrape
        # ends, so a reading lies within [t, t + that scrape's duration]. With a margin covering the
        # longest scrape of either side, Prometheus's sample at <= t - margin was read before OpsWatch's,
        # and its sample at >= t + margin after: a monotonic counter must lie between the two.
        durations = [v for _, v in ops[("scrape_duration_seconds", base_key)]]
        durations += [v for _, v in prom[("scrape_duration_seconds", base_key)]]
        margin_ms = math.ceil(max(durations) * 1000) + 5
        assert margin_ms < 500, f"scrapes took up to {max(durations)}s: too slow to bracket 1 s scrapes"
        metadata = prom_api(url, "/api/v1/targets/metadata", {"match_target": '{job="node"}'})
        counters = {m["metric"] for m in metadata if m["type"] == "counter"}
        assert "node_cpu_seconds_total" in counters
        checks, outside = {}, []
        for key in sorted(k for k in common if k[0] in counters):
            samples = prom[key]
            for t, v in ops[key]:
                before = [pv for pt, pv in samples if pt <= t - margin_ms]
                after = [pv for pt, pv in samples if pt >= t + margin_ms]
                if not before or not after:
                    continue
                checks[key[0]] = checks.get(key[0], 0) + 1
                if not before[-1] <= v <= after[0]:
                    outside.append((key, t, before[-1], v, after[0]))
        assert not outside, f"counter readings outside Prometheus's bracket (series, t, before, OpsWatch, after): " \
                            f"{outside}"
        cpu_series = len([k for k in common if k[0] == "node_cpu_seconds_total"])
        assert checks["node_cpu_seconds_total"] >= 3 * cpu_series, checks

        print(f"\nparity: {len(common)} series equal sets; {checked_constant} constant series equal; "
              f"{sum(checks.values())} counter readings bracketed over {len(checks)} counters; "
              f"{len(scrape_times)} OpsWatch scrapes, {len(prom_scrapes)} Prometheus scrapes; margin {margin_ms} ms")
    finally:
        store.close()


# -- the text format beyond node_exporter: a page served from here, scraped by both ----------------------

TRICKY_PAGE = """\
# HELP plain_counter A counter declared without _total: Prometheus keeps the name as written.
# TYPE plain_counter counter
plain_counter 5
# TYPE escapes gauge
escapes{{quote="q\\"b",backslash="a\\\\b",newline="l1\\nl2",unknown="tab\\tx",utf8="h\u00e9llo \u2603"}} 1
# TYPE clash gauge
clash{{job="other",instance="elsewhere",exported_job="taken"}} 3
# TYPE specials gauge
specials{{v="nan"}} NaN
specials{{v="pinf"}} +Inf
specials{{v="ninf"}} -Inf
specials{{v="subnormal"}} 4.9e-324
specials{{v="2^53+1"}} 9007199254740993
specials{{v="exp"}} 1.5E+3
specials{{v="tenth"}} 0.1
trailing_comma{{a="1",}} 7
untyped_total 8
# a plain comment
# TYPE explicit_ts gauge
explicit_ts 9 {ts}
# TYPE h histogram
h_bucket{{le="0.1"}} 1
h_bucket{{le="+Inf"}} 2
h_sum 0.3
h_count 2
# TYPE s summary
s{{quantile="0.5"}} NaN
s_sum 0
s_count 0
"""


class PageServer:
    """Serves an exposition page at /metrics on loopback, from a thread of this process. ``page`` may be
    replaced between scrapes; with ``content_type`` OpenMetrics it is served as such to clients that ask."""

    def __init__(self, page: str, content_type: str = "text/plain; version=0.0.4; charset=utf-8"):
        self.page = page
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = server.page.encode()
                kind = content_type
                if "openmetrics" in content_type and "openmetrics" not in self.headers.get("Accept", ""):
                    kind = "text/plain; version=0.0.4; charset=utf-8"  # never forced on a client that did not ask
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.instance = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _both_scrape(spawn, tmp_path, page: str, seconds: float = 2.5, content_type: str | None = None):
    """Prometheus and OpsWatch scrape ``page`` (job "static") every second; return each side's samples
    as {(name, labels_key): [(ts_ms, value), ...]}, and the page's ``instance``."""
    server = PageServer(page, content_type) if content_type else PageServer(page)
    store = SQLiteStore(tmp_path / "opswatch.db")
    try:
        stack = start_prometheus(spawn, tmp_path, "static", server.instance)
        target = Target("static", f"http://{server.instance}/metrics")
        manager = ScrapeManager([target], store.append, interval_seconds=1.0, append_columns=store.append_columns)
        _run_opswatch(manager, seconds)
        assert manager.health[target].health == "up", manager.health[target]
        ops = {(name, labels_key(ts.labels)): list(zip(ts.values.index.asi8.tolist(), ts.values.tolist()))
               for name in store.metric_names() for ts in store.select(name)}
        now_ms = int(time.time() * 1000)
        raw = prom_api(stack.prom_url, "/api/v1/query",
                       {"query": '{job="static"}[60s]', "time": now_ms / 1000})["result"]
        prom = {}
        for series in raw:
            labels = dict(series["metric"])
            prom[(labels.pop("__name__"), labels_key(labels))] = _points(series["values"])
        return prom, ops, server.instance
    finally:
        store.close()
        server.close()


def test_tricky_text_format_page_is_stored_as_prometheus_stores_it(spawn, tmp_path):
    """Escapes, label clashes, NaN/±Inf/subnormal/2^53+1, trailing comma, counter without _total,
    untyped, explicit timestamp, histogram and summary: same series, same values, same timestamps."""
    ts = int(time.time() * 1000) - 5000
    page = TRICKY_PAGE.format(ts=ts)
    assert parse_text(page, 0)  # the page itself is valid for OpsWatch's parser
    prom, ops, _ = _both_scrape(spawn, tmp_path, page)
    prom_set = {k for k in prom if k[0] not in SYNTHETIC}
    ops_set = {k for k in ops if k[0] not in SYNTHETIC}
    assert prom_set == ops_set, (
        f"only in Prometheus: {sorted(prom_set - ops_set)}\nonly in OpsWatch: {sorted(ops_set - prom_set)}")
    assert len(ops_set) == 20
    differing = {k: (prom[k][-1][1], ops[k][-1][1]) for k in ops_set if not same_float(prom[k][-1][1], ops[k][-1][1])}
    assert not differing, f"(Prometheus, OpsWatch) values differ: {differing}"
    [explicit] = [k for k in ops_set if k[0] == "explicit_ts"]
    assert [t for t, _ in prom[explicit]] == [t for t, _ in ops[explicit]] == [ts]
    [scraped] = [k for k in ops if k[0] == "scrape_samples_scraped"]
    assert {v for _, v in prom[scraped]} == {v for _, v in ops[scraped]} == {20.0}


def test_empty_label_value_is_dropped_as_prometheus_does(spawn, tmp_path):
    prom, ops, instance = _both_scrape(spawn, tmp_path, 'empty_label{x="",y="1"} 2\n')
    prom_set, ops_set = {k for k in prom if k[0] == "empty_label"}, {k for k in ops if k[0] == "empty_label"}
    assert prom_set == {("empty_label", labels_key({"instance": instance, "job": "static", "y": "1"}))}
    assert ops_set == prom_set, f"Prometheus: {prom_set}, OpsWatch: {ops_set}"


def test_explicit_timestamps_keep_every_millisecond():
    stamps = [1_085_461_411_922, 1_088_059_278_222, 2_180_303_676_140, 1_700_000_000_123]
    got = [s.timestamp_ms for s in parse_text("".join(f'x{{i="{i}"}} 1 {ms}\n' for i, ms in enumerate(stamps)), 0)]
    assert got == stamps


# -- relabeling: the same scrape config in Prometheus's file and in OpsWatch's -----------------------------

RELABEL_JOB = """\
job_name: relabel
scrape_interval: 1s
scrape_timeout: 1s
static_configs:
  - targets: ["{node}", "127.0.0.1:{dead}", "localhost"]
    labels: {{env: parity, __tmp_region: eu}}
  - targets: ["127.0.0.1:{dropped}"]
    labels: {{drop_me: "yes"}}
relabel_configs:
  - {{source_labels: [drop_me], regex: "yes", action: drop}}
  - {{source_labels: [__address__], modulus: 8, target_label: shard, action: hashmod}}
  - {{source_labels: [__address__], regex: "(.*):.*", target_label: host}}
  - {{regex: "__tmp_(.*)", replacement: "${{1}}", action: labelmap}}
  - {{source_labels: [env, shard], separator: "-", target_label: env_shard, action: uppercase}}
  - {{source_labels: [job], target_label: instance, action: dropequal}}
  - {{source_labels: [env], target_label: env, action: keepequal}}
  - {{source_labels: [__address__], regex: "localhost", target_label: __metrics_path__, replacement: /nowhere}}
metric_relabel_configs:
  - {{source_labels: [__name__], regex: "go_.*|process_.*|promhttp_.*", action: drop}}
  - {{source_labels: [__name__], regex: "node_load(1|5|15)", target_label: __name__, replacement: "load_${{1}}m"}}
  - {{source_labels: [__name__, mode], regex: "node_cpu_seconds_total;(?:nice|steal|irq|softirq)", action: drop}}
  - {{regex: "fstype|domainname", action: labeldrop}}
  - {{source_labels: [__name__], modulus: 4, target_label: name_shard, action: hashmod}}
  - {{source_labels: [mode], target_label: mode_upper, action: uppercase}}
  - {{source_labels: [device, mountpoint], separator: "@", regex: "(.+)@(.+)", target_label: fs, replacement: "$2 on $1"}}
"""


def _start_prometheus_with(spawn, tmp_path, job_yaml: str) -> Stack:
    """A Prometheus whose only scrape config is ``job_yaml`` (one job, as YAML)."""
    prom = free_port()
    stack = Stack(f"http://127.0.0.1:{prom}", tmp_path)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                                      "scrape_configs": [yaml.safe_load(job_yaml)]}))
    with open(tmp_path / "prometheus.log", "w") as log:
        spawn([binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom}"], stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"{stack.prom_url}/-/ready")
    return stack


def test_same_relabel_configs_give_the_same_series_as_prometheus(spawn, tmp_path):
    """Target relabeling (drop, hashmod, replace, labelmap, uppercase, dropequal, __metrics_path__, the default
    port, keepequal) and metric relabeling (drop, rename, labeldrop, hashmod, uppercase of a missing label) in
    one scrape config, given word for word to Prometheus and to OpsWatch: the stored series sets are equal,
    synthetic series (which carry the target labels) included."""
    node = free_port()
    with open(tmp_path / "node_exporter.log", "w") as log:
        spawn([binary("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{node}", *NODE_FLAGS],
              stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{node}/metrics")
    job_yaml = RELABEL_JOB.format(node=f"127.0.0.1:{node}", dead=free_port(), dropped=free_port())
    stack = _start_prometheus_with(spawn, tmp_path, job_yaml)

    job = ScrapeConfig.model_validate(yaml.safe_load(job_yaml)).with_defaults(1.0, 1.0)
    discovery = TargetDiscovery([job])
    assert len(discovery.targets()) == 3 and discovery.dropped == {"relabel": 1}
    store = SQLiteStore(tmp_path / "opswatch.db")
    try:
        start_ms = int(time.time() * 1000)
        _run_opswatch(ScrapeManager([], store.append, interval_seconds=1.0, discovery=discovery,
                                     append_columns=store.append_columns), 4.5)
        ops = {(name, labels_key(labels)) for name in store.metric_names() for labels in store.series(name)}

        def prometheus_has_scraped_all() -> bool:
            result = prom_api(stack.prom_url, "/api/v1/query", {"query": 'count(up{job="relabel"})'})["result"]
            return bool(result) and result[0]["value"][1] == "3"

        wait_for(prometheus_has_scraped_all, "Prometheus scrapes the three relabeled targets", stack)
        time.sleep(2)
        listed = prom_api(stack.prom_url, "/api/v1/series",
                          {"match[]": '{job="relabel"}', "start": start_ms / 1000, "end": time.time()})
        prom = {(s["__name__"], labels_key({k: v for k, v in s.items() if k != "__name__"})) for s in listed}
    finally:
        store.close()

    assert prom == ops, (f"only in Prometheus: {sorted(prom - ops)[:10]}\nonly in OpsWatch: {sorted(ops - prom)[:10]}")
    ups = {key for key in ops if key[0] == "up"}
    assert len(ups) == 3  # node_exporter, the dead port and localhost:80 (a default port, as Prometheus 2.x adds)
    assert any('instance="localhost:80"' in labels for _, labels in ups)
    names = {name for name, _ in ops}
    assert {"load_1m", "load_5m", "load_15m"} <= names and not any(n.startswith("go_") for n in names)
    assert any("name_shard" in labels for _, labels in ops) and len(ops) > 50
    print(f"\nrelabel parity: {len(ops)} series, equal sets")


# -- OpenMetrics: the same page, negotiated as OpenMetrics by both ------------------------------------------

OPENMETRICS_PAGE = """\
# TYPE requests counter
# HELP requests Requests served.
requests_total{{code="200"}} 1027
requests_created{{code="200"}} 1699999000.5
# TYPE build info
build_info{{version="1.2.3"}} 1
# TYPE state stateset
state{{state="ready"}} 1
state{{state="starting"}} 0
# TYPE queue_size gaugehistogram
queue_size_bucket{{le="10"}} 4
queue_size_bucket{{le="+Inf"}} 6
queue_size_gcount 6
queue_size_gsum 33
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
latency_seconds_bucket{{le="0.1"}} 2 # {{trace_id="abc"}} 0.05
latency_seconds_bucket{{le="+Inf"}} 3
latency_seconds_count 3
latency_seconds_sum 1.5
# TYPE rpc_seconds summary
rpc_seconds{{quantile="0.5"}} NaN
rpc_seconds_count 0
rpc_seconds_sum 0
# TYPE temperature_celsius gauge
temperature_celsius{{room="a\\\\b \\"c\\"\\nd"}} -Inf
# TYPE mystery unknown
mystery 42
# TYPE stamped gauge
stamped 7 {ts}
# EOF
"""


def test_openmetrics_page_is_stored_as_prometheus_stores_it(spawn, tmp_path):
    """Counters with _created, info, stateset, gauge histogram, histogram with an exemplar, summary, unknown,
    escapes, -Inf/NaN and a timestamp in fractional seconds, negotiated as OpenMetrics by both scrapers."""
    ts_s = f"{time.time() - 5:.4f}"
    page = OPENMETRICS_PAGE.format(ts=ts_s)
    prom, ops, _ = _both_scrape(spawn, tmp_path, page, content_type="application/openmetrics-text; version=1.0.0")
    prom_set = {k for k in prom if k[0] not in SYNTHETIC}
    ops_set = {k for k in ops if k[0] not in SYNTHETIC}
    assert prom_set == ops_set, (
        f"only in Prometheus: {sorted(prom_set - ops_set)}\nonly in OpsWatch: {sorted(ops_set - prom_set)}")
    differing = {k: (prom[k][-1][1], ops[k][-1][1]) for k in ops_set if not same_float(prom[k][-1][1], ops[k][-1][1])}
    assert not differing, f"(Prometheus, OpsWatch) values differ: {differing}"
    [stamped] = [k for k in ops_set if k[0] == "stamped"]
    assert [t for t, _ in prom[stamped]] == [t for t, _ in ops[stamped]] == [int(float(ts_s) * 1000)]
    print(f"\nOpenMetrics parity: {len(ops_set)} series equal, stamped at {ts_s} s")


# -- staleness: a series that leaves the page ---------------------------------------------------------------


def test_series_that_leaves_the_page_is_stale_on_both_sides(spawn, tmp_path):
    server = PageServer("kept 1\nleaving 2\n")
    store = SQLiteStore(tmp_path / "opswatch.db")
    try:
        stack = start_prometheus(spawn, tmp_path, "static", server.instance)
        target = Target("static", f"http://{server.instance}/metrics")
        manager = ScrapeManager([target], store.append, interval_seconds=1.0, append_columns=store.append_columns)

        async def main():
            task = asyncio.create_task(manager.run())
            await asyncio.sleep(2.5)
            server.page = "kept 1\n"
            left_at = time.time()
            await asyncio.sleep(2.5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return left_at

        left_at = asyncio.run(main())
        time.sleep(1)

        # Prometheus: the series' last raw sample is seconds old (within the 5 minute lookback), yet an
        # instant query no longer returns it: its staleness marker hides it.
        raw = prom_api(stack.prom_url, "/api/v1/query", {"query": 'leaving{job="static"}[1m]'})["result"]
        assert raw and float(raw[0]["values"][-1][0]) < left_at + 1.5
        assert prom_api(stack.prom_url, "/api/v1/query", {"query": 'leaving{job="static"}'})["result"] == []
        assert prom_api(stack.prom_url, "/api/v1/query", {"query": 'kept{job="static"}'})["result"]

        # OpsWatch: a staleness marker after the last real sample, at the first scrape without the series
        [leaving] = store.select("leaving")
        [kept] = store.select("kept")
        real = leaving.values.dropna()
        assert len(real) >= 2 and is_stale_nan(leaving.values.iloc[-1])
        marker_ms = leaving.values.index.asi8[-1]
        assert left_at * 1000 <= marker_ms <= left_at * 1000 + 1500
        assert kept.values.index.asi8[-1] > marker_ms and not math.isnan(kept.values.iloc[-1])
    finally:
        store.close()
        server.close()
