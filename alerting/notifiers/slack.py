"""The Slack integration: a Slack incoming webhook (https://api.slack.com/messaging/webhooks), or any
service that accepts its JSON (Mattermost, Rocket.Chat).

Body: ``{"text": TITLE, "attachments": [{"color", "title", "title_link", "text", "fallback"}]}`` plus
``channel``/``username`` when configured, as Alertmanager's ``slack_config`` sends; ``title`` and
``text`` are jinja2 templates (:mod:`alerting.templates`), the colour is ``danger`` while firing and
``good`` once resolved. Slack answers 200 ``ok``; 4xx (bad token, unknown channel) is not retried.
"""

from __future__ import annotations

import json

import jinja2

from alerting.templates import TemplateError, default_template, render

from .base import NotifyError, post, redacted


class SlackNotifier:
    """POSTs a Slack message for each payload to ``api_url`` within ``timeout_seconds``.

    :param title, text: compiled templates (default: the packaged ``title.j2``/``text.j2``).
    """

    integration = "slack"

    def __init__(self, api_url: str, index: int = 0, channel: str | None = None, username: str | None = None,
                 title: jinja2.Template | None = None, text: jinja2.Template | None = None,
                 timeout_seconds: float = 10.0, send_resolved: bool = False):
        self.api_url, self.index, self.channel, self.username = api_url, index, channel, username
        self.title, self.text = title or default_template("title"), text or default_template("text")
        self.timeout, self.send_resolved = timeout_seconds, send_resolved

    def message(self, payload: dict) -> dict:
        """The JSON message. :raises NotifyError: (not recoverable) when a template fails."""
        where = f"slack_configs[{self.index}]"
        try:
            title = render(self.title, payload, f"{where}.title")
            text = render(self.text, payload, f"{where}.text")
        except TemplateError as exc:
            raise NotifyError(str(exc), recoverable=False) from exc
        message = {"text": title, "attachments": [{
            "color": "good" if payload.get("status") == "resolved" else "danger",
            "title": title, "title_link": payload.get("incident", {}).get("url", ""), "text": text, "fallback": title,
        }]}
        if self.channel:
            message["channel"] = self.channel
        if self.username:
            message["username"] = self.username
        return message

    async def send(self, payload: dict) -> None:
        await post("slack", self.api_url, self.timeout, json=self.message(payload))

    def preview(self, payload: dict) -> str:
        return f"POST {redacted(self.api_url)}/...\n\n" + json.dumps(self.message(payload), indent=2)
