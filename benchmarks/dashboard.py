"""Wall screen benchmark: first render, refresh callback latency and browser memory over a soak.

    python -m benchmarks.dashboard [--json] [--services 100] [--incidents 20] [--series 10000]
                                   [--loads 5] [--callbacks 200] [--soak-seconds 300] [--sample-every 30]
                                   [--refresh-seconds 2] [--heap-snapshots DIR]

Builds a synthetic platform in a temporary directory: a topology of ``--services`` services (one of them
``gateway``) under 10 businesses on 12 infrastructure nodes; a real SQLite store holding ``--series``
series with 15 minutes of 5 s history (the golden signals and anomaly series of every node, the KPI
table's series, and per-route request counters to make up the count); a snapshot with ``--incidents``
active incidents (3 alerts each). A writer thread keeps it live: new samples every second, a new
evaluation every 2 s, an incident changing severity every 30 s (a refresh shorter than 2 s speeds all
three up alike: new samples every ``--refresh-seconds / 2``). The dashboards are served by uvicorn on
loopback exactly as OpsWatch mounts them, refreshing every ``--refresh-seconds`` (``Sources.refresh_seconds``; OpsWatch
itself uses 2 to 5 s): a shorter interval packs more refreshes into a soak, so a drift per refresh shows
in minutes instead of hours (the browser's 1 s clock tick is not accelerated).

* ``first_render_seconds``: median over ``--loads`` page loads, each in a new headless Chromium profile
  (cold browser cache), from navigation start to the first frame where every region is complete (all
  business tiles, every KPI with data drawn, every graph node, the incident list, the data age); timed
  in the page (``performance.now()``) by a script installed before the page loads. The first load also
  fills the server's caches; ``first_render_seconds_loads`` lists every load.
* ``callback_p50_seconds``/``callback_p95_seconds``: the wall screen's refresh callback, replayed
  ``--callbacks`` times over HTTP with the request the browser sent, from a new client (no previous state:
  every region rendered and sent); ``callback_steady_*`` the same from a client whose regions are
  unchanged (what an open wall screen sends every 2 s). Every replay computes everything (the sharing of
  one computation between wall screens within a second is turned off for the replays).
* ``soak``: one page open for ``--soak-seconds``; every ``--sample-every`` seconds the JS heap in use
  after a forced garbage collection (CDP ``Runtime.getHeapUsage``; the least of 3 collections 0.25 s
  apart, as a collection during a refresh also counts that refresh's response), the DOM node and
  listener counts (CDP ``Performance.getMetrics``), the documents (CDP ``Memory.getDOMCounters``: the
  page plus one per SVG image Blink keeps decoded, e.g. the KPI sparklines) and Blink's own heap
  (``embedder_heap_used_bytes``). ``heap_floor_slope_bytes_per_hour`` is the Theil-Sen slope of the
  post-GC heap over time (robust to the samples a collection could not bring down), with its 95 %
  confidence interval, and ``heap_floor_slope_bytes_per_refresh`` the same per wall-screen refresh, which
  compares runs at different ``--refresh-seconds``. With ``--heap-snapshots DIR`` a V8 heap snapshot is
  written at the first and the last sample (open them in Chrome DevTools, Memory tab), and
  ``heap_growth_by_constructor`` lists the constructors whose live objects grew most between the two.
  Only what was measured is reported; nothing is extrapolated.

A benchmark, not a test: its numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import httpx
import networkx as nx
import uvicorn
from fastapi import FastAPI
from scipy.stats import theilslopes
from websockets.sync.client import connect as ws_connect

from alerting.model import rfc3339
from collectors.samples import Sample
from dashboards.app import mount_dashboards
from dashboards.kpis import load_kpis
from dashboards.sources import Sources
from detection.signals import SIGNALS
from storage.sqlite import SQLiteStore
from tests.browser import chromium
from tests.conftest import free_port
from topology.graph import Topology

STEP_MS = 5000
HISTORY_MS = 15 * 60_000

COMPLETE = """
(function () {
  function complete() {
    var tiles = document.querySelectorAll('#business-tiles .tile').length;
    var kpis = document.querySelectorAll('#kpis .kpi').length;
    var drawn = document.querySelectorAll('#kpis .kpi img.sparkline').length;
    var box = document.getElementById('topology');
    var cy = box && box._cyreg && box._cyreg.cy;
    var incidents = document.querySelectorAll('#incidents .incident').length;
    var age = document.getElementById('fresh-data');
    return tiles === %(tiles)d && kpis === %(kpis)d && drawn >= %(drawn)d && cy && cy.nodes().length === %(nodes)d
      && incidents > 0 && age && age.textContent.indexOf('old') >= 0;
  }
  function poll() {
    if (complete()) { window.__firstRender = performance.now(); return; }
    requestAnimationFrame(poll);
  }
  requestAnimationFrame(poll);
})();
"""


def synthetic_topology(services: int, businesses: int = 10, infra: int = 12) -> Topology:
    """``gateway`` (a router) in front of ``services - 1`` services in three tiers, over ``infra`` nodes."""
    rng = random.Random(7)
    g = nx.DiGraph()
    for i in range(infra):
        g.add_node(f"db-{i}", kind="infra", title=f"DB {i}", router=False)
    names = ["gateway"] + [f"svc-{i:03d}" for i in range(1, services)]
    for name in names:
        g.add_node(name, kind="service", title=name, router=name == "gateway")
    tiers = [names[1:1 + services // 3], names[1 + services // 3:1 + 2 * services // 3], names[1 + 2 * services // 3:]]
    for upper, lower in zip(tiers, tiers[1:]):
        for s in upper:
            for d in rng.sample(lower, 2):
                g.add_edge(s, d)
    for s in names[1:]:
        g.add_edge(s, f"db-{rng.randrange(infra)}")
    for s in tiers[0]:
        g.add_edge("gateway", s)
    for i in range(businesses):
        b = f"business_{i}"
        g.add_node(b, kind="business", title=f"Business {i}", router=False)
        g.add_edge(b, "gateway")
        for s in rng.sample(tiers[0], 2):
            g.add_edge(b, s)
    return Topology(g)


def series_labels(topology: Topology, total: int) -> list[tuple[str, dict]]:
    """``total`` series: golden signals and anomaly series of every node, the KPI table's, then
    per-route request counters."""
    nodes = [n for n in topology.nodes() if topology.kind(n) != "business"]
    out = [(f"job:{s}", {"job": n}) for n in nodes for s in SIGNALS]
    out += [(m, {"job": n, "signal": s}) for n in nodes for s in SIGNALS if s != "up"
            for m in ("opswatch_anomaly_score", "opswatch_anomaly_baseline", "opswatch_anomaly_scale")]
    out += [("platform_online_users", {"job": "gateway"}), ("live_viewers", {"job": "svc-001"}),
            ("gift_orders_total", {"job": "svc-002", "status": "ok"}), ("gift_orders_total", {"job": "svc-002", "status": "failed"})]
    i = 0
    while len(out) < total:
        out.append(("http_requests_total", {"job": nodes[i % len(nodes)], "route": f"/r{i // len(nodes)}", "code": "200"}))
        i += 1
    return out[:total]


def value(name: str, labels: dict, t_ms: int) -> float:
    base = zlib.crc32(repr((name, sorted(labels.items()))).encode()) % 1000 / 10 + 1
    if name.endswith("_total"):
        return base * t_ms / 1000 % 1e9
    return base * (1 + 0.1 * math.sin(t_ms / 60_000))


class Platform:
    """The synthetic store, snapshot and their writer thread."""

    def __init__(self, directory: Path, services: int, incidents: int, series: int, tick_seconds: float = 1.0):
        self.tick_seconds = tick_seconds
        self.topology = synthetic_topology(services)
        self.store = SQLiteStore(directory / "opswatch.db")
        self.series = series_labels(self.topology, series)
        now = int(time.time() * 1000)
        for t in range(now - HISTORY_MS, now, STEP_MS):
            self.store.append([Sample(n, lb, t, value(n, lb, t)) for n, lb in self.series])
        self.live = [s for s in self.series if s[0] in {"job:request_rate", "job:error_ratio", "job:latency_p99_seconds",
                                                       "platform_online_users", "live_viewers", "gift_orders_total"}]
        rng = random.Random(11)
        nodes = [n for n in self.topology.nodes() if self.topology.kind(n) != "business"]
        self.incidents = []
        for k in range(incidents):
            cause = rng.choice(nodes)
            alerts = [{"labels": {"alertname": "LatencyAnomaly", "job": n, "severity": "warning"},
                       "annotations": {"summary": f"{n}: p99 latency departed"}, "state": "firing",
                       "activeAt": rfc3339(now - 60_000 * k), "startsAt": rfc3339(now - 60_000 * k), "endsAt": None,
                       "evidence": {"score": 7.5}} for n in [cause] + rng.sample(nodes, 2)]
            self.incidents.append({
                "id": f"INC-BENCH-{k:04d}", "status": "open", "severity": "critical" if k % 3 == 0 else "warning",
                "opened_at": rfc3339(now - 60_000 * k), "resolved_at": None,
                "root_causes": [{"node": cause, "score": 1.0, "reasons": [], "evidence": []}],
                "impacted_businesses": self.topology.impacted_businesses(cause)
                or [rng.choice(self.topology.nodes("business"))],
                "nodes": [a["labels"]["job"] for a in alerts], "alerts": alerts, "timeline": []})
        self.signals = {n: {"up": 1.0} for n in nodes}
        self.snapshot = self._snapshot(now)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _snapshot(self, now_ms: int) -> SimpleNamespace:
        return SimpleNamespace(evaluated_at_ms=now_ms, signals=self.signals, scores={},
                               alerts=[a for i in self.incidents for a in i["alerts"]], incidents=self.incidents,
                               targets=[{"health": "up"} for _ in self.signals])

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(self.tick_seconds):
            now = int(time.time() * 1000)
            self.store.append([Sample(n, lb, now, value(n, lb, now)) for n, lb in self.live])
            tick += 1
            if tick % 30 == 0:  # an incident changes severity: its tiles flash, the list re-renders
                i = self.incidents[tick // 30 % len(self.incidents)]
                i["severity"] = "warning" if i["severity"] == "critical" else "critical"
            if tick % 2 == 0:
                self.snapshot = self._snapshot(now)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.store.close()


def serve(platform: Platform, refresh_seconds: float = 2.0) -> tuple[str, uvicorn.Server, Sources]:
    app = FastAPI()
    sources = Sources(lambda: platform.snapshot, platform.store, platform.topology, refresh_seconds=refresh_seconds)
    mount_dashboards(app, sources)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return base, server, sources
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the dashboards did not start")


def first_render(base: str, platform: Platform, loads: int) -> tuple[list[float], dict]:
    """Seconds to a complete wall screen per load (new browser profile each), and the refresh request
    the first browser sent (for the callback replay)."""
    kpis = load_kpis()
    script = COMPLETE % {"tiles": len(platform.topology.nodes("business")), "kpis": len(kpis),
                         "drawn": len(kpis), "nodes": platform.topology.graph.number_of_nodes()}
    times, request = [], None
    for _ in range(loads):
        driver = chromium(1920, 1080, performance_log=True)
        try:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
            driver.get(base + "/?kiosk=1")
            deadline = time.monotonic() + 60
            rendered = None
            while rendered is None and time.monotonic() < deadline:
                rendered = driver.execute_script("return window.__firstRender || null")
                time.sleep(0.05)
            if rendered is None:
                raise RuntimeError("the wall screen did not complete within 60 s")
            times.append(rendered / 1000)
            if request is None:
                request = refresh_request(driver)
        finally:
            driver.quit()
    return times, request


def refresh_request(driver) -> dict:
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            req = msg["params"]["request"]
            if "_dash-update-component" in req["url"] and "business-tiles.children" in req.get("postData", ""):
                return {"url": req["url"], "body": json.loads(req["postData"])}
    raise RuntimeError("no refresh request seen")


def replay(request: dict, count: int, steady: bool) -> tuple[list[float], int]:
    """Latencies (s) of ``count`` replays of the refresh callback, and the size of the last response."""
    body = json.loads(json.dumps(request["body"]))
    state = next(s for s in body["state"] if s["id"] == "wall-state")
    state["value"] = None
    latencies, size = [], 0
    with httpx.Client(timeout=30) as client:
        if steady:  # a client whose regions are all already shown
            r = client.post(request["url"], json=body)
            state["value"] = r.json()["response"]["wall-state"]["data"]
        for _ in range(count):
            t = time.perf_counter()
            r = client.post(request["url"], json=body)
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            size = len(r.content)
    return latencies, size


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def heap_snapshot(driver, path: Path) -> dict:
    """Write a V8 heap snapshot of the page to ``path`` (Chrome DevTools' ``.heapsnapshot`` JSON) and return
    it parsed. Selenium's ``execute_cdp_cmd`` drops CDP events, and ``HeapProfiler.takeHeapSnapshot``
    streams the snapshot as ``addHeapSnapshotChunk`` events, so this speaks CDP over the page's own
    DevTools WebSocket.

    :raises RuntimeError: no page target, or the snapshot failed (the CDP error is in the message).
    """
    address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
    pages = [t for t in httpx.get(f"http://{address}/json/list", timeout=10).json() if t["type"] == "page"]
    if not pages:
        raise RuntimeError(f"no page target on the DevTools endpoint {address}")
    chunks = []
    with ws_connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
        ws.send(json.dumps({"id": 1, "method": "HeapProfiler.takeHeapSnapshot", "params": {"reportProgress": False}}))
        while True:
            msg = json.loads(ws.recv(timeout=120))
            if msg.get("method") == "HeapProfiler.addHeapSnapshotChunk":
                chunks.append(msg["params"]["chunk"])
            elif msg.get("id") == 1:
                if "error" in msg:
                    raise RuntimeError(f"HeapProfiler.takeHeapSnapshot failed: {msg['error']}")
                break
    text = "".join(chunks)
    path.write_text(text)
    return json.loads(text)


def live_objects_by_constructor(snapshot: dict) -> dict[str, list[int]]:
    """``{constructor: [count, self bytes]}`` of a parsed heap snapshot. Objects are grouped by constructor
    name as DevTools' Summary view does; strings, closures, arrays, code and V8's internal objects by
    their node type, e.g. ``(string)``."""
    meta = snapshot["snapshot"]["meta"]
    fields = meta["node_fields"]
    types = meta["node_types"][0]
    width, i_type, i_name, i_size = len(fields), fields.index("type"), fields.index("name"), fields.index("self_size")
    nodes, strings = snapshot["nodes"], snapshot["strings"]
    out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for k in range(0, len(nodes), width):
        kind = types[nodes[k + i_type]]
        key = strings[nodes[k + i_name]] if kind in ("object", "native") else f"({kind})"
        entry = out[key]
        entry[0] += 1
        entry[1] += nodes[k + i_size]
    return out


def growth_by_constructor(before: dict, after: dict, top: int = 12) -> list[dict]:
    """The ``top`` constructors whose live objects grew most in bytes from ``before`` to ``after``."""
    rows = [{"constructor": k, "count_delta": after.get(k, [0, 0])[0] - before.get(k, [0, 0])[0],
             "self_bytes_delta": after.get(k, [0, 0])[1] - before.get(k, [0, 0])[1]} for k in set(before) | set(after)]
    rows.sort(key=lambda r: r["self_bytes_delta"], reverse=True)
    return rows[:top]


def heap_slope(samples: list[dict]) -> dict:
    """Theil-Sen slope of the post-GC heap in bytes per hour, with its 95 % confidence interval."""
    hours = [s["t"] / 3600 for s in samples]
    heap = [s["heap_used_bytes"] for s in samples]
    slope, _, low, high = theilslopes(heap, hours, alpha=0.95)
    return {"slope": round(slope), "low": round(low), "high": round(high)}


def soak(base: str, seconds: float, every: float, refresh_seconds: float = 2.0,
         snapshots: Path | None = None) -> dict:
    driver = chromium(1920, 1080)
    samples, counts = [], []
    try:
        driver.get(base + "/?kiosk=1")
        time.sleep(10)  # the first render and a few refreshes
        driver.execute_cdp_cmd("Performance.enable", {})
        started = time.monotonic()
        while True:
            t = round(time.monotonic() - started, 1)
            heaps = []
            for k in range(3):
                time.sleep(0.25 if k else 0)
                driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
                heaps.append(driver.execute_cdp_cmd("Runtime.getHeapUsage", {}))
            heap = min(heaps, key=lambda h: h["usedSize"])
            metrics = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
            counters = driver.execute_cdp_cmd("Memory.getDOMCounters", {})
            samples.append({"t": t, "heap_used_bytes": int(heap["usedSize"]),
                            "embedder_heap_used_bytes": int(heap.get("embedderHeapUsedSize", 0)),
                            "dom_nodes": int(metrics.get("Nodes", 0)),
                            "listeners": int(metrics.get("JSEventListeners", 0)), "documents": int(counters["documents"])})
            last = time.monotonic() - started >= seconds
            if snapshots is not None and (len(samples) == 1 or last):
                name = "soak-start" if len(samples) == 1 else "soak-end"
                counts.append(live_objects_by_constructor(heap_snapshot(driver, snapshots / f"{name}.heapsnapshot")))
            if last:
                break
            time.sleep(every)
        errors = [e["message"][:200] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    heap = [s["heap_used_bytes"] for s in samples]
    result = {"seconds": samples[-1]["t"], "refresh_seconds": refresh_seconds,
              "heap_used_bytes_start": heap[0], "heap_used_bytes_end": heap[-1],
              "heap_used_bytes_max": max(heap), "dom_nodes_start": samples[0]["dom_nodes"],
              "dom_nodes_end": samples[-1]["dom_nodes"], "documents_max": max(s["documents"] for s in samples),
              "embedder_heap_used_bytes_start": samples[0]["embedder_heap_used_bytes"],
              "embedder_heap_used_bytes_end": samples[-1]["embedder_heap_used_bytes"], "console_errors": errors}
    if len(samples) >= 3:
        fit = heap_slope(samples)
        per_hour = 3600 / refresh_seconds
        result.update({"heap_floor_slope_bytes_per_hour": fit["slope"],
                       "heap_floor_slope_bytes_per_hour_ci95": [fit["low"], fit["high"]],
                       "heap_floor_slope_bytes_per_refresh": round(fit["slope"] / per_hour, 2)})
    if len(counts) == 2:
        result["heap_growth_by_constructor"] = growth_by_constructor(*counts)
    result["samples"] = samples
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=5, help="page loads for the first render")
    parser.add_argument("--callbacks", type=int, default=200, help="refresh callbacks replayed")
    parser.add_argument("--soak-seconds", type=float, default=300.0)
    parser.add_argument("--sample-every", type=float, default=30.0)
    parser.add_argument("--refresh-seconds", type=float, default=2.0,
                        help="the wall screen's refresh interval (OpsWatch uses 2-5 s); shorter to find a drift sooner")
    parser.add_argument("--heap-snapshots", type=Path, metavar="DIR",
                        help="write V8 heap snapshots at the soak's first and last sample to DIR")
    args = parser.parse_args(argv)
    if args.refresh_seconds < 0.05:
        parser.error(f"--refresh-seconds {args.refresh_seconds}: must be at least 0.05")
    if args.heap_snapshots is not None:
        args.heap_snapshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="opswatch-bench-dashboard-") as tmp:
        built = time.perf_counter()
        platform = Platform(Path(tmp), args.services, args.incidents, args.series,
                            tick_seconds=min(1.0, args.refresh_seconds / 2))
        build_seconds = time.perf_counter() - built
        platform.start()
        base, server, sources = serve(platform, args.refresh_seconds)
        try:
            loads, request = first_render(base, platform, args.loads)
            sources.share_seconds = 0.0  # every replay computes: what one wall screen alone costs
            cold, cold_bytes = replay(request, args.callbacks, steady=False)
            steady, steady_bytes = replay(request, args.callbacks, steady=True)
            sources.share_seconds = 1.0
            soaked = (soak(base, args.soak_seconds, args.sample_every, args.refresh_seconds, args.heap_snapshots)
                      if args.soak_seconds > 0 else None)
        finally:
            server.should_exit = True
            platform.stop()
    result = {
        "first_render_seconds": round(statistics.median(loads), 3),
        "first_render_seconds_loads": [round(x, 3) for x in loads],
        "callback_p50_seconds": round(percentile(cold, 0.5), 4),
        "callback_p95_seconds": round(percentile(cold, 0.95), 4),
        "callback_response_bytes": cold_bytes,
        "callback_steady_p50_seconds": round(percentile(steady, 0.5), 4),
        "callback_steady_p95_seconds": round(percentile(steady, 0.95), 4),
        "callback_steady_response_bytes": steady_bytes,
        "services": args.services, "incidents": args.incidents, "series": len(platform.series),
        "nodes": platform.topology.graph.number_of_nodes(), "store_build_seconds": round(build_seconds, 1),
        "soak": soaked,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            if k != "soak":
                print(f"{k:32} {v}")
        if soaked:
            print(f"{'soak':32} {soaked['seconds']} s: JS heap {soaked['heap_used_bytes_start'] / 1e6:.1f} MB -> "
                  f"{soaked['heap_used_bytes_end'] / 1e6:.1f} MB (max {soaked['heap_used_bytes_max'] / 1e6:.1f}), "
                  f"DOM nodes {soaked['dom_nodes_start']} -> {soaked['dom_nodes_end']}")
            if "heap_floor_slope_bytes_per_hour" in soaked:
                low, high = soaked["heap_floor_slope_bytes_per_hour_ci95"]
                print(f"{'heap_floor_slope_bytes_per_hour':32} {soaked['heap_floor_slope_bytes_per_hour']} "
                      f"(95 % CI {low} to {high}; {soaked['heap_floor_slope_bytes_per_refresh']} per refresh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
