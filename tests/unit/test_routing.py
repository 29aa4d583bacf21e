"""The routing tree: Alertmanager's matching (first match, continue, deepest wins), inheritance, defaults,
grouping labels, and configuration errors that name the key."""

from __future__ import annotations

import pytest

from alerting.routing import RouteConfig, build_route, check_root, default_route_config
from opswatch.config import load_config
from opswatch.errors import ConfigError

TREE = RouteConfig.model_validate({
    "receiver": "default",
    "group_wait": "10s",
    "routes": [
        {"receiver": "dba", "matchers": ['job=~"postgres|giftdb-.*"'], "continue": True, "group_by": ["alertname"],
         "routes": [{"receiver": "dba-pager", "matchers": ["severity=critical"], "repeat_interval": "1h"}]},
        {"receiver": "storage", "matchers": ['job="postgres"']},
        {"receiver": "never", "matchers": ['job="postgres"']},  # after a match without continue
        {"matchers": ['job="live"'], "group_by": ["..."]},    # inherits the receiver
    ],
})


def receivers(labels: dict) -> list[str]:
    return [r.receiver for r in build_route(TREE).match(labels)]


@pytest.mark.parametrize("labels, expected", [
    ({"job": "postgres", "severity": "critical"}, ["dba-pager", "storage"]),  # deepest, then continue
    ({"job": "postgres", "severity": "warning"}, ["dba", "storage"]),         # no child matched: the node itself
    ({"job": "giftdb-1"}, ["dba"]),
    ({"job": "live"}, ["default"]),
    ({"job": "feed"}, ["default"]),                                           # nothing matched: the root
    ({}, ["default"]),
])
def test_matching_is_alertmanagers(labels, expected):
    assert receivers(labels) == expected


def test_settings_are_inherited_and_defaults_are_alertmanagers():
    root = build_route(TREE)
    dba, storage, _, live = root.routes
    pager = dba.routes[0]
    assert (root.group_wait_ms, root.group_interval_ms, root.repeat_interval_ms) == (10_000, 300_000, 14_400_000)
    assert (pager.group_wait_ms, pager.group_interval_ms, pager.repeat_interval_ms) == (10_000, 300_000, 3_600_000)
    assert root.group_by == ("incident",) and storage.group_by == ("incident",)
    assert dba.group_by == pager.group_by == ("alertname",)
    assert live.group_by is None and live.receiver == "default"
    labels = {"job": "live", "alertname": "A", "incident": "INC-1"}
    assert live.group_labels(labels) == labels
    assert root.group_labels(labels) == {"incident": "INC-1"}
    assert dba.group_labels({"job": "x"}) == {}  # a missing group_by label is left out
    assert pager.key == '{}/{job=~"postgres|giftdb-.*"}/{severity="critical"}' and root.key == "{}"
    assert pager.path == "route.routes.0.routes.0"


def test_default_tree_sends_every_notification_to_every_receiver_or_the_log():
    both = build_route(default_route_config(["oncall", "team"]))
    assert [r.receiver for r in both.match({"job": "x"})] == ["oncall", "team"]
    assert [r.receiver for r in build_route(default_route_config([])).match({"job": "x"})] == ["log"]


