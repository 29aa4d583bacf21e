"""The notification log across real process restarts: a dispatcher process is killed (SIGKILL) while a
notification is in retry; the next process on the same ``notifications.db`` sends it, once, and a third
one given the same notification again sends nothing."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.unit.test_notify import Recorder, payload

pytestmark = pytest.mark.integration

# One dispatcher process: receivers from CONFIG, log DB; submits PAYLOAD (when given), then delivers
# until nothing is pending (or forever with --forever) and prints what it accepted.
CHILD = """
import asyncio, json, sys
from prometheus_client import CollectorRegistry
from alerting.notify import NotificationDispatcher
from opswatch.config import load_config

config, db, payload_file, forever = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "forever"
dispatcher = NotificationDispatcher.from_config(load_config(config).receivers, CollectorRegistry(), db,
                                                attempts=50, backoff_seconds=0.2)

async def main():
    worker = asyncio.create_task(dispatcher.run())
    accepted = dispatcher.submit(json.load(open(payload_file))) if payload_file != "-" else 0
    print(json.dumps({"accepted": accepted}), flush=True)
    if forever:
        await worker
    await dispatcher.drain(30)
    worker.cancel()

asyncio.run(main())
"""


def test_a_notification_in_retry_when_the_process_is_killed_is_sent_once_after_restart(spawn, tmp_path):
    hook = Recorder(503)
    try:
        config = tmp_path / "opswatch.yaml"
        config.write_text(f"receivers:\n  - name: oncall\n    webhook_configs: [{{url: \"{hook.url}\"}}]\n")
        body = tmp_path / "payload.json"
        body.write_text(json.dumps(payload("oncall")))
        db = tmp_path / "notifications.db"

        def child(payload_arg: str, mode: str):
            return spawn([sys.executable, "-c", CHILD, str(config), str(db), payload_arg, mode], stdout=subprocess.PIPE,
                         text=True)

        first = child(str(body), "forever")
        deadline = time.monotonic() + 30
        while len(hook.requests) < 2 and time.monotonic() < deadline:  # the first attempt and one retry failed
            time.sleep(0.05)
        assert len(hook.requests) >= 2, "the dispatcher never tried the receiver"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with sqlite3.connect(db) as conn:
            [(state, attempts)] = conn.execute("SELECT state, attempts FROM notifications").fetchall()
        assert state == "pending" and attempts >= 2

        hook.statuses = [200]
        failed_before = len(hook.requests)
        second = child(str(body), "drain")  # the same notification again, as a restarted pipeline might submit
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0 and json.loads(out.splitlines()[0]) == {"accepted": 0}  # a duplicate
        assert len(hook.requests) == failed_before + 1  # the pending one, sent once
        assert hook.payloads[-1]["groupKey"] == json.loads(body.read_text())["groupKey"]

        third = child(str(body), "drain")
        out, _ = third.communicate(timeout=60)
        assert json.loads(out.splitlines()[0]) == {"accepted": 0}
        assert len(hook.requests) == failed_before + 1
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT state FROM notifications").fetchall() == [("sent",)]
    finally:
        hook.close()
