"""Synthetic HTTP probes, as blackbox_exporter's ``http`` prober: status, latency, TLS certificate expiry.

A probe is one request (following redirects unless ``no_follow_redirects``) on a fresh connection, so
its timings include connecting and the TLS handshake. Its result is a list of samples named as
blackbox_exporter names them (https://github.com/prometheus/blackbox_exporter, ``prober/http.go``):

=====================================  ============================================================
``probe_success``                      1 when the probe met every condition of the module, else 0
``probe_duration_seconds``             the whole probe, seconds
``probe_http_status_code``             status of the last response (0 when there was none)
``probe_http_duration_seconds{phase}`` ``connect`` (name resolution included), ``tls``,
                                       ``processing`` (request sent to response headers), ``transfer``
``probe_http_redirects``               redirects followed
``probe_http_ssl``                     1 when the last response came over TLS
``probe_http_version``                 HTTP version of the last response (1.1, 2)
``probe_http_content_length``          its ``Content-Length`` (-1 when not given)
``probe_http_uncompressed_body_length`` its body length, bytes
``probe_ssl_earliest_cert_expiry``     expiry of the server's certificate, Unix seconds (TLS only)
``probe_failed_due_to_regex``          1 when a body regex failed the probe (when regexes are set)
=====================================  ============================================================

Python 3.11's ``ssl`` shows the peer's own certificate, not its chain, so
``probe_ssl_earliest_cert_expiry`` is the leaf certificate's ``notAfter`` (usually the earliest);
it is read with ``cryptography`` so it is known with ``insecure_skip_verify`` too.
"""

from __future__ import annotations

import re
import time
from typing import Callable

import httpx
from cryptography import x509

from .config import HTTPProbeConfig, ProbeModule
from .exposition import PageSample

_PHASES = {  # httpcore trace event -> phase it starts or ends
    "connection.connect_tcp": "connect",
    "connection.start_tls": "tls",
    "http11.receive_response_body": "transfer",
}


class _Timings:
    """Accumulates blackbox's ``phase`` durations from httpcore's trace events (all requests summed)."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.seconds = {"connect": 0.0, "tls": 0.0, "processing": 0.0, "transfer": 0.0}
        self._started: dict[str, float] = {}
        self.ssl_object = None

    async def __call__(self, event: str, info: dict) -> None:
        name, _, stage = event.rpartition(".")
        now = self.clock()
        phase = _PHASES.get(name)
        if name == "http11.send_request_body" and stage == "complete":
            self._started["processing"] = now
        elif name == "http11.receive_response_headers" and stage == "complete" and "processing" in self._started:
            self.seconds["processing"] += now - self._started.pop("processing")
        elif phase and stage == "started":
            self._started[phase] = now
        elif phase and stage == "complete" and phase in self._started:
            self.seconds[phase] += now - self._started.pop(phase)
            if phase == "tls" and info.get("return_value") is not None:
                self.ssl_object = info["return_value"].get_extra_info("ssl_object")


def _cert_expiry(ssl_object) -> float | None:
    """``notAfter`` of the peer's certificate, Unix seconds; None when there is none."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def _status_ok(code: int, config: HTTPProbeConfig) -> bool:
    return code in config.valid_status_codes if config.valid_status_codes else 200 <= code < 300


async def probe_http(url: str, module: ProbeModule, timeout_seconds: float,
                     clock: Callable[[], float] = time.perf_counter) -> tuple[list[PageSample], str]:
    """Probe ``url`` once; never raises for a failed probe (it is ``probe_success 0``).

    :param timeout_seconds: deadline of the whole probe (the job's ``scrape_timeout``).
    :param clock: seconds, for durations (injected in tests).
    :returns: the ``probe_*`` samples (without labels or timestamps), and why the probe failed ("" if
        it succeeded).
    """
    config = module.http
    timings = _Timings(clock)
    started = clock()
    status, redirects, version, content_length, body_length = 0, 0, 0.0, -1.0, 0
    over_tls, regex_failed, expiry, success, error = False, False, None, False, ""
    try:
        async with httpx.AsyncClient(verify=config.tls_config.ssl_context(), timeout=timeout_seconds,
                                     follow_redirects=not config.no_follow_redirects,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as client:
            request = client.build_request(config.method, url, headers=config.headers,
                                           content=config.body.encode() or None,
                                           extensions={"trace": timings})
            response = await client.send(request)
            body = response.content
        status, redirects = response.status_code, len(response.history)
        version = float(response.http_version.split("/")[-1]) if "/" in response.http_version else 0.0
        content_length = float(response.headers.get("content-length", -1))
        body_length = len(body)
        over_tls = response.url.scheme == "https"
        expiry = _cert_expiry(timings.ssl_object) if over_tls else None
        text = body.decode(response.encoding or "utf-8", errors="replace")
        regex_failed = any(re.search(p, text) for p in config.fail_if_body_matches_regexp) or \
            any(not re.search(p, text) for p in config.fail_if_body_not_matches_regexp)
        checks = [
            (_status_ok(status, config), f"HTTP status {status} is not valid"),
            (not regex_failed, "the body failed a fail_if_body_* regex"),
            (not (config.fail_if_ssl and over_tls), "fail_if_ssl: the response came over TLS"),
            (not (config.fail_if_not_ssl and not over_tls), "fail_if_not_ssl: the response did not come over TLS"),
            (not config.valid_http_versions or response.http_version in config.valid_http_versions,
             f"{response.http_version} is not in valid_http_versions"),
        ]
        error = "; ".join(why for ok, why in checks if not ok)
        success = not error
    except (httpx.HTTPError, OSError, ValueError) as exc:  # no answer: refused, timeout, TLS failure...
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    samples = [
        PageSample("probe_success", {}, float(success), None),
        PageSample("probe_duration_seconds", {}, clock() - started, None),
        PageSample("probe_http_status_code", {}, float(status), None),
        *(PageSample("probe_http_duration_seconds", {"phase": p}, s, None) for p, s in timings.seconds.items()),
        PageSample("probe_http_redirects", {}, float(redirects), None),
        PageSample("probe_http_ssl", {}, float(over_tls), None),
        PageSample("probe_http_version", {}, version, None),
        PageSample("probe_http_content_length", {}, content_length, None),
        PageSample("probe_http_uncompressed_body_length", {}, float(body_length), None),
    ]
    if expiry is not None:
        samples.append(PageSample("probe_ssl_earliest_cert_expiry", {}, expiry, None))
    if config.fail_if_body_matches_regexp or config.fail_if_body_not_matches_regexp:
        samples.append(PageSample("probe_failed_due_to_regex", {}, float(regex_failed), None))
    return samples, error
