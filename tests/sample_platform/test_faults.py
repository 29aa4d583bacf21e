"""Unit tests for the fault catalogue and injector (no servers started)."""

from __future__ import annotations

import json
import math

import pytest

from sample_platform.faults import FAULT_KINDS, NO_EFFECTS, FaultInjector, valid_targets
from sample_platform.graph import CALL_GRAPH, CDN_EDGES, DATABASES, DEPLOYABLE, NODES
from sample_platform.groundtruth import rfc3339

T0 = 1_795_428_000.123  # 2026-11-22T...Z, exactly representable to the millisecond in the output


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_catalogue_kinds_and_targets():
    assert list(FAULT_KINDS) == ["latency", "errors", "cpu_saturation", "memory_leak", "slow_queries", "cache_outage",
                                 "consumer_lag", "cdn_degradation", "network_partition", "bad_deploy",
                                 "connection_pool_exhaustion", "timeout_cascade"]
    for name, kind in FAULT_KINDS.items():
        assert kind.name == name
        assert kind.description and "\n" not in kind.description
        assert valid_targets(name) and len(set(valid_targets(name))) == len(valid_targets(name))
    for name in ("latency", "errors", "cpu_saturation"):
        assert valid_targets(name) == list(NODES)
    assert valid_targets("slow_queries") == valid_targets("connection_pool_exhaustion") == list(DATABASES)
    assert valid_targets("cdn_degradation") == list(CDN_EDGES)
    assert valid_targets("cache_outage") == ["redis", "user"]
    assert valid_targets("consumer_lag") == ["media", "search", "message", "notification", "payment"]
    assert valid_targets("bad_deploy") == list(DEPLOYABLE)
    assert set(valid_targets("memory_leak")) == set(NODES) - set(CDN_EDGES)
    assert sorted(valid_targets("network_partition")) == sorted(f"{a}~{b}" for a in NODES for b in CALL_GRAPH[a])
    # timeout_cascade needs callers: the gateway and the CDN edges are called by clients only
    assert set(NODES) - set(valid_targets("timeout_cascade")) == {"gateway", *CDN_EDGES}
    # the original ten nodes keep their names; the full platform adds to them
    assert {"gateway", "user", "feed", "post", "live", "gift", "message", "postgres", "redis", "kafka"} < set(NODES)
    assert {"giftdb-0", "giftdb-1", "cdn-a", "cdn-b", "cdn-c"} < set(NODES)
    assert set(CALL_GRAPH) == set(NODES)
    assert all(set(downstreams) <= set(NODES) for downstreams in CALL_GRAPH.values())
    assert FAULT_KINDS["latency"].defaults() == {"latency_seconds": 0.25}
    assert FAULT_KINDS["errors"].defaults() == {"error_ratio": 0.5}
    assert FAULT_KINDS["cpu_saturation"].defaults()["usable_slots"] == 2


def test_valid_targets_unknown_kind():
    with pytest.raises(ValueError) as ei:
        valid_targets("meltdown")
    msg = str(ei.value)
    assert "meltdown" in msg and "latency" in msg and "errors" in msg and "timeout_cascade" in msg


def test_inject_records_ground_truth_with_injected_clock(tmp_path):
    clock = FakeClock()
    log = tmp_path / "sub" / "faults.jsonl"
    inj = FaultInjector(log, clock=clock)
    rec = inj.inject("latency", "postgres", 60)
    assert set(rec) == {"id", "kind", "target", "start", "end", "params", "fault", "expected_impact"}
    assert {"user_profile", "post_content", "messaging"} <= set(rec["expected_impact"])
    assert rec["kind"] == "latency" and rec["target"] == "postgres" and rec["fault"] is True
    assert rec["start"] == rfc3339(T0) and rec["start"].endswith(".123Z")
    assert rec["end"] == rfc3339(T0 + 60)
    assert rec["start"][:4] == "2026" and rec["start"][10] == "T"
    assert rec["params"] == {"latency_seconds": 0.25}

    clock.t += 5
    rec2 = inj.inject("errors", "gift", 1.5, {"error_ratio": 1.0})
    assert rec2["params"] == {"error_ratio": 1.0}
    assert rec2["id"] != rec["id"]
    lines = log.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [rec, rec2]
    assert inj.records() == [rec, rec2] == inj.truth.records()


