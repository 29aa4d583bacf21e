"""Attributing incidents to injected faults (opswatch/scenarios.py): pure, on hand-made ground truth."""

from __future__ import annotations

import pytest

from alerting.model import rfc3339
from opswatch.scenarios import Outcome, Scenario, attribute, fault_nodes

T0 = 1_800_000_000_000  # ms


def at(seconds: float) -> str:
    return rfc3339(T0 + int(seconds * 1000))


def fault(kind: str, target: str, start: float, end: float) -> dict:
    return {"kind": kind, "target": target, "start": at(start), "end": at(end), "fault": True,
            "expected_impact": ["send_gift"]}


def incident(id_: str, opened: float, roots: list[str], nodes: list[str], paged: float | None = None) -> dict:
    return {"id": id_, "opened_at": at(opened), "root_causes": [{"node": n} for n in roots],
            "alerts": [{"node": n} for n in nodes], "key_times": {"paged": at(paged) if paged else None}}


def test_each_incident_goes_to_the_fault_on_its_nodes_and_the_rest_are_false():
    faults = [fault("errors", "gift", 100, 160), fault("latency", "postgres", 300, 360)]
    surges = [{"kind": "surge:celebrity_live", "start": at(500), "end": at(600), "fault": False}]
    incidents = [
        incident("INC-1", 110, ["gift", "gateway"], ["gift", "gateway"], paged=115),
        incident("INC-2", 50, ["cdn-a"], ["cdn-a"]),                     # before any fault
        incident("INC-3", 305, ["user", "postgres"], ["user", "postgres"], paged=320),
        incident("INC-4", 310, ["cdn-b"], ["cdn-b"]),                    # during a fault, unrelated nodes
        incident("INC-5", 550, ["live"], ["live"]),                      # during a surge
    ]
    outcomes, false = attribute(faults, surges, incidents, attribution_seconds=30)
    gift, postgres = outcomes
    assert [i["id"] for i in gift.incidents] == ["INC-1"] and gift.rank() == 1
    assert gift.seconds_to("opened") == 10.0 and gift.seconds_to("paged") == 15.0
    assert [i["id"] for i in postgres.incidents] == ["INC-3"] and postgres.rank() == 2
    assert {i["id"]: i["on_surge"] for i in false} == {"INC-2": False, "INC-4": False, "INC-5": True}


def test_an_undetected_fault_has_no_rank_nor_times():
    [outcome], false = attribute([fault("errors", "gift", 100, 160)], [], [], attribution_seconds=30)
    assert not outcome.detected and outcome.rank() is None and outcome.seconds_to("paged") is None
    assert outcome.to_json()["detected"] is False and false == []


def test_an_incident_after_the_grace_period_is_not_the_faults():
    [outcome], [late] = attribute([fault("errors", "gift", 100, 160)], [],
                                  [incident("INC-1", 200, ["gift"], ["gift"])], attribution_seconds=30)
    assert not outcome.detected and late["id"] == "INC-1"


def test_a_partition_is_found_at_either_end():
    record = fault("network_partition", "live~user", 100, 160)
    assert fault_nodes(record) == {"live", "user"}
    assert Outcome(record, [incident("INC-1", 110, ["live", "gateway"], ["live"])]).rank() == 1


def test_scenario_parse_names_valid_kinds():
    assert Scenario.parse("latency:postgres", 30) == Scenario("latency", "postgres", 30)
    with pytest.raises(ValueError, match="KIND one of"):
        Scenario.parse("nope:postgres")
