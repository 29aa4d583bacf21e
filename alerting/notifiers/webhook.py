"""The webhook integration: Alertmanager's webhook payload version "4", signed with HMAC-SHA256.

Body: the payload as compact JSON (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
With a secret, two headers authenticate it, Stripe-style (a timestamp inside the signed text stops replays):

* ``X-OpsWatch-Timestamp: <unix seconds>``
* ``X-OpsWatch-Signature: sha256=<hex>``, the lowercase hex HMAC-SHA256 (RFC 2104) under the secret of
  ``<timestamp> + "." + <the exact body bytes>``.

A receiver recomputes it over the raw body (before parsing the JSON), compares in constant time and
refuses timestamps older than a few minutes: :func:`verify_signature` does all three.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable


from .base import post, redacted

SIGNATURE_HEADER = "X-OpsWatch-Signature"
TIMESTAMP_HEADER = "X-OpsWatch-Timestamp"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-OpsWatch-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    return "sha256=" + hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


class SignatureError(ValueError):
    """A webhook request whose signature is missing, wrong or too old."""


def verify_signature(secret: bytes, body: bytes, timestamp: str | None, signature: str | None, now: float,
                     tolerance_seconds: float = 300.0) -> None:
    """Check a received request: ``timestamp``/``signature`` are the two headers' values, ``now`` in unix seconds.

    :raises SignatureError: a header is missing or malformed, the signature does not match the body, or the
        timestamp is more than ``tolerance_seconds`` away from ``now`` (a replay).
    """
    if not timestamp or not signature:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} {timestamp!r} is not unix seconds") from None
    if not hmac.compare_digest(sign(secret, sent_at, body), signature):
        raise SignatureError("signature does not match the body")
    if abs(now - sent_at) > tolerance_seconds:
        raise SignatureError(f"timestamp {sent_at} is {now - sent_at:+.0f}s from now "
                             f"(tolerance {tolerance_seconds:g}s)")


class WebhookNotifier:
    """POSTs the payload as JSON to ``url`` within ``timeout_seconds``; signed when ``hmac_secret`` is given.

    :param clock: unix seconds, for the signature's timestamp (injected in tests).
    """

    integration = "webhook"

    def __init__(self, url: str, index: int = 0, hmac_secret: bytes | None = None, timeout_seconds: float = 10.0,
                 send_resolved: bool = True, clock: Callable[[], float] = time.time):
        self.url, self.index, self.secret = url, index, hmac_secret
        self.timeout, self.send_resolved, self.clock = timeout_seconds, send_resolved, clock

    def request(self, payload: dict) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the POST."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            now = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(now)
            headers[SIGNATURE_HEADER] = sign(self.secret, now, body)
        return body, headers

    async def send(self, payload: dict) -> None:
        body, headers = self.request(payload)
        await post("webhook", self.url, self.timeout, content=body, headers=headers)

    def preview(self, payload: dict) -> str:
        body, headers = self.request(payload)
        lines = [f"POST {redacted(self.url)}/..."] + [f"{k}: {v}" for k, v in headers.items()]
        return "\n".join(lines) + "\n\n" + json.dumps(json.loads(body), indent=2)
