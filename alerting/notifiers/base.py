"""What every integration shares: the error it raises and its interface."""

from __future__ import annotations

import functools
import ssl
from typing import Protocol
from urllib.parse import urlsplit

import httpx


class NotifyError(Exception):
    """A delivery failed; ``recoverable`` says whether a retry may succeed (5xx, 429, network errors)."""

    def __init__(self, message: str, recoverable: bool):
        super().__init__(message)
        self.recoverable = recoverable


class Integration(Protocol):
    integration: str  # "webhook", "slack" or "email"
    index: int
    send_resolved: bool

    async def send(self, payload: dict) -> None:
        """Deliver one Alertmanager webhook payload (version "4") or raise :class:`NotifyError`."""

    def preview(self, payload: dict) -> str:
        """What :meth:`send` would deliver, as text."""


def http_recoverable(status: int) -> bool:
    """Whether an HTTP error answer may succeed on retry: 5xx and 429 (a 4xx would fail again)."""
    return status >= 500 or status == 429


def redacted(url: str) -> str:
    """``scheme://host:port`` only: webhook paths and queries often hold secrets (Slack's do)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The system CAs' context, made once: loading the CA bundle costs ~10-100 ms, more than a send."""
    return ssl.create_default_context()


async def post(integration: str, url: str, timeout_seconds: float, **request) -> httpx.Response:
    """POST to ``url`` (``request``: httpx's ``json=``/``content=``/``headers=``) with the system CAs.

    :raises NotifyError: naming ``integration`` and the redacted URL: recoverable for network errors, 5xx
        and 429, not for other 4xx answers.
    """
    try:
        async with httpx.AsyncClient(timeout=timeout_seconds, verify=default_ssl_context()) as client:
            response = await client.post(url, **request)
    except httpx.HTTPError as exc:
        raise NotifyError(f"{integration} {redacted(url)}: {type(exc).__name__}: {exc}", recoverable=True) from exc
    if not response.is_success:
        raise NotifyError(f"{integration} {redacted(url)}: HTTP {response.status_code}: {response.text[:200]}",
                          recoverable=http_recoverable(response.status_code))
    return response
