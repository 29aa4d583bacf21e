"""The email integration: one plain-text message per payload over SMTP (RFC 5321), with the standard
library's ``smtplib`` in a worker thread, following Alertmanager's ``email_config``.

Port 465 speaks TLS from the first byte (RFC 8314); any other port starts in clear text and upgrades
with STARTTLS (RFC 3207) when ``require_tls`` is set (the default), failing if the server does not offer
it. ``auth_username``/``auth_password`` log in with the mechanisms the server offers (PLAIN, LOGIN,
CRAM-MD5). The ``Subject`` (default: ``title.j2``), any other ``headers`` and the body (``text``,
default: ``text.j2``) are jinja2 templates (:mod:`alerting.templates`).

A 4xx SMTP reply and network errors are retried; a 5xx reply, a refused login or a TLS failure are not.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import jinja2

from alerting.templates import TemplateError, default_template, render

from .base import NotifyError, default_ssl_context

IMPLICIT_TLS_PORT = 465


class EmailNotifier:
    """Sends each payload as an email from ``sender`` to ``to`` (comma-separated addresses) through
    ``smarthost`` (``(host, port)``) within ``timeout_seconds`` per SMTP step.

    :param tls_context: how to check the server's certificate (default: the system's CAs).
    :param headers: extra header templates by name; ``Subject`` overrides the default subject.
    :param hello: the name given in EHLO.
    """

    integration = "email"

    def __init__(self, to: str, sender: str, smarthost: tuple[str, int], index: int = 0,
                 auth_username: str | None = None, auth_password: str | None = None, require_tls: bool = True,
                 tls_context: ssl.SSLContext | None = None, headers: dict[str, jinja2.Template] | None = None,
                 text: jinja2.Template | None = None, hello: str = "localhost", timeout_seconds: float = 10.0,
                 send_resolved: bool = False):
        self.to, self.sender, self.smarthost, self.index = to, sender, smarthost, index
        self.auth_username, self.auth_password, self.require_tls = auth_username, auth_password, require_tls
        self.tls_context = tls_context
        self.headers = {"Subject": default_template("title"), **(headers or {})}
        self.text = text or default_template("text")
        self.hello, self.timeout, self.send_resolved = hello, timeout_seconds, send_resolved

    def message(self, payload: dict) -> EmailMessage:
        """The message. :raises NotifyError: (not recoverable) when a template fails."""
        where = f"email_configs[{self.index}]"
        message = EmailMessage()
        message["From"], message["To"] = self.sender, self.to
        message["Date"], message["Message-ID"] = formatdate(localtime=False), make_msgid(domain=self.hello)
        try:
            for name, template in self.headers.items():
                value = render(template, payload, f"{where}.headers.{name}")
                try:
                    message[name] = value
                except ValueError as exc:  # e.g. a line break in a header
                    raise TemplateError(f"{where}.headers.{name}: {exc}") from exc
            message.set_content(render(self.text, payload, f"{where}.text") + "\n")
        except TemplateError as exc:
            raise NotifyError(str(exc), recoverable=False) from exc
        return message

    async def send(self, payload: dict) -> None:
        await asyncio.to_thread(self._send, self.message(payload))

    def _send(self, message: EmailMessage) -> None:
        host, port = self.smarthost
        where = f"email {host}:{port}"
        context = self.tls_context or default_ssl_context()
        try:
            if port == IMPLICIT_TLS_PORT:
                client = smtplib.SMTP_SSL(host, port, local_hostname=self.hello, timeout=self.timeout, context=context)
            else:
                client = smtplib.SMTP(host, port, local_hostname=self.hello, timeout=self.timeout)
            with client:
                client.ehlo()
                if self.require_tls and port != IMPLICIT_TLS_PORT:
                    if not client.has_extn("starttls"):
                        raise NotifyError(f"{where}: the server does not offer STARTTLS and require_tls is true; "
                                          f"set require_tls: false to send without TLS", recoverable=False)
                    client.starttls(context=context)
                    client.ehlo()
                if self.auth_username:
                    client.login(self.auth_username, self.auth_password or "")
                client.send_message(message)
        except NotifyError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise NotifyError(f"{where}: recipients refused: {exc.recipients}",
                              recoverable=all(400 <= c < 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:  # includes a refused login (535)
            raise NotifyError(f"{where}: SMTP {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}",
                              recoverable=400 <= exc.smtp_code < 500) from exc
        except ssl.SSLError as exc:  # a certificate or protocol problem does not fix itself
            raise NotifyError(f"{where}: TLS: {exc}", recoverable=False) from exc
        except (smtplib.SMTPException, OSError) as exc:  # connection refused, timeout, disconnect
            raise NotifyError(f"{where}: {type(exc).__name__}: {exc}", recoverable=True) from exc

    def preview(self, payload: dict) -> str:
        host, port = self.smarthost
        message = self.message(payload)
        headers = "".join(f"{name}: {value}\n" for name, value in message.items())
        return f"SMTP {host}:{port}\n{headers}\n{message.get_content()}"  # the body decoded, for reading
