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
    detection: {window: 120, min_points: 20}
    receivers:
      - {name: oncall, webhook_url: http://127.0.0.1:9000/hook}
    scrape_configs:                # targets monitored besides the reference platform
      - job_name: node
        static_configs: [{targets: ["127.0.0.1:9100"]}]

Errors name the file, the key and the fix (:class:`opswatch.errors.ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

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


class StaticConfig(_Strict):
    targets: list[str]


class ScrapeConfig(_Strict):
    job_name: str
    metrics_path: str = "/metrics"
    scheme: str = "http"
    static_configs: list[StaticConfig] = Field(default_factory=list)


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
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    scrape_configs: list[ScrapeConfig] = Field(default_factory=list)

    @property
    def evaluation_seconds(self) -> float:
        return self.evaluation_interval or self.scrape_interval


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
    try:
        return OpsWatchConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc, OpsWatchConfig)) from exc
