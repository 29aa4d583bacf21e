"""Unit tests for legitimate surges: validation, ground-truth records, activity, the calendar, and how
traffic reacts (injected clocks, nothing started)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest

from sample_platform.faults import FaultInjector
from sample_platform.graph import DEPLOYABLE
from sample_platform.groundtruth import rfc3339
from sample_platform.shape import DAY, SimClock
from sample_platform.surges import SURGE_KINDS, SurgeController, calendar
from sample_platform.traffic import MIX, TrafficGenerator

T0 = 1_795_428_000.0
MONDAY = datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp()


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(coro):
    return asyncio.run(coro)


def test_surge_records_share_the_fault_log_and_say_not_a_fault(tmp_path):
    clock = FakeClock()
    injector = FaultInjector(tmp_path / "truth.jsonl", clock=clock)
    surges = SurgeController(injector.truth, clock=clock)
    fault = injector.inject("latency", "postgres", 30)
    assert fault["fault"] is True
    clock.t += 10
    rec = run(surges.start("celebrity_live", None, 600, {"factor": 6}))
    assert rec == {"id": rec["id"], "kind": "surge:celebrity_live", "target": "live", "start": rfc3339(T0 + 10),
                   "end": rfc3339(T0 + 610), "params": {"factor": 6.0, "room_id": 1}, "fault": False}
    lines = [json.loads(x) for x in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert lines == [fault, rec] == injector.truth.records()
    assert injector.records() == [fault]  # the injector lists its faults only


def test_prefixed_kind_and_default_target():
    surges = SurgeController(FaultInjector().truth, clock=FakeClock())
    rec = run(surges.start("surge:marketing_push", None, 60))
    assert rec["kind"] == "surge:marketing_push" and rec["target"] == "notification"
    assert rec["params"] == {"factor": 5.0}


@pytest.mark.parametrize("kind,target,duration,params,needles", [
    ("flash_mob", None, 60, None, ["flash_mob", "celebrity_live", "deploy", "marketing_push"]),
    ("deploy", "postgres", 60, None, ["postgres", "valid targets", "feed"]),
    ("deploy", "cdn-a", 60, None, ["cdn-a"]),
    ("celebrity_live", "gift", 60, None, ["gift", "live"]),
    ("celebrity_live", None, 0, None, ["duration_seconds"]),
    ("celebrity_live", None, 60, {"factor": 0.5}, ["factor"]),
    ("celebrity_live", None, 60, {"room_id": 1.5}, ["room_id"]),
    ("celebrity_live", None, 60, {"viewers": 3}, ["viewers", "factor", "room_id"]),
    ("deploy", "feed", 60, {"factor": 2}, ["factor", "(none)"]),
    ("marketing_push", None, 60, [1], ["params"]),
])
def test_bad_surges_name_what_is_wrong_and_record_nothing(kind, target, duration, params, needles):
    truth = FaultInjector().truth
    surges = SurgeController(truth, clock=FakeClock())
    with pytest.raises(ValueError) as ei:
        run(surges.start(kind, target, duration, params))
    for needle in needles:
        assert needle in str(ei.value), str(ei.value)
    assert truth.records() == [] and surges.active() == []


def test_hooks_add_params_and_a_failing_hook_records_nothing():
    truth = FaultInjector().truth
    surges = SurgeController(truth, clock=FakeClock())

    async def deploy(surge):
        return {"from_version": "1.0.0", "to_version": "1.0.1"}

    async def broken(surge):
        raise RuntimeError("notification refused")

    surges.hooks = {"deploy": deploy, "marketing_push": broken}
    rec = run(surges.start("deploy", "feed", 30))
    assert rec["params"] == {"from_version": "1.0.0", "to_version": "1.0.1"} and rec["target"] == "feed"
    with pytest.raises(RuntimeError):
        run(surges.start("marketing_push", None, 30))
    assert [r["kind"] for r in truth.records()] == ["surge:deploy"]


def test_active_and_factor_follow_the_clock():
    clock = FakeClock()
    surges = SurgeController(FaultInjector().truth, clock=clock)
    assert surges.factor("celebrity_live") == 1.0
    run(surges.start("celebrity_live", None, 100, {"factor": 3}))
    run(surges.start("celebrity_live", None, 50, {"factor": 8}))
    assert surges.factor("celebrity_live") == 8.0 and surges.factor("marketing_push") == 1.0
    clock.t += 50  # end is exclusive
    assert surges.factor("celebrity_live") == 3.0
    clock.t += 50
    assert surges.active() == [] and surges.factor("celebrity_live") == 1.0


def test_traffic_reacts_to_surges_without_sending_anything():
    clock = FakeClock()
    surges = SurgeController(FaultInjector().truth, clock=clock)
    sim = SimClock(1.0, start=MONDAY + 12 * 3600, real=clock)
    gen = TrafficGenerator("http://127.0.0.1:9", 20, seed=1, clock=sim, surges=surges)
    base = gen.weights()
    assert base == {a: share for a, (share, _, _) in MIX.items()}
    calm = gen.current_rate()
    run(surges.start("celebrity_live", None, 60, {"factor": 4, "room_id": 9}))
    w = gen.weights()
    assert w["live_join"] == pytest.approx(4 * base["live_join"]) and w["gift"] == pytest.approx(4 * base["gift"])
    assert w["feed"] == base["feed"]
    assert gen.current_rate() == pytest.approx(calm * sum(w.values()), rel=1e-6)
    rooms = [gen.request_for("live_join")[2]["room_id"] for _ in range(400)]
    assert 0.65 < rooms.count(9) / len(rooms) < 0.85  # 3 in 4 extra joins go to the celebrity's room
    run(surges.start("marketing_push", None, 60, {"factor": 5}))
    assert gen.weights()["feed"] == pytest.approx(2 * base["feed"])


def test_calendar_is_a_pure_function_of_time_and_seed():
    week = calendar(MONDAY, MONDAY + 7 * DAY, seed=4)
    assert week == calendar(MONDAY, MONDAY + 7 * DAY, seed=4)
    assert all(MONDAY <= p.start < MONDAY + 7 * DAY for p in week)
    assert [p.start for p in week] == sorted(p.start for p in week)
    kinds = [p.kind for p in week]
    assert kinds.count("marketing_push") == 7
    assert kinds.count("deploy") == 8  # Monday to Thursday, twice a day
    lives = [p for p in week if p.kind == "celebrity_live"]
    assert {int((p.start - MONDAY) // DAY) for p in lives} >= {4, 5, 6}  # every Friday to Sunday
    for p in week:
        assert p.kind in SURGE_KINDS and p.target in SURGE_KINDS[p.kind].targets
        if p.kind == "deploy":
            assert p.target in DEPLOYABLE
    # windows compose: two halves give the whole, and a day's draws do not depend on the window
    half = MONDAY + 3.5 * DAY
    assert calendar(MONDAY, half, 4) + calendar(half, MONDAY + 7 * DAY, 4) == week
    other = calendar(MONDAY, MONDAY + 28 * DAY, seed=5)
    assert [p.target for p in other if p.kind == "deploy"] != [p.target for p in calendar(
        MONDAY, MONDAY + 28 * DAY, seed=4) if p.kind == "deploy"]
