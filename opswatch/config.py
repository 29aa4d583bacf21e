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
    detection:                     # the live detector (detection/); see README "Detection"
      detector: ensemble           # the NAB-scored record-ratio ensemble; or robust_zscore
      window: 120                  # robust_zscore: baseline length, in evaluations
      min_points: 20               # robust_zscore: evaluations before a series is scored
      rebaseline_after: 1h         # a stable level shift this long becomes the new baseline (null: never)
      exclude_above: null          # points scoring this are scored but not learnt (null: ensemble off, robust_zscore 5)
      series:                      # per-series settings by matchers on job/signal; later entries win
        - {matchers: ['signal="latency_p99_seconds"'], sensitivity: 0.5, min_impact: 0.05, min_relative_impact: 0.2}
      calendar:                    # expected events; more through POST /api/v1/detection/calendar
        - {id: db-maintenance, mode: suppress, start: "2026-11-29T02:00:00Z", end: "2026-11-29T03:00:00Z",
           matchers: ['job=~"postgres|user"']}
        - {id: black-friday, kind: surge, mode: expect, direction: up, max_relative_deviation: 3,
           start: "2026-11-27T00:00:00Z", end: "2026-11-28T00:00:00Z", matchers: ['job="gateway"']}
        - {id: celebrity-live, kind: surge, mode: expect, direction: up, start: "2026-11-20T00:00:00Z",
           matchers: ['job=~"gateway|live|gift"'],   # recurring (UTC), no end: every weekend evening
           time_intervals: [{weekdays: ["friday:sunday"], times: [{start_time: "20:00", end_time: "21:35"}]}]}
    receivers:                     # Alertmanager's receivers (alerting/notifiers/); see README "Notifications"
      - name: oncall
        webhook_configs: [{url: http://127.0.0.1:9000/hook, hmac_secret_file: hook.secret, timeout: 10s}]
        slack_configs: [{api_url: https://hooks.slack.com/services/T0/B0/X, channel: "#oncall", title: null, text: null}]
        email_configs: [{to: oncall@example.com, from: opswatch@example.com, smarthost: smtp.example.com:587,
                         auth_username: opswatch, auth_password: secret, require_tls: true}]
    fallback_receiver: null        # a receiver for notifications whose receiver failed after all retries
    route:                         # Alertmanager's routing tree (alerting/routing.py); default: every receiver
      receiver: oncall             #   gets every notification, grouped by incident
      group_by: [incident]
      group_wait: 5s               # Alertmanager: 30s; an incident keeps growing after its page
      group_interval: 5m
      repeat_interval: 4h
      routes: [{receiver: dba, matchers: ['job=~"postgres|giftdb-.*"'], continue: true,
                mute_time_intervals: [nightly-backup]}]   # names from time_intervals below
    time_intervals:                # Alertmanager's named recurring windows (UTC) for routes' mute/active times
      - {name: nightly-backup, time_intervals: [{times: [{start_time: "02:00", end_time: "02:30"}]}]}
    inhibit_rules:                 # Alertmanager's label-equality inhibition, besides the dependency graph's
      - {source_matchers: ['severity="critical"'], target_matchers: ['severity="warning"'], equal: [job]}
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
    intake:                        # alerts from Prometheus / Alertmanager (alerting/external.py)
      node_labels: [service, job, node]   # the first whose value is a topology node maps the alert
      resolve_timeout: 5m          # POST /api/v2/alerts without endsAt (Alertmanager's resolve_timeout)
      webhook_resolve_timeout: 4h10m   # webhook alerts not re-sent: > repeat_interval + 2 x group_interval
      max_alerts: 10000            # external alerts held at most
    topology_discovery:            # call edges from client-side metrics (topology/discovery.py)
      metric: http_client_requests_total
      caller_label: job
      callee_label: downstream
      lookback: 1h

Errors name the file, the key and the fix (:class:`opswatch.errors.ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from collectors.config import ScrapeConfig, TLSConfig

from alerting.inhibition import InhibitRuleConfig
from alerting.matchers import parse_matchers
from alerting.notify import LOG_RECEIVER
from alerting.routing import NamedTimeInterval, Route, RouteConfig, build_route, check_root, default_route_config
from alerting.templates import compile_template
from detection.calendar import ExpectedEvent
from detection.policy import PolicyOverride
from detection.time_intervals import TimeInterval, TimeIntervalSpec

from .config_errors import describe_validation_error
from .durations import parse_duration
from .errors import ConfigError

Seconds = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _matcher_texts(texts: list[str]) -> list[str]:
    parse_matchers(texts)  # a ValueError names the bad matcher; pydantic names the key
    return texts


MatcherTexts = Annotated[list[str], AfterValidator(_matcher_texts)]
"""Alertmanager matchers in text form: ``['job="gift"', 'signal=~"latency_.*"']``."""


class SeriesPolicyConfig(_Strict):
    """``detection.series[]``: settings for the series the matchers select (labels ``job``, ``signal``); later
    entries win for the settings they name (:mod:`detection.policy`)."""

    matchers: MatcherTexts = Field(min_length=1)
    direction: Literal["up", "down", "both"] | None = None
    min_scale: float | None = Field(None, ge=0, description="floor of the spread, in the signal's unit")
    min_relative_scale: float | None = Field(None, ge=0, description="floor of the spread, fraction of the baseline")
    sensitivity: float | None = Field(None, gt=0, description="factor on the score: 2 = twice as sensitive")
    min_impact: float | None = Field(None, ge=0, description="smaller deviations are ignored, signal's unit")
    min_relative_impact: float | None = Field(None, ge=0, description="same, as a fraction of the baseline")

    def to_override(self) -> PolicyOverride:
        return PolicyOverride(tuple(parse_matchers(self.matchers)), self.model_dump(exclude={"matchers"}, exclude_none=True))


class ExpectedEventConfig(_Strict):
    """``detection.calendar[]``: a maintenance window, planned surge or deploy (:mod:`detection.calendar`); with
    ``time_intervals`` (Alertmanager's ``weekdays``/``times``, UTC) it recurs, and ``end`` may be left out."""

    id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    mode: Literal["suppress", "expect"]
    kind: Literal["maintenance", "surge", "deploy", "other"] = "maintenance"
    start: AwareDatetime
    end: AwareDatetime | None = Field(None, description="null: no end (recurring events only)")
    matchers: MatcherTexts = Field(default_factory=list)
    direction: Literal["up", "down", "both"] = "both"
    max_relative_deviation: float | None = Field(None, gt=0, description="expect: the largest planned deviation, "
                                                                          "fraction of the baseline (null: any)")
    description: str = ""
    time_intervals: list[TimeIntervalSpec] = Field(default_factory=list, description="when it recurs (UTC)")

    @model_validator(mode="after")
    def _ordered(self) -> "ExpectedEventConfig":
        if self.end is None:
            if not self.time_intervals:
                raise ValueError(f"calendar event {self.id!r}: end is required unless the event recurs "
                                 f"(time_intervals)")
        elif self.end <= self.start:
            raise ValueError(f"calendar event {self.id!r}: end ({self.end.isoformat()}) must be after start "
                             f"({self.start.isoformat()})")
        return self

    def to_event(self) -> ExpectedEvent:
        bound = float("inf") if self.max_relative_deviation is None else self.max_relative_deviation
        end = None if self.end is None else int(self.end.timestamp() * 1000)
        return ExpectedEvent(self.id, self.mode, int(self.start.timestamp() * 1000), end,
                             tuple(parse_matchers(self.matchers)), self.kind, self.direction, bound,
                             self.description, source="config",
                             time_intervals=tuple(TimeInterval.from_spec(i) for i in self.time_intervals))


class DetectionConfig(_Strict):
    detector: Literal["ensemble", "robust_zscore"] = Field(
        "ensemble", description="the live detector (detection.engine.DETECTORS): the record-ratio ensemble scored "
                                "by `opswatch bench nab`, or the robust z-score (rules on its scale)")
    window: int = Field(120, ge=2, description="robust_zscore: baseline length, in evaluations")
    min_points: int = Field(20, ge=1, description="robust_zscore: evaluations before a series is scored")
    series: list[SeriesPolicyConfig] = Field(default_factory=list)
    calendar: list[ExpectedEventConfig] = Field(default_factory=list)
    rebaseline_after: Seconds | None = Field(3600.0, gt=0, description="a stable level shift this long becomes "
                                                                        "the new baseline; null: never")
    exclude_above: float | None = Field(
        None, gt=0, description="a point whose score (times its sensitivity) reaches this is scored but not learnt, "
                                "so a past fault does not hide the next one (detection.engine.ScoringEngine); null: "
                                "the detector's default, off for the ensemble (it costs NAB score, README "
                                "\"Detection\"), 5 for robust_zscore")

    @model_validator(mode="after")
    def _unique_events(self) -> "DetectionConfig":
        ids = [e.id for e in self.calendar]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"detection.calendar: id {twice[0]!r} is used more than once; event ids must be unique")
        return self


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{v!r} must start with http:// or https://")
    return v


def _template(source: str | None, info: ValidationInfo) -> str | None:
    """A jinja2 template that must compile (:mod:`alerting.templates`)."""
    if source is not None:
        compile_template(source, info.field_name)  # TemplateError is a ValueError: pydantic names the key
    return source


HttpURL = Annotated[str, BeforeValidator(_http_url)]
Template = Annotated[str | None, AfterValidator(_template)]


class WebhookConfig(_Strict):
    """Alertmanager's ``webhook_config``, signed with HMAC-SHA256 when a secret is set
    (:mod:`alerting.notifiers.webhook`)."""

    url: HttpURL
    hmac_secret: str | None = Field(None, min_length=1)
    hmac_secret_file: Path | None = Field(None, description="a file holding the secret (relative to the config file)")
    timeout: Seconds = Field(10.0, gt=0)
    send_resolved: bool = True
    _secret: bytes | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _read_secret(self, info: ValidationInfo) -> "WebhookConfig":
        if self.hmac_secret is not None and self.hmac_secret_file is not None:
            raise ValueError("set 'hmac_secret' or 'hmac_secret_file', not both")
        if self.hmac_secret_file is not None:
            path = self.hmac_secret_file
            if not path.is_absolute():
                path = Path((info.context or {}).get("base_dir", Path.cwd())) / path
            try:
                secret = path.read_bytes().strip()
            except OSError as exc:
                raise ValueError(f"hmac_secret_file: cannot read {str(path)!r}: {exc.strerror}") from exc
            if not secret:
                raise ValueError(f"hmac_secret_file: {str(path)!r} is empty")
            self._secret = secret
        elif self.hmac_secret is not None:
            self._secret = self.hmac_secret.encode()
        return self

    def secret(self) -> bytes | None:
        """The HMAC key: ``hmac_secret``, or the stripped content of ``hmac_secret_file``."""
        return self._secret


class SlackConfig(_Strict):
    """Alertmanager's ``slack_config`` (the part an incoming webhook uses); ``title``/``text`` are jinja2
    templates (default: ``alerting/templates/title.j2`` and ``text.j2``)."""

    api_url: HttpURL
    channel: str | None = None
    username: str | None = None
    title: Template = None
    text: Template = None
    timeout: Seconds = Field(10.0, gt=0)
    send_resolved: bool = False


class EmailConfig(_Strict):
    """Alertmanager's ``email_config``: ``smarthost`` is ``host:port`` (465: TLS at once; else STARTTLS when
    ``require_tls``); ``headers`` (``Subject`` among them) and ``text`` are jinja2 templates."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: str = Field(min_length=3)
    from_: str = Field(alias="from", min_length=3)
    smarthost: str
    hello: str = "localhost"
    auth_username: str | None = None
    auth_password: str | None = None
    require_tls: bool = True
    tls_config: TLSConfig | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    text: Template = None
    timeout: Seconds = Field(10.0, gt=0)
    send_resolved: bool = False

    @field_validator("smarthost")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} must be host:port, e.g. smtp.example.com:587")
        return v

    @field_validator("headers")
    @classmethod
    def _header_templates(cls, v: dict[str, str]) -> dict[str, str]:
        for name, source in v.items():
            compile_template(source, f"headers.{name}")
        return v

    @property
    def smarthost_address(self) -> tuple[str, int]:
        host, _, port = self.smarthost.rpartition(":")
        return host.strip("[]"), int(port)


class ReceiverConfig(_Strict):
    """Alertmanager's ``receiver``: a name and its integrations (none: the notification is only logged)."""

    name: str = Field(min_length=1)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    email_configs: list[EmailConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _migrated(cls, data: Any) -> Any:
        if isinstance(data, dict) and "webhook_url" in data:
            raise ValueError(f"'webhook_url' was replaced by Alertmanager's form: "
                             f"webhook_configs: [{{url: {data['webhook_url']}}}]")
        return data


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


class IntakeConfig(_Strict):
    """Alerts sent by Prometheus (``POST /api/v2/alerts``) or forwarded by an Alertmanager webhook
    (:mod:`alerting.external`)."""

    node_labels: list[str] = Field(["service", "job", "node"], min_length=1,
                                   description="labels naming an alert's topology node, first match wins")
    resolve_timeout: Seconds = Field(300.0, gt=0, description="Alertmanager's: alerts posted without endsAt")
    webhook_resolve_timeout: Seconds = Field(4 * 3600.0 + 600, gt=0, description=(
        "firing webhook alerts have no endsAt and are re-sent every repeat_interval (4h by default): keep "
        "this above the route's repeat_interval + 2 x group_interval"))
    max_alerts: int = Field(10_000, ge=1, description="external alerts held at most; more are refused")


class TopologyDiscoveryConfig(_Strict):
    """Call edges from client-side metrics (:mod:`topology.discovery`)."""

    metric: str = Field("http_client_requests_total", min_length=1, description="a counter of outgoing calls")
    caller_label: str = Field("job", min_length=1)
    callee_label: str = Field("downstream", min_length=1)
    lookback: Seconds = Field(3600.0, gt=0, description="an edge is observed when it had calls in this window")


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
    fallback_receiver: str | None = Field(None, description="where notifications go when their receiver failed")
    route: RouteConfig | None = Field(None, description="the routing tree; default: every receiver, by incident")
    time_intervals: list[NamedTimeInterval] = Field(default_factory=list, description=(
        "named recurring UTC windows for routes' mute_time_intervals / active_time_intervals (Alertmanager's)"))
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    scrape_configs: list[ScrapeConfig] = Field(default_factory=list)
    append_queue_samples: int = Field(500_000, ge=1, description="bound of the queue of scraped samples")
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    topology_discovery: TopologyDiscoveryConfig = Field(default_factory=TopologyDiscoveryConfig)

    @property
    def evaluation_seconds(self) -> float:
        return self.evaluation_interval or self.scrape_interval

    @property
    def scrape_timeout_seconds(self) -> float:
        """The global scrape timeout: ``scrape_timeout``, else ``min(10s, scrape_interval)``."""
        return self.scrape_timeout or min(10.0, self.scrape_interval)

    @model_validator(mode="after")
    def _receivers(self) -> "OpsWatchConfig":
        names = [r.name for r in self.receivers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"receivers: name {twice[0]!r} is used more than once; receiver names must be unique")
        if self.fallback_receiver is not None and self.fallback_receiver not in names:
            raise ValueError(f"fallback_receiver {self.fallback_receiver!r} is not a receiver; use one of "
                             f"{', '.join(map(repr, names)) or '(none configured)'}")
        return self

    @model_validator(mode="after")
    def _route(self) -> "OpsWatchConfig":
        names = [t.name for t in self.time_intervals]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"time_intervals: name {twice[0]!r} is used more than once; names must be unique")
        if self.route is not None:  # children may omit the receiver (inherited); the root may not
            check_root(self.route, {r.name for r in self.receivers} | {LOG_RECEIVER}, set(names))
        return self

    def routing_tree(self) -> Route:
        """The resolved routing tree: ``route``, else every receiver gets every notification
        (:func:`alerting.routing.default_route_config`), with the top-level ``time_intervals`` its routes name."""
        return build_route(self.route or default_route_config([r.name for r in self.receivers]),
                           time_intervals={t.name: t.windows() for t in self.time_intervals})

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
