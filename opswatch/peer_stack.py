"""The conventional stack as a baseline: a real Prometheus scraping the reference platform with per-service
alerting rules, a real Alertmanager grouping its alerts, and a webhook receiver recording what it sends.

Used by ``opswatch bench rca`` (:mod:`opswatch.bench_rca`) beside OpsWatch on the same live platform.
Prometheus and Alertmanager are Debian's ``prometheus`` and ``prometheus-alertmanager`` binaries, each in
its own process group on a free loopback port, always stopped on exit. The rules are
``benchmarks/peers/prometheus_rules.yml`` (conventional golden-signal thresholds, the same for every
service, not tuned per fault); every alert carries ``service`` (the Prometheus ``job``, which is the
topology node here) and Alertmanager groups by ``[alertname, service]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import signal
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from alerting.model import rfc3339
from collectors.prometheus_api import PrometheusAPISource
from collectors.samples import Sample, labels_key

from .durations import format_duration
from .processes import free_port, stop_process_group

FIRING = 'ALERTS{alertstate="firing"}'  # Prometheus's series of its firing alerts, one per alert label set
RULES_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "peers" / "prometheus_rules.yml"
GROUP_BY = ("alertname", "service")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_prctl = ctypes.CDLL(None).prctl  # looked up here: the child between fork and exec must not load anything


@dataclass(frozen=True)
class Grouping:
    """Alertmanager's route timers, seconds (``group_wait``, ``group_interval``, ``repeat_interval``)."""

    group_wait: float
    group_interval: float
    repeat_interval: float


class WebhookLog:
    """A webhook receiver on a free loopback port (a thread) that records every JSON body POSTed to it with
    its arrival time: ``notifications`` is ``[(ms since the epoch, body), ...]`` in arrival order."""

    def __init__(self) -> None:
        self.notifications: list[tuple[int, dict]] = []
        log = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    log.append((int(time.time() * 1000), json.loads(body)))
                    self.send_response(200)
                except ValueError:
                    self.send_response(400)
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the benchmark's output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the benchmark dies, even by SIGKILL (Linux's
    ``PR_SET_PDEATHSIG``), so no Prometheus outlives it."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: apt-get install -y {name} (the benchmark's baseline needs it)")
    return path


def prometheus_config(nodes: dict[str, str], scrape_interval: float, scrape_timeout: float, rules_file: Path,
                      alertmanager: str) -> dict:
    """Prometheus's configuration: every platform node (``{job: base URL}``) scraped as its own job."""
    interval = format_duration(scrape_interval)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": format_duration(scrape_timeout)},
        "rule_files": [str(rules_file)],
        "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": job, "metrics_path": urlsplit(url).path.rstrip("/") + "/metrics",
                            "static_configs": [{"targets": [urlsplit(url).netloc]}]}
                           for job, url in nodes.items()],
    }


