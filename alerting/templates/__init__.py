"""Notification templates: jinja2 over the notification's data, with defaults for titles and text.

The context of a template is the Alertmanager webhook payload version "4" (:func:`alerting.notify.webhook_payload`):
``status``, ``receiver``, ``groupKey``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``,
``externalURL``, ``alerts`` (each ``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt``,
``generatorURL``, ``fingerprint``) and OpsWatch's ``incident`` (``id``, ``status``, ``severity``,
``root_causes``, ``impacted_businesses``, ``url``, ``report``). Field names are Alertmanager's, so a
template reads like one of its Go templates (``{{ .CommonLabels.job }}`` is ``{{ commonLabels.job }}``).
Prometheus's ``humanize``, ``humanizePercentage`` and ``humanizeDuration`` are filters, as in rules.

Templates run in jinja2's sandbox (they come from configuration); a missing key renders empty.
The defaults are ``title.j2`` (Slack title, email subject) and ``text.j2`` (Slack text, email body) beside
this file.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from alerting.rules import humanize, humanize_duration, humanize_percentage

TEMPLATE_DIR = Path(__file__).resolve().parent

_env = SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False, trim_blocks=True,
                            lstrip_blocks=True, loader=jinja2.FileSystemLoader(TEMPLATE_DIR))
_env.filters.update(humanize=humanize, humanizePercentage=humanize_percentage, humanizeDuration=humanize_duration)


class TemplateError(ValueError):
    """A template does not compile, or fails while rendering; the message names where it came from."""


def compile_template(source: str, where: str) -> jinja2.Template:
    """Compile ``source``; ``where`` names its origin (a config key or a file) in errors.

    :raises TemplateError: ``WHERE: line N: REASON`` (unknown filters are caught here too).
    """
    try:
        return _env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: line {exc.lineno}: {exc.message}") from exc


def default_template(name: str) -> jinja2.Template:
    """The packaged default ``title`` or ``text`` template."""
    return _env.get_template(f"{name}.j2")


def render(template: jinja2.Template, payload: dict, where: str) -> str:
    """Render ``template`` over ``payload`` (see the module doc), stripped of surrounding blank space.

    :raises TemplateError: naming ``where`` when rendering fails (``{{ 1 / 0 }}``, a call the sandbox refuses).
    """
    try:
        return template.render(payload).strip()
    except Exception as exc:  # a template is user code: any error it raises is a template error
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from exc
