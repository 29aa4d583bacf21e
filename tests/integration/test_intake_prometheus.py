"""Alert intake from real peers (Debian's prometheus and prometheus-alertmanager) into a real `opswatch run`:

* a Prometheus whose alerting rules fire sends to OpsWatch as to an Alertmanager (``POST /api/v2/alerts``,
  with a bearer token); the alerts show in ``/api/v1/alerts`` and group along the topology into an incident
  whose root cause is postgres; an alert whose rule stops holding arrives resolved; hostile payloads get a
  400 naming the field while the good alert of the same request is kept;
* an Alertmanager forwards to OpsWatch's webhook intake (payload version 4), firing and then resolved;
* ``GET /api/v1/topology`` compares the declared graph with the call counters of a scraped exporter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from alerting.model import fingerprint, parse_rfc3339, rfc3339
from tests.conftest import MetricsPage, free_port
from tests.integration.test_run_real_exporters import binary, wait_http
from topology.graph import REFERENCE_PLATFORM

pytestmark = pytest.mark.integration

TOKEN = "intake-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start_opswatch(spawn, tmp_path, jobs: dict[str, int] | None = None, topology=REFERENCE_PLATFORM) -> str:
    """`opswatch run` scraping ``jobs`` (name -> port; default: itself) each second; returns its base URL."""
    web = free_port()
    jobs = jobs or {"opswatch": web}
    scrape = "".join(f"  - {{job_name: {job}, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
                     for job, port in jobs.items())
    config = tmp_path / "opswatch.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nscrape_interval: 1s\napi_token: {TOKEN}\n"
                      f"topology_file: {topology}\nscrape_configs:\n{scrape}")
    spawn([sys.executable, "-m", "opswatch", "run", "--config", str(config), "--port", str(web)])
    url = f"http://127.0.0.1:{web}"
    wait_http(f"{url}/-/healthy")
    return url


def wait_until(check, what: str, deadline_s: float = 40):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline, last = time.monotonic() + deadline_s, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen in {deadline_s}s; last seen: {last!r}")


def alerts(url: str) -> dict[str, dict]:
    return {a["labels"]["alertname"]: a for a in httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]}


def incidents(url: str) -> list[dict]:
    return httpx.get(f"{url}/api/v1/incidents", timeout=5).json()["data"]


def test_prometheus_sends_alerts_to_opswatch_as_to_an_alertmanager(spawn, tmp_path):
    ops = start_opswatch(spawn, tmp_path)
    port = int(ops.rsplit(":", 1)[1])
    stop_at = time.time() + 12  # the second rule holds until then, so Prometheus sends it resolved afterwards
    (tmp_path / "rules.yml").write_text(f"""
groups:
  - name: intake
    interval: 1s
    rules:
      - alert: PostgresDown
        expr: vector(1) > 0
        labels: {{service: postgres, severity: critical}}
        annotations: {{summary: "postgres does not answer"}}
      - alert: GiftErrors
        expr: vector(1) > 0
        labels: {{service: gift}}
      - alert: BillingSlow
        expr: vector(time()) < {stop_at}
        labels: {{service: billing}}