def alertmanager_config(webhook_url: str, grouping: Grouping) -> dict:
    """Alertmanager's configuration: one route grouping by ``[alertname, service]`` to the webhook."""
    return {
        "route": {"receiver": "bench", "group_by": list(GROUP_BY), "group_wait": format_duration(grouping.group_wait),
                  "group_interval": format_duration(grouping.group_interval),
                  "repeat_interval": format_duration(grouping.repeat_interval)},
        "receivers": [{"name": "bench", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }


async def _wait_ready(url: str, proc: subprocess.Popen, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with status {proc.returncode} at start-up")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout_seconds:g}s")


@dataclass(frozen=True)
class PeerStack:
    """The running stack: its webhook log and the base URLs of Prometheus and Alertmanager."""

    hook: WebhookLog
    prometheus_url: str
    alertmanager_url: str


@contextlib.asynccontextmanager
async def prometheus_stack(nodes: dict[str, str], work_dir: Path, scrape_interval: float, scrape_timeout: float,
                           grouping: Grouping, rules_file: Path = RULES_FILE) -> AsyncIterator[PeerStack]:
    """Start the webhook log, Alertmanager and Prometheus (scraping ``nodes``, ``{job: base URL}``) with their
    files and data under ``work_dir``; yield them once both answer; stop everything on exit.

    :raises RuntimeError: a binary is missing, or a process exits or does not answer at start-up.
    """
    import yaml

    work_dir.mkdir(parents=True, exist_ok=True)
    if not rules_file.is_file():
        raise RuntimeError(f"the Prometheus rules file {rules_file} does not exist")
    hook = WebhookLog()
    procs: list[subprocess.Popen] = []
    try:
        am_port, prom_port = free_port(), free_port()
        am_file, prom_file = work_dir / "alertmanager.yml", work_dir / "prometheus.yml"
        am_file.write_text(yaml.safe_dump(alertmanager_config(hook.url, grouping)))
        prom_file.write_text(yaml.safe_dump(prometheus_config(nodes, scrape_interval, scrape_timeout, rules_file,
                                                              f"127.0.0.1:{am_port}")))
        with open(work_dir / "peers.log", "ab") as logs:  # the children keep their own copy of the file
            procs.append(subprocess.Popen(
                [_binary("prometheus-alertmanager"), f"--config.file={am_file}", f"--storage.path={work_dir / 'am'}",
                 f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                stdout=logs, stderr=logs, start_new_session=True, preexec_fn=_die_with_parent))
            procs.append(subprocess.Popen(
                [_binary("prometheus"), f"--config.file={prom_file}", f"--storage.tsdb.path={work_dir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=logs, stderr=logs, start_new_session=True, preexec_fn=_die_with_parent))
        am_url, prom_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
        await _wait_ready(f"{am_url}/-/ready", procs[0])
        await _wait_ready(f"{prom_url}/-/ready", procs[1])
        yield PeerStack(hook, prom_url, am_url)
    finally:
        for proc in procs:
            stop_process_group(proc, timeout_seconds=10)
        hook.close()


def notification_groups(notifications: list[tuple[int, dict]]) -> tuple[list[dict], int]:
    """Alertmanager's webhook notifications as incident-like records, and how many distinct alerts they held.

    A group (Alertmanager's ``groupKey``) counts as one incident from its first firing notification until a
    notification says it resolved; a later firing notification of the same key is a new one. Each record has
    the keys :func:`opswatch.scenarios.attribute` and :class:`opswatch.scenarios.Outcome` read: ``id``,
    ``opened_at`` and ``key_times["paged"]`` (its first notification's arrival, RFC 3339), ``root_causes``
    (empty: it ranks nothing) and ``alerts`` (each with ``node``, its ``service`` label). An alert is its
    ``(fingerprint, startsAt)``.
    """
    active: dict[str, dict] = {}
    groups: list[dict] = []
    alerts: set[tuple[str, str]] = set()
    for at_ms, body in sorted(notifications, key=lambda n: n[0]):
        key = str(body.get("groupKey"))
        firing = [a for a in body.get("alerts", []) if a.get("status") == "firing"]
        alerts.update((a.get("fingerprint", ""), a.get("startsAt", "")) for a in firing)
        group = active.get(key)
        if group is None and firing:
            at = rfc3339(at_ms)
            group = {"id": f"{key}#{len(groups) + 1}", "opened_at": at, "key_times": {"paged": at},
                     "root_causes": [], "alerts": [], "_seen": set()}
            active[key] = group
            groups.append(group)
        if group is not None:
            for a in firing:
                ident = (a.get("fingerprint", ""), a.get("startsAt", ""))
                if ident not in group["_seen"]:
                    group["_seen"].add(ident)
                    group["alerts"].append({"node": a.get("labels", {}).get("service"),
                                            "alertname": a.get("labels", {}).get("alertname")})
        if body.get("status") == "resolved":
            active.pop(key, None)
    for group in groups:
        del group["_seen"]
    return groups, len(alerts)


def alert_instances(samples: list[Sample], step_ms: int) -> int:
    """How many alert instances a range query of ``ALERTS{alertstate="firing"}`` at ``step_ms`` holds: each
    label set's unbroken runs of points (a resolved alert's series goes stale at once, so a missing step is a
    resolution and the next point a new instance, as Alertmanager's ``startsAt`` would say)."""
    times: dict[str, list[int]] = {}
    for s in samples:
        times.setdefault(labels_key(s.labels), []).append(s.timestamp_ms)
    return sum(1 + sum(1 for a, b in zip(ts, ts[1:]) if b - a > step_ms) for ts in map(sorted, times.values()))


def fired_alerts(prometheus_url: str, start_ms: int, end_ms: int, step_seconds: float) -> int:
    """Alert instances Prometheus fired between ``start_ms`` and ``end_ms`` (see :func:`alert_instances`),
    notified by Alertmanager or not (one that resolves within ``group_wait`` never is). ``step_seconds``: the
    rule evaluation interval; a range of more than 11,000 steps (Prometheus's limit) is queried at a coarser
    step. :raises opswatch.errors.ScrapeError: Prometheus does not answer or refuses the query."""
    step_ms = max(round(step_seconds * 1000), -(-(end_ms - start_ms) // 10_000))
    with PrometheusAPISource(prometheus_url) as api:
        return alert_instances(api.query_range(FIRING, start_ms, end_ms, step_ms / 1000), step_ms)
