"""Prometheus relabeling (collectors/relabel.py) and what a discovered target becomes (collectors/targets.py).

Expected results follow the relabel_config documentation and Prometheus's behaviour; the integration
test ``test_prometheus_parity.py`` checks the same configs against a real Prometheus 2.42.
"""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from collectors.config import ScrapeConfig
from collectors.relabel import RelabelConfig, expand, process
from collectors.target_labels import sample_labels
from collectors.targets import TargetError, build_target


def rc(**fields) -> RelabelConfig:
    return RelabelConfig.model_validate(fields)


@pytest.mark.parametrize("template, expected", [
    ("$1", "foo"),
    ("${1}", "foo"),
    ("$name", "bar"),
    ("${name}_x", "bar_x"),
    ("$1x", ""),  # Go reads the name "1x": no such group, so nothing (the classic gotcha)
    ("${1}x", "foox"),
    ("$$1", "$1"),  # $$ is a literal $
    ("a$", "a$"),  # a $ that starts no reference stays
    ("${1", "${1"),  # unclosed brace: plain text
    ("$-", "$-"),
    ("$01", ""),  # a leading zero makes it a name, and there is no such name
    ("$3", ""),  # no such group
    ("$2-$1", "bar-foo"),
])
def test_expand_follows_go_regexp_expand(template, expected):
    match = re.fullmatch(r"(?P<first>f..);(?P<name>b..)", "foo;bar")
    assert expand(template, match) == expected


LABELS = {"a": "foo", "b": "bar", "c": "baz"}


@pytest.mark.parametrize("configs, expected", [
    # replace: the default regex (.*) and replacement $1 copy a label
    ([rc(source_labels=["a"], target_label="d")], {**LABELS, "d": "foo"}),
    # capture groups, ${1} next to text
    ([rc(source_labels=["a"], regex="f(.*)", replacement="${1}bar", target_label="d")], {**LABELS, "d": "oobar"}),
    # several source labels joined by the separator
    ([rc(source_labels=["a", "b"], regex="(.*);(.*)", replacement="$2-$1", target_label="d")], {**LABELS, "d": "bar-foo"}),
    ([rc(source_labels=["a", "b"], separator="/", regex="foo/(.*)", target_label="d")], {**LABELS, "d": "bar"}),
    # the regex is anchored at both ends: "f" does not match "foo", so nothing happens
    ([rc(source_labels=["a"], regex="f", target_label="d", replacement="x")], LABELS),
    # an empty result deletes the target label
    ([rc(source_labels=["missing"], target_label="a")], {"b": "bar", "c": "baz"}),
    # the target label may come from the match
    ([rc(source_labels=["a"], regex="(f)(.*)", target_label="${1}_$2", replacement="x")], {**LABELS, "f_oo": "x"}),
    # ... and "$1_" is the group named "1_", which does not exist
    ([rc(source_labels=["a"], regex="(f)(.*)", target_label="$1_$2", replacement="x")], {**LABELS, "oo": "x"}),
    # an expanded target that is not a label name changes nothing
    ([rc(source_labels=["a"], regex="(.*)", target_label="${1}", replacement="x")], {**LABELS, "foo": "x"}),
    ([rc(source_labels=["c"], regex="b(.*)", target_label="$1", replacement="x")], {**LABELS, "az": "x"}),
    # keep / drop on the joined value
    ([rc(source_labels=["a"], regex="fo+", action="keep")], LABELS),
    ([rc(source_labels=["a"], regex="fo", action="keep")], None),
    ([rc(source_labels=["a"], regex="fo+", action="drop")], None),
    ([rc(source_labels=["missing"], regex="", action="drop")], None),  # a missing label is ""
    # keepequal / dropequal compare with another label
    ([rc(source_labels=["a"], target_label="b", action="keepequal")], None),
    ([rc(source_labels=["a"], target_label="b", action="dropequal")], LABELS),
    # hashmod: md5, last 8 bytes big-endian, mod (Prometheus's own test vector: "baz" % 1000 = 976)
    ([rc(source_labels=["c"], modulus=1000, target_label="d", action="hashmod")], {**LABELS, "d": "976"}),
    # labelmap copies matching names (the originals stay)
    ([rc(regex="(b|c)", replacement="x_$1", action="labelmap")], {**LABELS, "x_b": "bar", "x_c": "baz"}),
    ([rc(regex="labelmap_no_match", action="labelmap")], LABELS),
    # labeldrop / labelkeep match names, anchored
    ([rc(regex="a|b", action="labeldrop")], {"c": "baz"}),
    ([rc(regex="a|b", action="labelkeep")], {"a": "foo", "b": "bar"}),
    ([rc(regex="ba", action="labelkeep")], {}),
    # lowercase / uppercase
    ([rc(source_labels=["a", "b"], target_label="d", action="uppercase")], {**LABELS, "d": "FOO;BAR"}),
    ([rc(source_labels=["d"], target_label="e", action="lowercase")], LABELS),  # "" lower: no label
    # actions are case-insensitive; steps see the previous steps' results
    ([rc(source_labels=["a"], target_label="d", action="Replace"),
      rc(source_labels=["d"], regex="foo", action="drop")], None),
    ([rc(source_labels=["a"], target_label="a", replacement="new"), rc(source_labels=["a"], target_label="d")],
     {**LABELS, "a": "new", "d": "new"}),
])
def test_relabel_actions(configs, expected):
    labels = dict(LABELS)
    before = dict(labels)
    assert process(labels, configs) == expected
    assert labels == before  # the input is not modified


