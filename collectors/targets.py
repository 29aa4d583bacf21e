"""Scrape targets: what one discovered address becomes after target relabeling.

Follows Prometheus's ``scrape/target.go`` (``PopulateLabels``, ``Target.URL``) as of 2.42: the discovered
labels get ``job``, ``__scheme__``, ``__metrics_path__``, ``__scrape_interval__``, ``__scrape_timeout__``
and ``__param_<name>`` unless already set; ``relabel_configs`` run; a target without ``__address__`` is
an error; the default port of the scheme is appended to an address without one; ``__meta_*`` labels
go; ``instance`` defaults to ``__address__``; the labels starting with ``__`` are not attached to
samples. The scrape URL is ``__scheme__://__address____metrics_path__?<params>``, ``__param_*`` labels
overriding the job's ``params``.

Probe jobs (``probe`` set) differ only in that the address is what is probed (a URL, or a host that gets
``http://``), so it is neither checked as ``host:port`` nor given a port; ``__param_target`` wins over
it, as in blackbox_exporter's recipe.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import quote, urlencode, urlsplit

from opswatch.durations import format_duration, parse_duration

from .config import ProbeModule, ScrapeConfig, TLSConfig
from .exposition import DEFAULT_SCRAPE_PROTOCOLS, accept_header
from .relabel import RelabelConfig, process
from .target_labels import (
    ADDRESS_LABEL,
    META_PREFIX,
    METRICS_PATH_LABEL,
    PARAM_PREFIX,
    SCHEME_LABEL,
    SCRAPE_INTERVAL_LABEL,
    SCRAPE_TIMEOUT_LABEL,
    public_labels,
)

DEFAULT_ACCEPT = accept_header(DEFAULT_SCRAPE_PROTOCOLS)


class TargetError(ValueError):
    """A discovered target cannot be scraped (no address, a bad interval...); the message says why."""


@dataclass(frozen=True)
class ScrapeOptions:
    """How a job's targets are scraped and their samples labelled (shared by the job's targets)."""

    honor_labels: bool = False
    honor_timestamps: bool = True
    metric_relabel_configs: tuple[RelabelConfig, ...] = ()
    accept: str = DEFAULT_ACCEPT
    tls: TLSConfig | None = None
    probe: ProbeModule | None = None
    sample_limit: int = 0  # 0: no limit
    body_size_limit: int = 0  # bytes; 0: no limit


DEFAULT_OPTIONS = ScrapeOptions()


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape (or probe).

    ``job``; ``url``, the full URL fetched; ``labels``, the target labels attached to every sample, as
    sorted ``(name, value)`` pairs (default: ``job`` and ``instance`` = ``host:port`` of the URL);
    ``interval_seconds``/``timeout_seconds`` (``None``: the scrape manager's). Two targets are the same
    target when job, URL and labels are equal.
    """

    job: str
    url: str
    labels: tuple[tuple[str, str], ...] = ()
    interval_seconds: float | None = None
    timeout_seconds: float | None = None
    options: ScrapeOptions = field(default=DEFAULT_OPTIONS, compare=False)
    discovered_labels: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.labels:
            object.__setattr__(self, "labels", tuple(sorted({"job": self.job, "instance": _host_port(self.url)}.items())))

    @functools.cached_property
    def label_set(self) -> dict[str, str]:
        """``labels`` as a dict (do not modify it)."""
        return dict(self.labels)

    @property
    def instance(self) -> str:
        """The ``instance`` label."""
        return self.label_set.get("instance", "")


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _split_host_port(address: str) -> bool:
    """Whether ``address`` has a port, by Go's ``net.SplitHostPort`` rules (``[v6]:port``, one colon)."""
    if address.startswith("["):
        end = address.find("]")
        return end > 0 and address[end + 1:end + 2] == ":" and ":" not in address[end + 2:]
    host, sep, _ = address.rpartition(":")
    return bool(sep) and ":" not in host


def _with_default_port(address: str, scheme: str) -> str:
    if _split_host_port(address) or not _split_host_port(address + ":1234"):
        return address  # has a port, or adding one would not make it valid: leave it to fail later
    if scheme in ("http", ""):
        return address + ":80"
    if scheme == "https":
        return address + ":443"
    raise TargetError(f"invalid scheme: {scheme!r}")


