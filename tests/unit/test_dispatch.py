"""Aggregation groups and their timers (group_wait, group_interval, repeat_interval), dedup, resolved
notifications, muting, and the notification log across a restart: an explicit ms clock, no sleeping."""

from __future__ import annotations

import pytest

from alerting.dispatch import DispatchAlert, GroupDispatcher
from alerting.routing import RouteConfig, build_route
from opswatch.errors import ConfigError

S, MIN, HOUR = 1000, 60_000, 3_600_000
T0 = 1_800_000_000_000


def route(**settings):
    return build_route(RouteConfig.model_validate({"receiver": "oncall", **settings}))


def firing(fp: str, incident: str = "INC-1", starts: int = T0, muted: bool = False, **labels) -> DispatchAlert:
    return DispatchAlert(fp, {"alertname": "A", "incident": incident, **labels}, True, starts, muted)


def resolved(fp: str, incident: str = "INC-1") -> DispatchAlert:
    return DispatchAlert(fp, {"alertname": "A", "incident": incident}, False, T0)


def test_group_wait_batches_the_first_alerts_of_an_incident_into_one_notification():
    d = GroupDispatcher(route())  # defaults: 5 s / 5 m / 4 h
    assert d.flush(T0, [firing("a")]) == []
    assert d.flush(T0 + 2 * S, [firing("a"), firing("b", starts=T0 + 2 * S)]) == []
    [note] = d.flush(T0 + 5 * S, [firing("a"), firing("b", starts=T0 + 2 * S)])
    assert (note.receiver, note.firing, note.resolved, note.repeat) == ("oncall", ["a", "b"], [], False)
    assert note.group_key == '{}:{incident="INC-1"}' and note.group_labels == {"incident": "INC-1"}


def test_group_interval_paces_changes_and_repeat_interval_resends_an_unchanged_group():
    d = GroupDispatcher(route(group_wait="0s", group_interval="1m", repeat_interval="10m"))
    assert [n.firing for n in d.flush(T0, [firing("a")])] == [["a"]]
    now = [firing("a"), firing("b")]
    assert d.flush(T0 + 59 * S, now) == []                    # changed, but group_interval not over
    assert [n.firing for n in d.flush(T0 + MIN, now)] == [["a", "b"]]
    for minute in range(2, 11):                               # unchanged: quiet until repeat_interval
        assert d.flush(T0 + minute * MIN, now) == [], minute
    [again] = d.flush(T0 + 11 * MIN, now)
    assert again.repeat and again.firing == ["a", "b"]


def test_resolved_alerts_are_notified_once_then_the_group_ends():
    d = GroupDispatcher(route(group_wait="0s", group_interval="1m"))
    d.flush(T0, [firing("a"), firing("b")])
    [note] = d.flush(T0 + MIN, [firing("a"), resolved("b")])
    assert (note.firing, note.resolved) == (["a"], ["b"])
    [note] = d.flush(T0 + 2 * MIN, [resolved("a"), resolved("b")])
    assert (note.firing, note.resolved, note.repeat) == ([], ["a"], False)
    assert d.groups == {} and d.flush(T0 + 3 * MIN, [resolved("a"), resolved("b")]) == []


def test_muted_alerts_page_nobody_and_a_group_pages_when_the_mute_ends():
    d = GroupDispatcher(route(group_wait="0s", group_interval="1m"))
    assert d.flush(T0, [firing("a", muted=True)]) == []
    assert d.flush(T0 + MIN, [firing("a", muted=True)]) == []
    # a resolved alert that was never notified is not notified either
    assert d.flush(T0 + 2 * MIN, [resolved("a")]) == []
    d.flush(T0 + 3 * MIN, [firing("x", muted=True), firing("y")])
    assert [n.firing for n in d.flush(T0 + 4 * MIN, [firing("x"), firing("y")])] == [["x", "y"]]


def test_an_alert_older_than_group_wait_is_flushed_at_once():
    d = GroupDispatcher(route())
    [note] = d.flush(T0 + 10 * MIN, [firing("a", starts=T0)])
    assert note.firing == ["a"]


def test_groups_follow_group_by_and_continue_reaches_several_receivers():
    tree = route(group_wait="0s", group_by=["alertname"], routes=[
        {"receiver": "dba", "matchers": ['job="postgres"'], "continue": True},
        {"receiver": "team", "matchers": ['job=~"postgres|user"']}])
    d = GroupDispatcher(tree)
    notes = d.flush(T0, [firing("p", job="postgres"), firing("u", job="user", incident="INC-2"),
                         firing("f", job="feed", alertname="B")])
    got = sorted((n.receiver, n.group_key, tuple(n.firing)) for n in notes)
    assert got == [("dba", '{}/{job="postgres"}:{alertname="A"}', ("p",)),
                   ("oncall", '{}:{alertname="B"}', ("f",)),
                   ("team", '{}/{job=~"postgres|user"}:{alertname="A"}', ("p", "u"))]  # across incidents


def test_alerts_moving_to_another_incident_leave_their_old_group():
    d = GroupDispatcher(route(group_wait="0s", group_interval="1m"))
    d.flush(T0, [firing("a", incident="INC-2")])
    [note] = d.flush(T0 + 1, [firing("a", incident="INC-1")])  # INC-2 merged into INC-1: a new group
    assert note.group_labels == {"incident": "INC-1"} and note.firing == ["a"]
    assert [g.labels for g in d.groups.values()] == [{"incident": "INC-1"}]


def test_the_notification_log_survives_a_restart(tmp_path):
    path = tmp_path / "nflog.json"
    tree = route(group_wait="0s", repeat_interval="1h")
    first = GroupDispatcher(tree, path)
    assert len(first.flush(T0, [firing("a")])) == 1
    second = GroupDispatcher(tree, path)  # a restart: groups are rebuilt, the log remembers
    assert second.flush(T0 + MIN, [firing("a")]) == []
    assert [n.resolved for n in second.flush(T0 + 6 * MIN, [resolved("a")])] == [["a"]]
    third = GroupDispatcher(tree, path)
    assert [n.firing for n in third.flush(T0 + 7 * MIN, [firing("a")])] == [["a"]]  # fired again: paged again
    path.write_text('{"version": 1, "entries": [{"group_key": 1}]}')
    with pytest.raises(ConfigError, match="nflog.json: cannot restore the notification log"):
        GroupDispatcher(tree, path)


def test_a_route_muted_by_a_time_interval_holds_its_page_until_the_mute_ends():
    from detection.time_intervals import parse_time_intervals
    # T0 is Friday 08:00 UTC: muted until 08:05, then the held-back page goes out at the group's next flush
    window = parse_time_intervals([{"times": [{"start_time": "07:00", "end_time": "08:05"}]}])
    d = GroupDispatcher(build_route(
        RouteConfig.model_validate({"receiver": "log", "routes": [
            {"receiver": "oncall", "group_wait": "0s", "group_interval": "1m", "mute_time_intervals": ["maint"]}]}),
        time_intervals={"maint": window}))
    for minute in range(5):
        assert d.flush(T0 + minute * MIN, [firing("a")]) == [], minute
    assert d.nflog == {}                                       # nothing was logged as sent
    [note] = d.flush(T0 + 5 * MIN, [firing("a")])
    assert (note.receiver, note.firing) == ("oncall", ["a"])