@pytest.mark.parametrize("fields, message", [
    ({"action": "hashmod", "target_label": "d"}, "non-zero 'modulus'"),
    ({"action": "replace"}, "requires 'target_label'"),
    ({"target_label": "1abc"}, "invalid 'target_label'"),
    ({"target_label": "a-b"}, "invalid 'target_label'"),
    ({"action": "lowercase", "target_label": "a", "replacement": "x"}, "'replacement' can not be set"),
    ({"action": "labelmap", "replacement": "1x"}, "invalid 'replacement'"),
    ({"action": "labeldrop", "regex": "a", "source_labels": ["b"]}, "requires only 'regex'"),
    ({"action": "labelkeep", "regex": "a", "target_label": "b"}, "requires only 'regex'"),
    ({"action": "keepequal", "target_label": "a", "regex": "x"}, "requires only 'source_labels' and 'target_label'"),
    ({"action": "hashmd", "target_label": "a"}, "unknown relabel action 'hashmd'"),
    ({"regex": "([a-z"}, "does not compile"),
    ({"source_labels": ["ok", "not ok"], "target_label": "a"}, "'not ok' is not a valid label name"),
    ({"target_label": "a", "regexp": "x"}, "Extra inputs are not permitted"),
])
def test_invalid_relabel_config_is_rejected_naming_the_field(fields, message):
    with pytest.raises(ValidationError) as info:
        RelabelConfig.model_validate(fields)
    assert message in str(info.value)


def test_dot_does_not_match_a_newline():
    # RE2 and Python agree: (.*) does not match "1\n2", so nothing is replaced
    assert process({"n": "1\n2"}, [rc(source_labels=["n"], target_label="d", replacement="x")]) == {"n": "1\n2"}


def test_defaults_are_prometheus_defaults():
    config = RelabelConfig(target_label="x")
    assert (config.action, config.separator, config.regex, config.replacement) == ("replace", ";", "(.*)", "$1")


# -- targets -------------------------------------------------------------------------------------------------


def job(**fields) -> ScrapeConfig:
    return ScrapeConfig.model_validate({"job_name": "node", **fields}).with_defaults(15.0, 10.0)


def test_static_target_gets_job_instance_url_interval_and_timeout():
    target = build_target({"__address__": "10.0.0.7:9100", "env": "prod"}, job())
    assert target.url == "http://10.0.0.7:9100/metrics"
    assert target.label_set == {"job": "node", "instance": "10.0.0.7:9100", "env": "prod"}
    assert (target.interval_seconds, target.timeout_seconds) == (15.0, 10.0)
    assert dict(target.discovered_labels) == {"__address__": "10.0.0.7:9100", "env": "prod"}


@pytest.mark.parametrize("address, scheme, instance", [
    ("example.com", "http", "example.com:80"),  # Prometheus 2.x appends the scheme's port
    ("example.com", "https", "example.com:443"),
    ("[::1]", "http", "[::1]:80"),
    ("[::1]:9100", "http", "[::1]:9100"),
])
def test_default_port(address, scheme, instance):
    target = build_target({"__address__": address}, job(scheme=scheme))
    assert target.instance == instance and target.url == f"{scheme}://{instance}/metrics"