""")
    prom = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global: {{evaluation_interval: 1s}}
rule_files: [{tmp_path / 'rules.yml'}]
alerting:
  alertmanagers:
    - api_version: v2
      authorization: {{credentials: {TOKEN}}}
      static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
""")
    # Its first send comes before its Alertmanager discovery has run (and is dropped); the next comes only
    # after the resend delay, 1m by default.
    spawn([binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}", "--rules.alert.resend-delay=1s",
           f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom}"])

    seen = wait_until(lambda: {"PostgresDown", "GiftErrors", "BillingSlow"} <= set(alerts(ops)) and alerts(ops),
                      "Prometheus's three alerts arriving")
    down = seen["PostgresDown"]
    assert down["state"] == "firing" and down["source"] == "api"
    assert down["labels"] == {"alertname": "PostgresDown", "service": "postgres", "severity": "critical"}
    assert down["fingerprint"] == fingerprint(down["labels"])
    assert down["annotations"] == {"summary": "postgres does not answer"}
    assert "/graph?g0.expr=" in down["generatorURL"]

    def grouped():
        by_nodes = {tuple(sorted(i["nodes"])): i for i in incidents(ops) if i["status"] == "open"}
        return by_nodes if ("gift", "postgres") in by_nodes and ("billing",) in by_nodes else None

    by_nodes = wait_until(grouped, "one topology incident for postgres+gift and one for billing")
    topo = by_nodes[("gift", "postgres")]
    assert topo["root_causes"][0]["node"] == "postgres" and topo["severity"] == "critical"
    assert "send_gift" in topo["impacted_businesses"]
    assert by_nodes[("billing",)]["root_causes"] == []  # unknown to the topology: its own incident

    # the rule stops holding: Prometheus sends the alert with endsAt = when it resolved
    resolved = wait_until(lambda: alerts(ops)["BillingSlow"]["state"] == "resolved" and alerts(ops)["BillingSlow"],
                          "BillingSlow arriving resolved", deadline_s=40)
    # ended when the rule stopped (Prometheus's resolved alert), not at its last endsAt 4 resends later
    assert stop_at * 1000 <= parse_rfc3339(resolved["endsAt"]) <= stop_at * 1000 + 2500, resolved
    assert alerts(ops)["PostgresDown"]["state"] == "firing"

    # read back as from an Alertmanager: amtool (Debian's, beside prometheus-alertmanager) queries GET /api/v2/alerts
    def amtool_query(*flags: str) -> dict[str, dict]:
        done = subprocess.run([binary("amtool"), f"--alertmanager.url={ops}", "alert", "query", "-o", "json", *flags,
                               "service=~postgres|gift"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return {a["labels"]["alertname"]: a for a in json.loads(done.stdout)}

    # amtool shows active alerts by default: gift's page is inhibited by its failing dependency, postgres
    assert set(amtool_query()) == {"PostgresDown"}
    shown = amtool_query("--active", "--inhibited")
    assert set(shown) == {"PostgresDown", "GiftErrors"}, shown  # filtered: billing is not asked for
    assert shown["PostgresDown"]["status"]["state"] == "active" and shown["PostgresDown"]["receivers"] == [{"name": "log"}]
    assert shown["PostgresDown"]["fingerprint"] == down["fingerprint"]
    assert shown["GiftErrors"]["status"]["state"] == "suppressed"
    assert shown["GiftErrors"]["status"]["inhibitedBy"] == [down["fingerprint"]], shown["GiftErrors"]
    muted = httpx.get(f"{ops}/api/v2/alerts", params={"active": "false"}, timeout=5).json()
    assert [a["labels"]["alertname"] for a in muted] == ["GiftErrors"]
    bad = httpx.get(f"{ops}/api/v2/alerts", params={"filter": "service=~("}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"].startswith("filter/receiver:")

    # straight to the intake: a wrong token, then a hostile payload beside a good alert
    good = {"labels": {"alertname": "Manual", "service": "redis"}, "startsAt": rfc3339(int(time.time() * 1000))}
    wrong = httpx.post(f"{ops}/api/v2/alerts", json=[good], headers={"Authorization": "Bearer nope-nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json()["error"] == "the API token is missing or wrong"
    hostile = [{"labels": {"alertname": "X", "bad name": "v"}}, good, {"labels": {"a": "b"}, "endsAt": "soon"}, 7]
    answer = httpx.post(f"{ops}/api/v2/alerts", json=hostile, headers=AUTH, timeout=5)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error.startswith("1 alerts accepted; not taken: [0].labels.bad name (the name)")
    assert "[2].endsAt: 'soon' is not an RFC 3339 time" in error and "[3]: Input should be a valid dictionary" in error
    wait_until(lambda: alerts(ops).get("Manual", {}).get("state") == "firing", "the good alert showing, firing")
    not_json = httpx.post(f"{ops}/api/v2/alerts", content=b"[{", headers=AUTH, timeout=5)
    assert not_json.status_code == 400 and not_json.json()["error"].startswith("body: not JSON")
    deep = httpx.post(f"{ops}/api/v2/alerts", content=b"[" * 100_000, headers=AUTH, timeout=5)
    assert deep.status_code == 400 and deep.json()["error"] == "body: JSON nested too deeply to be alerts"
    huge = httpx.post(f"{ops}/api/v2/alerts", content=b" " * (16 * 1024 * 1024 + 1), headers=AUTH, timeout=30)
    assert huge.status_code == 413 and huge.json()["error"].startswith("the body is larger than 16777216 bytes")
    assert httpx.get(f"{ops}/-/healthy", timeout=5).status_code == 200 and alerts(ops)["Manual"]["state"] == "firing"

    own = httpx.get(f"{ops}/metrics", timeout=5).text
    assert 'opswatch_intake_alerts_total{outcome="invalid",source="api"} 5.0' in own  # 3 alerts, 2 bodies
    assert 'opswatch_intake_alerts_total{outcome="accepted",source="api"}' in own


def test_alertmanager_forwards_to_the_webhook_intake(spawn, tmp_path):
    ops = start_opswatch(spawn, tmp_path)
    am = free_port()
    (tmp_path / "alertmanager.yml").write_text(f"""
route: {{receiver: opswatch, group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}}
receivers:
  - name: opswatch
    webhook_configs:
      - url: {ops}/api/v1/intake/alertmanager
        send_resolved: true
        http_config: {{authorization: {{credentials: {TOKEN}}}}}
""")
    spawn([binary("prometheus-alertmanager"), f"--config.file={tmp_path / 'alertmanager.yml'}",
           f"--storage.path={tmp_path / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{am}",
           "--cluster.listen-address="])
    wait_http(f"http://127.0.0.1:{am}/-/ready")

    starts = int(time.time() * 1000) - 60_000
    alert = {"labels": {"alertname": "RedisLatency", "service": "redis", "severity": "warning"},
             "annotations": {"summary": "redis answers slowly"}, "startsAt": rfc3339(starts),
             "generatorURL": "http://prometheus.example/graph"}
    assert httpx.post(f"http://127.0.0.1:{am}/api/v2/alerts", json=[alert], timeout=5).status_code == 200

    got = wait_until(lambda: alerts(ops).get("RedisLatency"), "the webhook delivering RedisLatency")
    assert got["state"] == "firing" and got["source"] == "webhook" and got["startsAt"] == rfc3339(starts)
    assert got["generatorURL"] == "http://prometheus.example/graph"
    [incident] = wait_until(lambda: [i for i in incidents(ops) if "redis" in i["nodes"]], "a redis incident")
    assert incident["root_causes"][0]["node"] == "redis"

    ends = int(time.time() * 1000)
    resolved = {**alert, "endsAt": rfc3339(ends)}
    assert httpx.post(f"http://127.0.0.1:{am}/api/v2/alerts", json=[resolved], timeout=5).status_code == 200
    done = wait_until(lambda: alerts(ops)["RedisLatency"]["state"] == "resolved" and alerts(ops)["RedisLatency"],
                      "the webhook delivering RedisLatency resolved")
    assert done["endsAt"] == rfc3339(ends)

    own = httpx.get(f"{ops}/metrics", timeout=5).text
    assert 'opswatch_intake_alerts_total{outcome="accepted",source="webhook"} 2.0' in own


def call_exporter() -> MetricsPage:
    """A real HTTP exporter of client-side call counters: job ``checkout`` calls postgres and cache."""
    registry = CollectorRegistry()
    calls = Counter("http_client_requests_total", "calls", ["downstream", "code"], registry=registry)
    calls.labels("postgres", "200").inc(12)
    calls.labels("cache", "200").inc(3)
    return MetricsPage(lambda: generate_latest(registry))


def test_topology_endpoint_reports_undeclared_and_unobserved_edges(spawn, tmp_path):
    topology = tmp_path / "topo.yaml"
    topology.write_text("""
nodes:
  shop:     {kind: business, depends_on: [checkout]}
  checkout: {kind: service, depends_on: [payments, postgres]}
  payments: {kind: service, depends_on: [postgres]}
  postgres: {kind: infra}
""")
    exporter = call_exporter()
    try:
        ops = start_opswatch(spawn, tmp_path, {"checkout": exporter.port}, topology=topology)

        def compared():
            data = httpx.get(f"{ops}/api/v1/topology", params={"lookback": "5m"}, timeout=5).json()["data"]
            return data if data["undeclared_edges"] else None

        data = wait_until(compared, "the scraped call counters showing up")
        assert [(e["source"], e["target"], e["unknown_nodes"]) for e in data["undeclared_edges"]] == [
            ("checkout", "cache", ["cache"])]
        assert [(e["source"], e["target"], e["caller_reports_calls"]) for e in data["unobserved_edges"]] == [
            ("checkout", "payments", True), ("payments", "postgres", False)]
        edges = {(e["source"], e["target"]): e for e in data["edges"]}
        assert edges[("checkout", "postgres")]["observed"] is True
        assert {n["id"]: n["impacted_businesses"] for n in data["nodes"]}["postgres"] == ["shop"]
        bad = httpx.get(f"{ops}/api/v1/topology", params={"lookback": "soon"}, timeout=5)
        assert bad.status_code == 400 and bad.json()["error"].startswith("lookback: duration 'soon'")
    finally:
        exporter.close()
