"""File-based target discovery (collectors/discovery.py): JSON/YAML target groups, globs, changes picked up
at the next refresh, bad files keeping their previous targets, refresh_interval with an injected clock."""

from __future__ import annotations

import json
import os

import pytest

from collectors.config import ScrapeConfig
from collectors.discovery import FileSD, TargetDiscovery, read_target_groups
from opswatch.config import load_config


class Clock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path, groups, fmt="json") -> None:
    path.write_text(json.dumps(groups) if fmt == "json" else "".join(
        f"- targets: {json.dumps(g['targets'])}\n  labels: {json.dumps(g.get('labels', {}))}\n" for g in groups))


def jobs(tmp_path, **fields) -> list[ScrapeConfig]:
    config = {"job_name": "node", "file_sd_configs": [{"files": [str(tmp_path / "*.json"), str(tmp_path / "*.yml")]}]}
    return [ScrapeConfig.model_validate({**config, **fields}).with_defaults(15.0, 10.0)]


def instances(discovery: TargetDiscovery) -> dict[str, dict[str, str]]:
    return {t.instance: t.label_set for t in discovery.targets()}


def test_json_and_yaml_groups_become_targets_with_their_labels_and_filepath(tmp_path):
    write(tmp_path / "a.json", [{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"env": "prod"}}])
    write(tmp_path / "b.yml", [{"targets": ["10.0.0.3:9100"], "labels": {"env": "dev"}}], fmt="yaml")
    discovery = TargetDiscovery(jobs(tmp_path, relabel_configs=[
        {"source_labels": ["__meta_filepath"], "regex": ".*/(.*)", "target_label": "sd_file"}]))
    assert instances(discovery) == {
        "10.0.0.1:9100": {"job": "node", "instance": "10.0.0.1:9100", "env": "prod", "sd_file": "a.json"},
        "10.0.0.2:9100": {"job": "node", "instance": "10.0.0.2:9100", "env": "prod", "sd_file": "a.json"},
        "10.0.0.3:9100": {"job": "node", "instance": "10.0.0.3:9100", "env": "dev", "sd_file": "b.yml"},
    }
    assert "__meta_filepath" not in instances(discovery)["10.0.0.1:9100"]  # meta labels go after relabeling


def test_changes_are_picked_up_at_the_next_refresh(tmp_path):
    write(tmp_path / "a.json", [{"targets": ["10.0.0.1:9100"]}])
    discovery = TargetDiscovery(jobs(tmp_path), clock=Clock())
    assert discovery.refresh() is False  # nothing changed
    write(tmp_path / "a.json", [{"targets": ["10.0.0.1:9100", "10.0.0.9:9100"]}])
    write(tmp_path / "new.json", [{"targets": ["10.0.0.5:9100"]}])  # a new file matching the glob
    assert discovery.refresh() is True
    assert set(instances(discovery)) == {"10.0.0.1:9100", "10.0.0.9:9100", "10.0.0.5:9100"}
    (tmp_path / "a.json").unlink()  # a file that disappears takes its targets with it
    assert discovery.refresh() is True and set(instances(discovery)) == {"10.0.0.5:9100"}


def test_atomic_replace_with_same_size_and_mtime_is_seen_by_its_inode(tmp_path):
    path = tmp_path / "a.json"
    write(path, [{"targets": ["10.0.0.1:9100"]}])
    discovery = TargetDiscovery(jobs(tmp_path), clock=Clock())
    stat = path.stat()
    replacement = tmp_path / "a.json.tmp"
    write(replacement, [{"targets": ["10.0.0.2:9100"]}])
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)  # how file_sd writers update files
    assert discovery.refresh() is True and set(instances(discovery)) == {"10.0.0.2:9100"}


def test_refresh_interval_rereads_files_whose_stat_did_not_change(tmp_path):
    path = tmp_path / "a.json"
    write(path, [{"targets": ["10.0.0.1:9100"]}])
    clock = Clock()
    sd = FileSD(jobs(tmp_path)[0].file_sd_configs[0], clock)
    sd.refresh()
    stat = path.stat()
    with open(path, "r+") as f:  # same size, same inode, same mtime: invisible to the stat check
        text = f.read().replace("10.0.0.1", "10.0.0.7")
        f.seek(0)
        f.write(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    clock.now += 299
    assert sd.refresh() is False
    clock.now += 1  # refresh_interval (5m) has passed: every file is read again
    assert sd.refresh() is True and sd.target_groups()[0].targets == ("10.0.0.7:9100",)


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read target groups"),
    ('[{"targets": "10.0.0.1:9100"}]', "0.targets"),  # a string, not a list
    ('[{"targets": ["a:1"], "labels": {"bad-name": "x"}}]', "'bad-name' is not a valid label name"),
    ('[{"targets": ["a:1"], "lables": {}}]', "0.lables"),
])
def test_bad_file_keeps_its_previous_targets_and_says_why(tmp_path, content, message):
    path = tmp_path / "a.json"
    write(path, [{"targets": ["10.0.0.1:9100"]}])
    discovery = TargetDiscovery(jobs(tmp_path), clock=Clock())
    path.write_text(content)
    assert discovery.refresh() is False
    assert set(instances(discovery)) == {"10.0.0.1:9100"}  # nothing lost
    [(where, error)] = discovery.file_errors().items()
    assert where == str(path) and str(path) in error and message in error
    write(path, [{"targets": ["10.0.0.2:9100"]}])  # fixed: the error clears
    assert discovery.refresh() is True and discovery.file_errors() == {}


def test_read_errors_are_counted(tmp_path):
    from prometheus_client import CollectorRegistry

    (tmp_path / "a.json").write_text("[")
    registry = CollectorRegistry()
    discovery = TargetDiscovery(jobs(tmp_path), registry=registry, clock=Clock())
    assert discovery.targets() == []
    assert registry.get_sample_value("opswatch_sd_file_read_errors_total") == 1.0
    assert registry.get_sample_value("opswatch_sd_discovered_targets", {"job": "node"}) == 0.0


def test_a_bad_target_is_reported_and_the_others_kept(tmp_path):
    write(tmp_path / "a.json", [{"targets": ["10.0.0.1:9100", "10.0.0.2:9100/metrics"]}])
    discovery = TargetDiscovery(jobs(tmp_path))
    assert set(instances(discovery)) == {"10.0.0.1:9100"}
    [error] = discovery.errors["node"]
    assert "10.0.0.2:9100/metrics" in error and "not a valid hostname" in error and "a.json" in error


def test_static_and_file_targets_together_without_duplicates(tmp_path):
    write(tmp_path / "a.json", [{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"]}])
    discovery = TargetDiscovery(jobs(tmp_path, static_configs=[{"targets": ["10.0.0.1:9100"]}]))
    assert [t.instance for t in discovery.targets()] == ["10.0.0.1:9100", "10.0.0.2:9100"]


def test_relative_file_sd_paths_are_relative_to_the_configuration_file(tmp_path):
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "opswatch.yaml"
    config.write_text("scrape_configs:\n  - job_name: node\n    file_sd_configs: [{files: [targets/*.json]}]\n")
    [job] = load_config(config).scrape_configs
    assert job.file_sd_configs[0].files == (str(tmp_path / "conf" / "targets" / "*.json"),)


def test_read_target_groups_of_an_empty_yaml_file_is_no_group(tmp_path):
    (tmp_path / "a.yml").write_text("")
    assert read_target_groups(str(tmp_path / "a.yml")) == []
