"""From alerts to pages through inhibit -> silence -> route -> group -> wait -> dedup, on real parts: a
real SQLite store in tmp_path, the pipeline with an injected clock (no sleeping between evaluations), a
real uvicorn server for the silences API, the ``opswatch silence`` CLI as a child process, and the real HTTP
webhook receiver of tests/conftest.py getting what the notification dispatcher delivers.

The story: postgres gets slow, so do ``user`` (which reads postgres) and ``live`` (which calls user). One
page goes out, for postgres; user's and live's alerts are inhibited, each saying why. Kafka, unrelated,
gets slow under a silence: no page. The postgres page is re-sent after ``repeat_interval``, an
acknowledgement is announced to the receiver that was paged, a resolved notification follows the fix, and
kafka pages once its silence is expired.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from collectors.samples import Sample
from opswatch.api import create_api
from opswatch.config import load_config
from opswatch.pipeline import Pipeline

TOKEN = "s3cret-token"
RULES = """
groups:
  - name: latency
    rules:
      - alert: LatencyHigh
        expr: probe_latency_seconds > 1
        labels: {severity: critical}
        annotations: {summary: "{{ $labels.job }} answers in {{ $value }} s"}
"""
STEP_MS = 5_000


class Server:
    """The pipeline's REST API on a real uvicorn server bound to port 0, in a thread."""

    def __init__(self, pipeline: Pipeline):
        self.server = uvicorn.Server(uvicorn.Config(create_api(pipeline), host="127.0.0.1", port=0,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the API server did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def cli(spawn, *args: str) -> subprocess.CompletedProcess:
    proc = spawn([sys.executable, "-m", "opswatch", "silence", *args], stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_a_postgres_fault_pages_once_inhibits_its_dependants_obeys_silences_and_repeats(tmp_path, webhook, spawn):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    config = load_config(None, data_dir=str(tmp_path / "data"), scrape_interval="5s", rules_file=str(rules),
                         api_token=TOKEN, receivers=[{"name": "oncall", "webhook_configs": [{"url": webhook.url}]}],
                         route={"receiver": "log", "group_wait": "10s", "group_interval": "30s",
                                "repeat_interval": "2m",
                                "routes": [{"receiver": "oncall", "matchers": ['severity="critical"']}]})
    t0 = (int(time.time() * 1000) // STEP_MS) * STEP_MS  # the CLI stamps silences with the wall clock
    now = {"ms": t0}
    pipeline = Pipeline(config, targets=[], clock=lambda: now["ms"] / 1000)
    server = Server(pipeline)
    try:
        asyncio.run(scenario(pipeline, server.url, now, webhook, spawn))
    finally:
        server.close()
        pipeline.close()


async def scenario(pipeline: Pipeline, api: str, now: dict, webhook, spawn) -> None:
    worker = asyncio.create_task(pipeline.dispatcher.run())
    latency = {"postgres": 0.05, "user": 0.05, "live": 0.05, "kafka": 0.05}

    async def step(seconds: int) -> None:
        """Evaluate every 5 s of pipeline time, delivering what is due after each evaluation."""
        for _ in range(seconds * 1000 // STEP_MS):
            now["ms"] += STEP_MS
            pipeline.store.append([Sample("probe_latency_seconds", {"job": job}, now["ms"], v)
                                   for job, v in latency.items()])
            pipeline.evaluate(now["ms"])
            outbox, pipeline.outbox = pipeline.outbox, []
            for out in outbox:
                pipeline.dispatcher.submit(out.payload, repeat=out.repeat)
            await pipeline.dispatcher.drain(timeout_seconds=10)

    def alert(job: str) -> dict:
        rows = httpx.get(f"{api}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return next(a for a in rows if a["labels"]["job"] == job)

    try:
        await step(20)  # a quiet baseline
        latency.update(postgres=3.0, user=2.0, live=1.5)
        await step(5)  # firing, but group_wait (10 s) is not over: nothing yet
        assert webhook.payloads == []
        await step(10)
        [page] = webhook.payloads
        assert page["receiver"] == "oncall" and page["status"] == "firing"
        assert [a["labels"]["job"] for a in page["alerts"]] == ["postgres"], "only the root cause pages"
        [incident] = [i for i in pipeline.snapshot.incidents if i["status"] == "open"]
        assert page["groupKey"] == f'{{}}/{{severity="critical"}}:{{incident="{incident["id"]}"}}'
        assert set(incident["nodes"]) == {"postgres", "user", "live"}  # the dependants fold into its incident

        postgres, user, live = alert("postgres"), alert("user"), alert("live")
        assert postgres["status"]["state"] == "active" and postgres["status"]["inhibitedBy"] == []
        assert user["status"]["state"] == "suppressed"
        assert user["status"]["inhibitedBy"] == [postgres["fingerprint"]]
        assert user["status"]["inhibitedReasons"] == [
            "postgres (a dependency of user, via user -> postgres) is firing LatencyHigh"]
        assert live["status"]["inhibitedBy"] == [user["fingerprint"], postgres["fingerprint"]]
        assert live["status"]["inhibitedReasons"][1] == \
            "postgres (a dependency of live, via live -> user -> postgres) is firing LatencyHigh"
        report = json.loads(Path(incident["report"]).read_text())  # the incident report says it too
        by_job = {a["labels"]["job"]: a for a in report["alerts"]}
        assert by_job["user"]["status"]["inhibitedReasons"] == user["status"]["inhibitedReasons"]

        # Silences: the CLI against the real API; writes need the token, bad input is named.
        refused = cli(spawn, "add", 'job="kafka"', "--comment", "upgrade", "--server", api, "--token", "wrong-token")
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        bad = httpx.post(f"{api}/api/v2/silences", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
                         json={"matchers": [{"name": "job", "value": "kafka"}], "endsAt": "2030-01-01T00:00:00Z",
                               "createdBy": "ana"})
        assert bad.status_code == 400 and "comment: Field required" in bad.json()["error"]
        added = cli(spawn, "add", 'job="kafka"', "--comment", "kafka upgrade", "--author", "ana", "--duration", "1h",
                    "--server", api, "--token", TOKEN)
        assert added.returncode == 0, added.stderr
        silence_id = added.stdout.strip()
        listed = cli(spawn, "list", "--server", api)
        assert silence_id in listed.stdout and 'job="kafka"' in listed.stdout and "active" in listed.stdout

        latency.update(kafka=4.0)  # unrelated to postgres: its own incident, silenced
        await step(45)
        kafka = alert("kafka")
        assert kafka["state"] == "firing" and kafka["status"]["silencedBy"] == [silence_id]
        assert len({i["id"] for i in pipeline.snapshot.incidents if i["status"] == "open"}) == 2
        assert len(webhook.payloads) == 1, "a silenced alert paged, or an unchanged group was re-sent early"
        own = httpx.get(f"{api}/metrics", timeout=10).text  # OpsWatch monitors its own notification stages
        for line in ('opswatch_alerts{state="active"} 1.0', 'opswatch_alerts{state="suppressed"} 3.0',
                     'opswatch_silences{state="active"} 1.0', "opswatch_aggregation_groups 2.0"):
            assert line in own, line

        # repeat_interval (2 m after the page, at the next group_interval tick): the same page again
        await step(90)
        assert len(webhook.payloads) == 2
        assert [a["fingerprint"] for a in webhook.payloads[1]["alerts"]] == [postgres["fingerprint"]]

        # acknowledged by hand: the receiver that was paged hears of it, at once
        acked = httpx.post(f"{api}/api/v1/incidents/{incident['id']}/acknowledge", json={"by": "ana"},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert acked.status_code == 200, acked.text
        await step(5)
        assert len(webhook.payloads) == 3
        assert webhook.payloads[2]["incident"]["status"] == "acknowledged"
        assert webhook.payloads[2]["groupKey"] == page["groupKey"]

        # the fix: one resolved notification for postgres
        latency.update(postgres=0.05, user=0.05, live=0.05)
        await step(30)
        assert len(webhook.payloads) == 4
        assert webhook.payloads[3]["status"] == "resolved"
        assert [a["status"] for a in webhook.payloads[3]["alerts"]] == ["resolved"]

        # expire the silence: the kafka incident now pages once
        assert cli(spawn, "expire", silence_id, "--server", api, "--token", TOKEN).returncode == 0
        assert httpx.get(f"{api}/api/v2/silence/{silence_id}", timeout=10).json()["status"]["state"] == "expired"
        await step(30)
        assert len(webhook.payloads) == 5
        assert [a["labels"]["job"] for a in webhook.payloads[4]["alerts"]] == ["kafka"]
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