def _duration(labels: Mapping[str, str], name: str) -> float:
    text = labels.get(name, "")
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise TargetError(f"error parsing {name} label {text!r}: {exc}") from exc
    if seconds == 0:
        raise TargetError(f"{name} cannot be 0")
    return seconds


def build_target(discovered: Mapping[str, str], job: ScrapeConfig) -> Target | None:
    """The target a discovered label set (``__address__``, ``__meta_*``, static labels) becomes.

    :param job: the scrape config, with interval and timeout filled (:meth:`ScrapeConfig.with_defaults`).
    :returns: the target, or ``None`` when ``relabel_configs`` dropped it.
    :raises TargetError: when the relabeled labels do not make a target.
    """
    labels = dict(discovered)
    for name, value in (("job", job.job_name), (SCRAPE_INTERVAL_LABEL, format_duration(job.scrape_interval)),
                        (SCRAPE_TIMEOUT_LABEL, format_duration(job.scrape_timeout)),
                        (METRICS_PATH_LABEL, job.metrics_path), (SCHEME_LABEL, job.scheme)):
        if not labels.get(name):
            labels[name] = value
    for name, values in job.params.items():
        if values:
            labels[PARAM_PREFIX + name] = values[0]
    relabeled = process(labels, job.relabel_configs)
    if relabeled is None:
        return None
    address = relabeled.get(ADDRESS_LABEL, "")
    if not address:
        raise TargetError("no address")
    if job.probe is None:
        address = _with_default_port(address, relabeled.get(SCHEME_LABEL, ""))
        if "/" in address:
            raise TargetError(f"{address!r} is not a valid hostname")
        relabeled[ADDRESS_LABEL] = address
    interval = _duration(relabeled, SCRAPE_INTERVAL_LABEL)
    timeout = _duration(relabeled, SCRAPE_TIMEOUT_LABEL)
    if timeout > interval:
        raise TargetError(f"scrape timeout cannot be greater than scrape interval "
                          f"({relabeled[SCRAPE_TIMEOUT_LABEL]!r} > {relabeled[SCRAPE_INTERVAL_LABEL]!r})")
    for name in [n for n in relabeled if n.startswith(META_PREFIX)]:
        del relabeled[name]
    if not relabeled.get("instance"):
        relabeled["instance"] = address
    public = public_labels(relabeled)
    return Target(
        job=job.job_name,
        url=_probe_url(relabeled) if job.probe else _scrape_url(relabeled, job.params),
        labels=tuple(sorted(public.items())),
        interval_seconds=interval,
        timeout_seconds=timeout,
        options=ScrapeOptions(
            honor_labels=job.honor_labels, honor_timestamps=job.honor_timestamps,
            metric_relabel_configs=job.metric_relabel_configs,
            accept=accept_header(job.scrape_protocols or DEFAULT_SCRAPE_PROTOCOLS),
            tls=job.tls_config, probe=job.probe, sample_limit=job.sample_limit,
            body_size_limit=job.body_size_limit),
        discovered_labels=tuple(sorted(discovered.items())),
    )


def _scrape_url(labels: Mapping[str, str], params: Mapping[str, tuple[str, ...]]) -> str:
    query = {name: list(values) for name, values in params.items()}
    for name, value in labels.items():
        if name.startswith(PARAM_PREFIX):
            key = name[len(PARAM_PREFIX):]
            if query.get(key):
                query[key][0] = value
            else:
                query[key] = [value]
    path = quote(labels.get(METRICS_PATH_LABEL, ""), safe="/:@!$&'()*+,;=-._~")
    encoded = urlencode(sorted(query.items()), doseq=True)
    return f"{labels.get(SCHEME_LABEL, '')}://{labels[ADDRESS_LABEL]}{path}" + (f"?{encoded}" if encoded else "")


def _probe_url(labels: Mapping[str, str]) -> str:
    target = labels.get(PARAM_PREFIX + "target") or labels[ADDRESS_LABEL]
    return target if "://" in target else "http://" + target
