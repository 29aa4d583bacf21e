"""Integrations from a receiver's configuration (:class:`opswatch.config.ReceiverConfig`, read by attribute)."""

from __future__ import annotations

from typing import Any

from alerting.templates import compile_template

from .base import Integration
from .email import EmailNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier


def integrations(receiver: Any) -> list[Integration]:
    """The receiver's webhook, Slack and email integrations, in that order, each with its index.

    :raises alerting.templates.TemplateError: a template does not compile (the configuration loader
        checks them first, so this names a programming error).
    """
    where = f"receivers {receiver.name!r}"
    found: list[Integration] = []
    for i, c in enumerate(receiver.webhook_configs):
        found.append(WebhookNotifier(c.url, i, c.secret(), c.timeout, c.send_resolved))
    for i, c in enumerate(receiver.slack_configs):
        key = f"{where} slack_configs[{i}]"
        found.append(SlackNotifier(
            c.api_url, i, c.channel, c.username,
            compile_template(c.title, f"{key}.title") if c.title is not None else None,
            compile_template(c.text, f"{key}.text") if c.text is not None else None,
            c.timeout, c.send_resolved))
    for i, c in enumerate(receiver.email_configs):
        key = f"{where} email_configs[{i}]"
        found.append(EmailNotifier(
            c.to, c.from_, c.smarthost_address, i, c.auth_username, c.auth_password, c.require_tls,
            c.tls_config.ssl_context() if c.tls_config else None,
            {name: compile_template(t, f"{key}.headers.{name}") for name, t in c.headers.items()},
            compile_template(c.text, f"{key}.text") if c.text is not None else None,
            c.hello, c.timeout, c.send_resolved))
    return found
