"""The email integration against a real local SMTP server (aiosmtpd on a free loopback port): plain
delivery, login, STARTTLS with a certificate checked against our own CA, SMTP error replies, and the
dispatcher retrying a temporary failure."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry

from alerting.notification_log import NotificationLog
from alerting.notifiers.base import NotifyError
from alerting.notifiers.build import integrations
from alerting.notifiers.email import EmailNotifier
from alerting.notify import NotificationDispatcher
from opswatch.config import load_config
from tests.conftest import free_port
from tests.unit.test_notify import payload


class Mailbox:
    """aiosmtpd handler: keeps each message, or answers ``reply`` (e.g. ``451 ...``) to DATA."""

    def __init__(self):
        self.messages = []
        self.replies: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        if self.replies:
            return self.replies.pop(0)
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, message_from_bytes(envelope.content,
                                                                                        policy=policy.default)))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"opswatch", b"pa55")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 on failure


@pytest.fixture
def smtp():
    """Start an SMTP server: ``smtp(**aiosmtpd SMTP options) -> (mailbox, port)``; all stopped at the end."""
    started: list[Controller] = []

    def start(**options):
        mailbox, port = Mailbox(), free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return mailbox, port

    yield start
    for controller in started:
        controller.stop()


def email(port: int, **kwargs) -> EmailNotifier:
    kwargs.setdefault("require_tls", False)
    return EmailNotifier("oncall@example.com, sre@example.com", "opswatch@example.com", ("127.0.0.1", port),
                         timeout_seconds=5, **kwargs)


def test_plain_delivery_with_login_default_subject_and_body(smtp):
    mailbox, port = smtp(authenticator=authenticator, auth_require_tls=False)
    firing = payload()
    asyncio.run(email(port, auth_username="opswatch", auth_password="pa55").send(firing))
    [(sender, recipients, message)] = mailbox.messages
    assert sender == "opswatch@example.com" and recipients == ["oncall@example.com", "sre@example.com"]
    assert message["Subject"] == f"[FIRING:1] {firing['incident']['id']} warning: gift impacting send_gift"
    body = message.get_content()
    assert "Likely root cause: gift" in body and "[firing] ErrorRatioAnomaly on gift: gift: error ratio" in body
    assert message["Message-ID"] and message["Date"]


def test_a_refused_login_is_not_retried(smtp):
    _, port = smtp(authenticator=authenticator, auth_require_tls=False)
    with pytest.raises(NotifyError, match="SMTP 535") as info:
        asyncio.run(email(port, auth_username="opswatch", auth_password="wrong").send(payload()))
    assert not info.value.recoverable


def test_require_tls_against_a_server_without_starttls_fails_clearly(smtp):
    mailbox, port = smtp()
    with pytest.raises(NotifyError, match="does not offer STARTTLS and require_tls is true") as info:
        asyncio.run(email(port, require_tls=True).send(payload()))
    assert not info.value.recoverable and mailbox.messages == []


def make_ca_and_server_cert(tmp_path):
    """A CA and a certificate it signed for 127.0.0.1, as PEM files; returns (ca_file, cert_file, key_file)."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, issuer, key, signing_key, ca: bool, san=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpsWatch test CA")])
    ca = cert(ca_name, ca_name, ca_key, ca_key, True)
    server = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, server_key, ca_key,
                  False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


def test_starttls_with_the_servers_certificate_checked_against_tls_config_ca_file(smtp, tmp_path):
    ca_file, cert_file, key_file = make_ca_and_server_cert(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    mailbox, port = smtp(tls_context=server_tls, require_starttls=True, authenticator=authenticator)
    config = load_config(None, receivers=[{"name": "mail", "email_configs": [{
        "to": "oncall@example.com", "from": "opswatch@example.com", "smarthost": f"127.0.0.1:{port}",
        "auth_username": "opswatch", "auth_password": "pa55", "tls_config": {"ca_file": str(ca_file)},
        "headers": {"Subject": "{{ incident.id }} {{ status }}", "X-OpsWatch-Incident": "{{ incident.id }}"}}]}])
    [notifier] = integrations(config.receivers[0])
    firing = payload("mail")
    asyncio.run(notifier.send(firing))  # login only works over TLS here (aiosmtpd's auth_require_tls)
    [(_, _, message)] = mailbox.messages
    assert message["Subject"] == f"{firing['incident']['id']} firing"
    assert message["X-OpsWatch-Incident"] == firing["incident"]["id"]

    untrusted = email(port, require_tls=True)  # the system CAs do not know our test CA
    with pytest.raises(NotifyError, match="TLS:.*certificate verify failed") as info:
        asyncio.run(untrusted.send(firing))
    assert not info.value.recoverable and len(mailbox.messages) == 1


def test_smtp_replies_4xx_retried_5xx_not_and_a_closed_port(smtp):
    mailbox, port = smtp()
    mailbox.replies = ["451 4.3.0 try again later", "550 5.7.1 relaying denied"]
    with pytest.raises(NotifyError, match="SMTP 451") as info:
        asyncio.run(email(port).send(payload()))
    assert info.value.recoverable
    with pytest.raises(NotifyError, match="SMTP 550") as info:
        asyncio.run(email(port).send(payload()))
    assert not info.value.recoverable
    with pytest.raises(NotifyError, match="ConnectionRefusedError") as info:
        asyncio.run(email(free_port()).send(payload()))
    assert info.value.recoverable


def test_dispatcher_retries_a_temporary_smtp_failure(smtp, tmp_path):
    mailbox, port = smtp()
    mailbox.replies = ["421 4.3.2 shutting down"]
    registry = CollectorRegistry()
    dispatcher = NotificationDispatcher({"mail": [email(port)]}, registry, NotificationLog(tmp_path / "n.db"),
                                        backoff_seconds=0.01)

    async def main():
        worker = asyncio.create_task(dispatcher.run())
        dispatcher.submit(payload("mail"))
        await dispatcher.drain(10)
        worker.cancel()

    asyncio.run(main())
    assert len(mailbox.messages) == 1
    labels = {"receiver": "mail", "integration": "email"}
    assert registry.get_sample_value("opswatch_notification_requests_total", {**labels, "outcome": "failure"}) == 1
    assert registry.get_sample_value("opswatch_notifications_total", {**labels, "outcome": "success"}) == 1