@pytest.mark.parametrize("route, message", [
    ({"receiver": "nobody"},
     "route.receiver: 'nobody' is not a receiver; add it under receivers: or use one of: log, oncall"),
    ({"receiver": "log", "routes": [{"routes": [{"receiver": "x"}]}]},
     "route.routes.0.routes.0.receiver: 'x' is not a receiver"),
    ({"group_wait": "30s"}, "route.receiver: the root route needs a receiver"),
    ({"receiver": "log", "matchers": ["a=b"]}, "route.matchers: the root route matches every alert"),
    ({"receiver": "log", "routes": [{"matchers": ["job=~(("]}]}, "route.routes.0.matchers.*bad regex"),
    ({"receiver": "log", "routes": [{"matchers": ["job"]}]}, "route.routes.0.matchers.*'job' is not like"),
    ({"receiver": "log", "group_by": ["...", "job"]}, "route.group_by.*must be the only entry"),
    ({"receiver": "log", "group_interval": "0s"}, "route.group_interval"),
    ({"receiver": "log", "repeat_interval": "soon"}, "route.repeat_interval.*15s, 1m30s"),
    ({"receiver": "log", "routes": [{"contineu": True}]},
     "route.routes.0.contineu' is not a known setting; did you mean 'continue'"),
])
def test_bad_routes_are_refused_naming_the_key(route, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, receivers=[{"name": "oncall"}], route=route)


def test_bad_inhibit_rules_name_the_key():
    with pytest.raises(ConfigError, match="inhibit_rules.0.target_matchers"):
        load_config(None, inhibit_rules=[{"source_matchers": ["a=b"], "target_matchers": ["nope"]}])
    with pytest.raises(ConfigError, match="inhibit_rules.0.equal"):
        load_config(None, inhibit_rules=[{"source_matchers": ["a=b"], "target_matchers": ["c=d"], "equal": "job"}])


def test_check_root_accepts_a_good_tree():
    check_root(TREE, {"default", "dba", "dba-pager", "storage", "never"})


# T0 of these tests, 1_800_000_000_000 ms, is Friday 08:00 UTC
FRIDAY_0800 = 1_800_000_000_000
NIGHT = {"name": "night", "time_intervals": [{"times": [{"start_time": "00:00", "end_time": "08:00"}]}]}
WEEKDAYS = {"name": "weekdays", "time_intervals": [{"weekdays": ["monday:friday"]}]}


def test_time_intervals_mute_a_route_or_keep_it_to_its_active_times():
    config = load_config(None, receivers=[{"name": "dba"}], time_intervals=[NIGHT, WEEKDAYS], route={
        "receiver": "log", "routes": [
            {"receiver": "dba", "matchers": ["job=postgres"], "mute_time_intervals": ["night"]},
            {"receiver": "dba", "matchers": ["job=redis"], "active_time_intervals": ["weekdays"],
             "routes": [{"matchers": ["severity=page"]}]}]})
    root = config.routing_tree()
    [postgres] = root.match({"job": "postgres"})
    assert postgres.muted_by(FRIDAY_0800) == []                # 08:00 is the first minute after the night
    assert postgres.muted_by(FRIDAY_0800 - 1) == ["night"]
    [redis] = root.match({"job": "redis"})
    assert redis.muted_by(FRIDAY_0800) == [] and redis.muted_by(FRIDAY_0800 + 24 * 3_600_000) == ["weekdays"]
    [child] = root.match({"job": "redis", "severity": "page"})
    assert child.muted_by(FRIDAY_0800 + 24 * 3_600_000) == []  # not inherited, as in Alertmanager
    assert root.muted_by(FRIDAY_0800 - 1) == []


@pytest.mark.parametrize("settings, message", [
    ({"time_intervals": [NIGHT], "route": {"receiver": "log", "mute_time_intervals": ["night"]}},
     "route.mute_time_intervals: the root route cannot have time intervals"),
    ({"time_intervals": [NIGHT], "route": {"receiver": "log", "routes": [{"active_time_intervals": ["nite"]}]}},
     "route.routes.0.active_time_intervals: 'nite' is not a time interval; define it under the top-level "
     "time_intervals (known: night)"),
    ({"time_intervals": [NIGHT, NIGHT]}, "time_intervals: name 'night' is used more than once"),
    ({"time_intervals": [{"name": "x", "time_intervals": [{"times": [{"start_time": "9:00", "end_time": "8:00"}]}]}]},
     "start_time 9:00 must be before end_time 8:00"),
])
def test_bad_time_intervals_are_named(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, **settings)
