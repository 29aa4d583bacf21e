"""Invalid configuration, topology and rules files: one testdata file per case; every error names the
file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.rules import load_rules
from opswatch.config import load_config
from opswatch.errors import ConfigError
from topology.graph import Topology

DATA = Path(__file__).with_name("testdata")


@pytest.mark.parametrize("name, loader, expected", [
    # a misspelt key: the closest known key is suggested
    ("config.unknown_key.yaml", load_config, ["scrape_intervall", "did you mean 'scrape_interval'"]),
    # a duration that is not Prometheus's form: the accepted form is shown
    ("config.bad_duration.yaml", load_config, ["rate_window", "15s, 1m30s"]),
    # a receiver URL with the wrong scheme
    ("config.bad_receiver.yaml", load_config, ["receivers.0.webhook_configs.0.url", "http://"]),
    # a misspelt nested key: the allowed keys at that level are listed
    ("config.nested_unknown_key.yaml", load_config, ["detection.windw", "did you mean 'window'", "min_points"]),
    # a list where a mapping is expected
    ("config.not_a_mapping.yaml", load_config, ["top level must be a mapping"]),
    # scrape_configs: errors name the job and the key
    ("config.bad_relabel_regex.yaml", load_config,
     ["scrape_configs.0.relabel_configs.0.regex", "(job 'node')", "does not compile"]),
    ("config.unknown_relabel_action.yaml", load_config,
     ["relabel_configs.0.action", "(job 'node')", "unknown relabel action 'hashmd'", "hashmod"]),
    ("config.relabel_missing_target.yaml", load_config,
     ["scrape_configs.0.metric_relabel_configs.0", "(job 'node')", "requires 'target_label'"]),
    ("config.hashmod_without_modulus.yaml", load_config,
     ["scrape_configs.1.relabel_configs.0", "(job 'sharded')", "non-zero 'modulus'"]),
    ("config.duplicate_job.yaml", load_config, ["job_name 'node' is used more than once"]),
    ("config.timeout_over_interval.yaml", load_config,
     ["job 'node'", "scrape_timeout (20s) is greater than scrape_interval (15s)"]),
    ("config.file_sd_extension.yaml", load_config,
     ["scrape_configs.0.file_sd_configs.0.files", "(job 'node')", "must end in .json, .yml or .yaml"]),
    ("config.missing_job_name.yaml", load_config, ["scrape_configs.0.job_name", "Field required"]),
    ("config.scrape_config_typo.yaml", load_config,
     ["scrape_configs.0.static_config", "(job 'node')", "did you mean 'static_configs'"]),
    # depends_on names a node that does not exist
    ("topology.dangling_edge.yaml", Topology.load, ["nodes.checkout.depends_on", "'postgress'", "postgres"]),
    # a dependency cycle is drawn out
    ("topology.cycle.yaml", Topology.load, ["cycle", "a -> b -> c -> a"]),
    # an unknown node kind
    ("topology.bad_kind.yaml", Topology.load, ["nodes.a.kind", "business"]),
    # PromQL OpsWatch does not evaluate: the construct, its position, the group, rule and key are named
    ("rules.bad_expr.yaml", load_rules, ["group 'g', rule 'A' (groups.0.rules.0), key 'expr'",
                                         "the aggregation 'topk' at character 1 is not supported"]),
    # PromQL that does not parse: the parser's reason
    ("rules.parse_error.yaml", load_rules, ["groups.0.rules.0", "key 'expr'", "unclosed left parenthesis"]),
    # a bad `for` duration
    ("rules.bad_for.yaml", load_rules, ["groups.0.rules.0.for", "(group 'g', rule 'A')", "soon"]),
])
def test_invalid_file_names_file_key_and_fix(name, loader, expected):
    with pytest.raises(ConfigError) as info:
        loader(DATA / name)
    message = str(info.value)
    assert name in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_missing_file_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(DATA / "no-such-file.yaml")


def test_defaults_and_overrides():
    config = load_config(None, scrape_interval="1s", data_dir=None)
    assert config.scrape_interval == 1.0
    assert config.evaluation_seconds == 1.0  # follows the scrape interval unless set
    assert config.rate_window == 30.0
    assert config.resolve_after == 300.0


def test_reference_topology_and_default_rules_load():
    from sample_platform import graph

    topology = Topology.load()
    # the graph covers exactly the platform's nodes, each with its kind
    assert set(topology.nodes("infra")) == set(graph.INFRA)
    assert set(topology.nodes("service")) == set(graph.SERVICES)
    assert {"watch_feed", "live_streaming", "send_gift", "messaging"} <= set(topology.nodes("business"))
    assert {r.name for r in load_rules()} >= {"TargetDown", "LatencyAnomaly", "ErrorRatioAnomaly"}