def test_relabeling_builds_url_params_and_labels_and_drops_internal_ones():
    config = job(
        params={"module": ["a", "b"], "x": ["1"]},
        metrics_path="/probe",
        relabel_configs=[
            {"source_labels": ["__address__"], "target_label": "__param_module", "regex": ".*:(.*)",
             "replacement": "port$1"},
            {"source_labels": ["__meta_zone"], "target_label": "zone"},
            {"target_label": "__scheme__", "replacement": "https"},
            {"target_label": "__tmp_scratch", "replacement": "gone"},
            {"source_labels": ["__address__"], "regex": "(.*):.*", "target_label": "instance"},
        ],
    )
    target = build_target({"__address__": "node-1:9100", "__meta_zone": "eu"}, config)
    # __param_module replaces the first value of the job's params, as Prometheus does
    assert target.url == "https://node-1:9100/probe?module=port9100&module=b&x=1"
    assert target.label_set == {"job": "node", "instance": "node-1", "zone": "eu"}


def test_target_dropped_by_relabeling_is_none():
    assert build_target({"__address__": "a:1"}, job(relabel_configs=[{"regex": ".*", "action": "drop",
                                                                       "source_labels": ["__address__"]}])) is None


def test_hashmod_sharding_keeps_this_collectors_share():
    shard = [{"source_labels": ["__address__"], "modulus": 3, "target_label": "__tmp_shard", "action": "hashmod"},
             {"source_labels": ["__tmp_shard"], "regex": "1", "action": "keep"}]
    addresses = [f"10.0.0.{i}:9100" for i in range(60)]
    kept = [a for a in addresses if build_target({"__address__": a}, job(relabel_configs=shard))]
    assert 10 <= len(kept) <= 30  # about a third, and deterministic:
    assert kept == [a for a in addresses if build_target({"__address__": a}, job(relabel_configs=shard))]
    assert "__tmp_shard" not in build_target({"__address__": kept[0]}, job(relabel_configs=shard)).label_set


@pytest.mark.parametrize("discovered, relabel, message", [
    ({"__address__": "a:1"}, [{"target_label": "__address__", "replacement": ""}], "no address"),
    ({"__address__": "a:1/x"}, [], "not a valid hostname"),
    ({"__address__": "a:1", "__scrape_interval__": "soon"}, [], "error parsing __scrape_interval__"),
    ({"__address__": "a:1", "__scrape_timeout__": "1m"}, [], "cannot be greater than scrape interval"),
    ({"__address__": "a:1", "__scrape_interval__": "0s"}, [], "cannot be 0"),
])
def test_target_errors_say_why(discovered, relabel, message):
    with pytest.raises(TargetError, match=message):
        build_target(discovered, job(relabel_configs=relabel))


def test_relabeled_interval_and_timeout_apply_to_the_target():
    target = build_target({"__address__": "a:1", "__scrape_interval__": "1m", "__scrape_timeout__": "30s"}, job())
    assert (target.interval_seconds, target.timeout_seconds) == (60.0, 30.0)


def test_probe_target_keeps_its_url_and_is_its_instance():
    config = job(probe={"http": {"valid_status_codes": [200]}})
    target = build_target({"__address__": "https://example.com/health"}, config)
    assert target.url == "https://example.com/health" and target.instance == "https://example.com/health"
    assert build_target({"__address__": "example.com"}, config).url == "http://example.com"
    renamed = build_target({"__address__": "x", "__param_target": "https://b.example/"}, config)
    assert renamed.url == "https://b.example/"


def test_sample_labels_resolve_clashes_shorter_names_first():
    page = {"job": "a", "exported_job": "b", "instance": "c", "x": "1"}
    target = {"job": "J", "instance": "I"}
    assert sample_labels(page, target, honor_labels=False) == {
        "job": "J", "instance": "I", "x": "1", "exported_job": "b", "exported_exported_job": "a",
        "exported_instance": "c"}
    assert sample_labels(page, target, honor_labels=True) == page
    assert sample_labels({"x": "1"}, {"job": "J", "empty": ""}, honor_labels=False) == {"x": "1", "job": "J"}
