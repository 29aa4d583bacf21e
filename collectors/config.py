"""Scrape configuration: Prometheus's ``scrape_config`` (the keys OpsWatch supports, with Prometheus's
names and defaults) plus ``probe``, a blackbox_exporter module for synthetic HTTP probes.

Reference: https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config and
https://github.com/prometheus/blackbox_exporter/blob/master/CONFIGURATION.md (``module``/``http_probe``).
Validation errors are ``ValueError``s naming the key; :func:`opswatch.config.load_config` adds the file
and the job.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from opswatch.durations import parse_byte_size, parse_duration

from .exposition import SCRAPE_PROTOCOLS
from .relabel import RelabelConfig

Seconds = Annotated[float, BeforeValidator(parse_duration)]
Bytes = Annotated[int, BeforeValidator(parse_byte_size)]
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SD_FILE = re.compile(r".*\.(json|ya?ml)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_label_names(labels: dict[str, str]) -> dict[str, str]:
    bad = [name for name in labels if not _LABEL_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a valid label name (letters, digits and _, not starting with a digit)")
    return labels


class TLSConfig(_Strict):
    """``tls_config``: how to check the server's certificate (and present ours)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _cert_and_key(self) -> "TLSConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("'cert_file' and 'key_file' go together: set both or neither")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` for these settings (system CAs unless ``ca_file``).

        :raises OSError | ssl.SSLError: when a file cannot be read or is not PEM.
        """
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


class HTTPProbeConfig(_Strict):
    """blackbox_exporter's ``http_probe`` settings (the subset OpsWatch runs)."""

    valid_status_codes: tuple[int, ...] = ()  # empty: any 2xx
    valid_http_versions: tuple[str, ...] = ()  # e.g. ["HTTP/1.1"]; empty: any
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""
    no_follow_redirects: bool = False
    fail_if_ssl: bool = False
    fail_if_not_ssl: bool = False
    fail_if_body_matches_regexp: tuple[str, ...] = ()
    fail_if_body_not_matches_regexp: tuple[str, ...] = ()
    tls_config: TLSConfig = Field(default_factory=TLSConfig)

    @field_validator("fail_if_body_matches_regexp", "fail_if_body_not_matches_regexp")
    @classmethod
    def _compiles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regex {pattern!r} does not compile: {exc}") from exc
        return v


class ProbeModule(_Strict):
    """A blackbox_exporter ``module``: the job's targets are probed instead of scraped, and each probe's
    result is written as ``probe_*`` series. The probe's deadline is the job's ``scrape_timeout``."""

    prober: Literal["http"] = "http"
    http: HTTPProbeConfig = Field(default_factory=HTTPProbeConfig)


class StaticConfig(_Strict):
    """``static_configs`` entry: ``targets`` (``host:port``, or URLs for probe jobs) and their ``labels``."""

    targets: tuple[str, ...]
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        return check_label_names(v)


class FileSDConfig(_Strict):
    """``file_sd_configs`` entry: JSON or YAML files of target groups (``[{targets: [...], labels: {...}}]``);
    the last path component may be a glob. Relative paths are relative to the configuration file.
    Files are read again when they change and every ``refresh_interval``."""

    files: tuple[str, ...] = Field(min_length=1)
    refresh_interval: Seconds = Field(300.0, gt=0)

    @field_validator("files")
    @classmethod
    def _json_or_yaml(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        base = (info.context or {}).get("base_dir")
        checked = []
        for pattern in v:
            if not _SD_FILE.fullmatch(Path(pattern).name):
                raise ValueError(f"{pattern!r}: file_sd files must end in .json, .yml or .yaml")
            path = Path(pattern)
            checked.append(str(path if path.is_absolute() or base is None else Path(base) / path))
        return tuple(checked)


class ScrapeConfig(_Strict):
    """One ``scrape_configs`` entry (a job). ``scrape_interval``/``scrape_timeout`` default to the global
    ones (see :meth:`with_defaults`)."""

    job_name: str = Field(min_length=1)
    scrape_interval: Seconds | None = Field(None, gt=0)
    scrape_timeout: Seconds | None = Field(None, gt=0)
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    honor_labels: bool = False
    honor_timestamps: bool = True
    scrape_protocols: tuple[str, ...] | None = None
    tls_config: TLSConfig = Field(default_factory=TLSConfig)
    static_configs: tuple[StaticConfig, ...] = ()
    file_sd_configs: tuple[FileSDConfig, ...] = ()
    relabel_configs: tuple[RelabelConfig, ...] = ()
    metric_relabel_configs: tuple[RelabelConfig, ...] = ()
    sample_limit: int = Field(0, ge=0)  # samples after metric relabeling; more fails the scrape; 0: no limit
    body_size_limit: Bytes = 0  # uncompressed bytes of the page; more fails the scrape; 0: no limit
    probe: ProbeModule | None = None

    @field_validator("scrape_protocols")
    @classmethod
    def _known_protocols(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in v or ():
            if name not in SCRAPE_PROTOCOLS:
                raise ValueError(f"unknown scrape protocol {name!r}; use {', '.join(SCRAPE_PROTOCOLS)}")
        if v is not None and not v:
            raise ValueError("scrape_protocols must list at least one protocol")
        return v

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> "ScrapeConfig":
        if self.scrape_interval and self.scrape_timeout and self.scrape_timeout > self.scrape_interval:
            raise ValueError(f"scrape_timeout ({self.scrape_timeout:g}s) is greater than scrape_interval "
                             f"({self.scrape_interval:g}s); make it at most the interval")
        return self

    def with_defaults(self, interval_seconds: float, timeout_seconds: float) -> "ScrapeConfig":
        """A copy with ``scrape_interval``/``scrape_timeout`` filled from the global ones, as Prometheus
        does: the timeout defaults to the global timeout, capped at the job's interval.

        :raises ValueError: when the job's own timeout exceeds the interval it ends up with.
        """
        interval = self.scrape_interval or interval_seconds
        timeout = self.scrape_timeout or min(timeout_seconds, interval)
        if timeout > interval:
            raise ValueError(f"job {self.job_name!r}: scrape_timeout ({timeout:g}s) is greater than scrape_interval "
                             f"({interval:g}s); make it at most the interval")
        return self.model_copy(update={"scrape_interval": interval, "scrape_timeout": timeout})
