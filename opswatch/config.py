"""OpsWatch configuration: a YAML file validated with pydantic, every key optional.

Example (all defaults shown)::

    data_dir: data                 # SQLite store, reports, fault ground truth
    scrape_interval: 5s
    scrape_timeout: 4s             # default: min(10s, scrape_interval)
    evaluation_interval: 5s        # default: scrape_interval
    rate_window: 30s               # window of rate() and histogram_quantile() in the golden signals
    resolve_after: 5m              # quiet time before an incident resolves
    rules_file: null               # default: alerting/default_rules.yaml
    topology_file: null            # default: topology/reference_platform.yaml
    external_url: http://127.0.0.1:8050
    api_token: null                # bearer token of the write endpoints (acknowledge/resolve); env OPSWATCH_API_TOKEN
    detection: {window: 120, min_points: 20}
    receivers:
      - {name: oncall, webhook_url: http://127.0.0.1:9000/hook}
    storage:                       # where samples live (storage/); see README "Storage"
      backend: sqlite              # sqlite: data_dir/opswatch.db; remote: a Prometheus-compatible store
      retention: 15d               # sqlite only: blocks older than this are deleted
      # remote: {url: http://127.0.0.1:8428/api/v1/write, query_url: http://127.0.0.1:8428}
    append_queue_samples: 500000   # scraped samples waiting for the store, at most (oldest dropped first)
    scrape_configs:                # Prometheus scrape_configs (collectors/config.py); besides the platform in demo
      - job_name: node
        scrape_interval: 15s       # default: the global one above
        static_configs: [{targets: ["127.0.0.1:9100"], labels: {env: prod}}]
        file_sd_configs: [{files: ["targets/*.json"], refresh_interval: 5m}]
        relabel_configs: [{source_labels: [__address__], modulus: 2, target_label: __tmp_shard, action: hashmod}]
        metric_relabel_configs: [{source_labels: [__name__], regex: "go_.*", action: drop}]

Errors name the file, the key and the fix (:class:`opswatch.errors.ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from collectors.config import ScrapeConfig

from .config_errors import describe_validation_error
from .durations import parse_duration
from .errors import ConfigError

Seconds = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectionConfig(_Strict):
    window: int = Field(120, ge=2, description="baseline length, in evaluations")
    min_points: int = Field(20, ge=1, description="evaluations before a series is scored")


class ReceiverConfig(_Strict):
    name: str
    webhook_url: str
    timeout: Seconds = 10.0

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} must start with http:// or https://")
        return v


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{v!r} must start with http:// or https://")
    return v


class RemoteStorageConfig(_Strict):
    """A Prometheus-compatible remote store (:class:`storage.remote.RemoteStore`); names as in
    Prometheus's ``remote_write`` and its ``queue_config``."""

    url: Annotated[str, BeforeValidator(_http_url)] = Field(description="remote-write endpoint")
    query_url: Annotated[str, BeforeValidator(_http_url)] = Field(description="query API root, no /api/v1")
    remote_timeout: Seconds = Field(30.0, gt=0)
    max_samples_per_send: int = Field(2000, ge=1)
    capacity: int = Field(100_000, ge=1, description="retry queue bound, in samples")
    max_retries: int = Field(3, ge=0)


class StorageConfig(_Strict):
    backend: Literal["sqlite", "remote"] = "sqlite"
    retention: Seconds = Field(15 * 86400.0, gt=0, description="SQLite: how long samples are kept")
    remote: RemoteStorageConfig | None = None

    @model_validator(mode="after")
    def _remote_has_urls(self) -> "StorageConfig":
        if self.backend == "remote" and self.remote is None:
            raise ValueError("backend 'remote' needs the section storage.remote, e.g. "
                             "remote: {url: http://127.0.0.1:8428/api/v1/write, query_url: http://127.0.0.1:8428}")
        return self


class OpsWatchConfig(_Strict):
    data_dir: Path = Path("data")
    scrape_interval: Seconds = 5.0
    scrape_timeout: Seconds | None = None
    evaluation_interval: Seconds | None = None
    rate_window: Seconds = 30.0
    resolve_after: Seconds = 300.0
    rules_file: Path | None = None
    topology_file: Path | None = None
    external_url: str = "http://127.0.0.1:8050"
    api_token: str | None = Field(None, min_length=8, description="bearer token for write endpoints")
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    scrape_configs: list[ScrapeConfig] = Field(default_factory=list)
    append_queue_samples: int = Field(500_000, ge=1, description="bound of the queue of scraped samples")

    @property
    def evaluation_seconds(self) -> float:
        return self.evaluation_interval or self.scrape_interval

    @property
    def scrape_timeout_seconds(self) -> float:
        """The global scrape timeout: ``scrape_timeout``, else ``min(10s, scrape_interval)``."""
        return self.scrape_timeout or min(10.0, self.scrape_interval)

    @model_validator(mode="after")
    def _jobs(self) -> "OpsWatchConfig":
        if self.scrape_timeout and self.scrape_timeout > self.scrape_interval:
            raise ValueError(f"scrape_timeout ({self.scrape_timeout:g}s) is greater than scrape_interval "
                             f"({self.scrape_interval:g}s); make it at most the interval")
        names = [job.job_name for job in self.scrape_configs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"scrape_configs: job_name {twice[0]!r} is used more than once; job names must be unique")
        self.resolved_scrape_configs()  # a job timeout above the interval it inherits is an error now, not later
        return self

    def resolved_scrape_configs(self) -> list[ScrapeConfig]:
        """``scrape_configs`` with each job's interval and timeout filled from the global ones.

        :raises ValueError: naming the job whose timeout exceeds its interval.
        """
        return [job.with_defaults(self.scrape_interval, self.scrape_timeout_seconds) for job in self.scrape_configs]


def load_config(path: str | Path | None, **overrides: Any) -> OpsWatchConfig:
    """Read ``path`` (or only the defaults when None), apply ``overrides`` (non-None values win).

    :raises ConfigError: naming the file and the key, e.g.
        ``opswatch.yaml: key 'scrape_intervall' is not a known setting; did you mean 'scrape_interval'?``
    """
    raw: dict[str, Any] = {}
    source = str(path) if path else "command line"
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings, got {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    base_dir = Path(path).resolve().parent if path else Path.cwd()  # file_sd paths are relative to the file
    try:
        return OpsWatchConfig.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc, OpsWatchConfig, document=raw)) from exc