def test_rfc3339_format():
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1.5) == "1970-01-01T00:00:01.500Z"
    assert rfc3339(59.9996) == "1970-01-01T00:01:00.000Z"  # rounds to the millisecond


def test_injector_without_log_keeps_records_in_memory():
    inj = FaultInjector(clock=FakeClock())
    inj.inject("cpu_saturation", "redis", 10)
    assert [r["target"] for r in inj.records()] == ["redis"]


@pytest.mark.parametrize("kind,target,bad", [("bogus", "postgres", "bogus"), ("latency", "mysql", "mysql"),
                                            ("errors", "", "''"), (None, "gift", "None")])
def test_unknown_kind_or_target(kind, target, bad):
    inj = FaultInjector(clock=FakeClock())
    with pytest.raises(ValueError) as ei:
        inj.inject(kind, target, 10)
    msg = str(ei.value)
    assert bad in msg
    if kind in FAULT_KINDS:
        assert "valid targets" in msg and "postgres" in msg and "gateway" in msg
    else:
        assert "valid kinds" in msg and "latency" in msg
    assert inj.records() == []


@pytest.mark.parametrize("duration", [0, -1, "10", True, None, math.nan, math.inf, 10 ** 9])
def test_bad_duration(duration):
    with pytest.raises(ValueError, match="duration_seconds"):
        FaultInjector(clock=FakeClock()).inject("latency", "user", duration)


@pytest.mark.parametrize("kind,params,needle", [
    ("errors", {"error_ratio": 1.5}, "error_ratio"),
    ("errors", {"error_ratio": "half"}, "error_ratio"),
    ("errors", {"latency_seconds": 1}, "latency_seconds"),
    ("latency", {"latency_seconds": 0}, "latency_seconds"),
    ("cpu_saturation", {"usable_slots": 0}, "usable_slots"),
    ("cpu_saturation", {"usable_slots": 1.5}, "usable_slots"),
    ("latency", ["latency_seconds"], "params"),
])
def test_bad_params(kind, params, needle):
    with pytest.raises(ValueError, match=needle):
        FaultInjector(clock=FakeClock()).inject(kind, "feed", 10, params)


def test_expiry_and_effects():
    clock = FakeClock()
    inj = FaultInjector(clock=clock)
    assert inj.effects("postgres") is NO_EFFECTS
    inj.inject("latency", "postgres", 30)
    inj.inject("errors", "postgres", 10, {"error_ratio": 0.2})
    inj.inject("cpu_saturation", "redis", 20)
    eff = inj.effects("postgres")
    assert eff.latency_seconds == 0.25 and eff.error_ratio == 0.2 and eff.usable_slots is None
    assert inj.effects("redis").usable_slots == 2 and inj.effects("redis").hold_seconds == 0.5
    assert inj.effects("gateway") is NO_EFFECTS
    assert {f.kind for f in inj.active("postgres")} == {"latency", "errors"}
    assert [f.target for f in inj.active(kind="cpu_saturation")] == ["redis"]

    clock.t = T0 + 10  # end is exclusive
    assert inj.effects("postgres").error_ratio == 0.0
    assert inj.effects("postgres").latency_seconds == 0.25
    clock.t = T0 + 30
    assert inj.effects("postgres") is NO_EFFECTS
    assert inj.active() == []
    assert len(inj.records()) == 3  # ground truth is kept after expiry


def test_overlapping_faults_take_the_strongest():
    inj = FaultInjector(clock=FakeClock())
    inj.inject("latency", "feed", 10, {"latency_seconds": 0.1})
    inj.inject("latency", "feed", 10, {"latency_seconds": 0.4})
    inj.inject("cpu_saturation", "feed", 10, {"usable_slots": 4, "hold_seconds": 0.2})
    inj.inject("cpu_saturation", "feed", 10, {"usable_slots": 1, "hold_seconds": 0.1})
    eff = inj.effects("feed")
    assert eff.latency_seconds == 0.4 and eff.usable_slots == 1 and eff.hold_seconds == 0.2
    assert eff.extra_seconds == pytest.approx(0.6)
