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
    ("config.bad_receiver.yaml", load_config, ["receivers.0.webhook_url", "http://"]),
    # a misspelt nested key: the allowed keys at that level are listed
    ("config.nested_unknown_key.yaml", load_config, ["detection.windw", "did you mean 'window'", "min_points"]),
    # a list where a mapping is expected
    ("config.not_a_mapping.yaml", load_config, ["top level must be a mapping"]),
    # depends_on names a node that does not exist
    ("topology.dangling_edge.yaml", Topology.load, ["nodes.checkout.depends_on", "'postgress'", "postgres"]),
    # a dependency cycle is drawn out
    ("topology.cycle.yaml", Topology.load, ["cycle", "a -> b -> c -> a"]),
    # an unknown node kind
    ("topology.bad_kind.yaml", Topology.load, ["nodes.a.kind", "business"]),
    # PromQL this version does not evaluate: the supported forms are named
    ("rules.bad_expr.yaml", load_rules, ["groups.0.rules.0", "SIGNAL OP NUMBER"]),
    # an unknown signal: the known ones are listed
    ("rules.unknown_signal.yaml", load_rules, ["latency_p95", "latency_p99_seconds"]),
    # a bad `for` duration
    ("rules.bad_for.yaml", load_rules, ["groups.0.rules.0.for", "soon"]),
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
    topology = Topology.load()
    assert set(topology.nodes("infra")) == {"postgres", "redis", "kafka"}
    assert len(topology.nodes("business")) == 6
    assert {r.name for r in load_rules()} >= {"TargetDown", "LatencyAnomaly", "ErrorRatioAnomaly"}
