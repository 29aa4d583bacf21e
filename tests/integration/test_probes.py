"""Synthetic HTTP probes (collectors/probe.py) against real HTTP and HTTPS servers on loopback, and probe
jobs end to end through `opswatch run`: blackbox_exporter's series, stored like any other target's."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collectors.config import ProbeModule
from collectors.probe import probe_http
from storage.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.integration.test_run_real_exporters import wait_http

pytestmark = pytest.mark.integration

EXPIRY = dt.datetime(2031, 5, 17, 12, 30, 0, tzinfo=dt.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 that expires at EXPIRY: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("OpsWatch test CA")).issuer_name(_name("OpsWatch test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(days=1))
              .not_valid_after(EXPIRY)
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Site:
    """A real HTTP(S)/1.1 server on loopback: /ok (200), /fail (500), /redirect (302 to /ok), /slow (2 s)."""

    def __init__(self, tls: tuple[Path, Path] | None = None):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/slow":
                    time.sleep(2)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/ok")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"all good\n" if self.path != "/fail" else b"broken\n"
                self.send_response(500 if self.path == "/fail" else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, tls))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def certs(tmp_path):
    return make_certificates(tmp_path)


@pytest.fixture
def site():
    s = Site()
    yield s
    s.close()


@pytest.fixture
def tls_site(certs):
    s = Site(tls=(certs[1], certs[2]))
    yield s
    s.close()


def probe(url: str, timeout: float = 2.0, **http) -> tuple[dict[str, float], str]:
    samples, error = asyncio.run(probe_http(url, ProbeModule.model_validate({"http": http}), timeout))
    values = {s.name if s.name != "probe_http_duration_seconds" else f"phase_{s.labels['phase']}": s.value
              for s in samples}
    return values, error


def test_successful_http_probe(site):
    values, error = probe(site.base + "/ok")
    assert error == ""
    assert values["probe_success"] == 1 and values["probe_http_status_code"] == 200
    assert values["probe_http_ssl"] == 0 and values["probe_http_version"] == 1.1
    assert values["probe_http_content_length"] == 9 and values["probe_http_uncompressed_body_length"] == 9
    assert 0 < values["probe_duration_seconds"] < 2 and values["phase_connect"] > 0
    assert values["phase_tls"] == 0 and "probe_ssl_earliest_cert_expiry" not in values


@pytest.mark.parametrize("path, http, success, status, redirects, why", [
    ("/fail", {}, 0, 500, 0, "HTTP status 500 is not valid"),
    ("/fail", {"valid_status_codes": [500]}, 1, 500, 0, ""),
    ("/redirect", {}, 1, 200, 1, ""),  # redirects are followed
    ("/redirect", {"no_follow_redirects": True}, 0, 302, 0, "HTTP status 302"),
    ("/ok", {"fail_if_not_ssl": True}, 0, 200, 0, "fail_if_not_ssl"),
    ("/ok", {"fail_if_body_matches_regexp": ["good"]}, 0, 200, 0, "fail_if_body"),
    ("/ok", {"fail_if_body_not_matches_regexp": ["good"]}, 1, 200, 0, ""),
    ("/ok", {"valid_http_versions": ["HTTP/2.0"]}, 0, 200, 0, "HTTP/1.1 is not in valid_http_versions"),
])
def test_probe_conditions(site, path, http, success, status, redirects, why):
    values, error = probe(site.base + path, **http)
    assert (values["probe_success"], values["probe_http_status_code"], values["probe_http_redirects"]) == (
        success, status, redirects)
    assert why in error and (error == "") == bool(success)


def test_refused_and_slow_targets_fail_with_status_0(site):
    values, error = probe(f"http://127.0.0.1:{free_port()}/")
    assert values["probe_success"] == 0 and values["probe_http_status_code"] == 0 and "ConnectError" in error
    values, error = probe(site.base + "/slow", timeout=0.5)
    assert values["probe_success"] == 0 and "Timeout" in error
    assert 0.5 <= values["probe_duration_seconds"] < 1.5  # the deadline is the probe's


def test_tls_probe_reports_the_certificate_expiry(tls_site, certs):
    values, error = probe(tls_site.base + "/ok", tls_config={"ca_file": str(certs[0])})
    assert error == "" and values["probe_success"] == 1 and values["probe_http_ssl"] == 1
    assert values["probe_ssl_earliest_cert_expiry"] == EXPIRY.timestamp()
    assert values["phase_tls"] > 0


def test_untrusted_certificate_fails_unless_verification_is_skipped(tls_site):
    values, error = probe(tls_site.base + "/ok")
    assert values["probe_success"] == 0 and "CERTIFICATE_VERIFY_FAILED" in error
    values, error = probe(tls_site.base + "/ok", tls_config={"insecure_skip_verify": True})
    assert values["probe_success"] == 1 and values["probe_ssl_earliest_cert_expiry"] == EXPIRY.timestamp()
    values, _ = probe(tls_site.base + "/ok", tls_config={"insecure_skip_verify": True}, fail_if_ssl=True)
    assert values["probe_success"] == 0


def test_probe_job_end_to_end_through_opswatch_run(spawn, tmp_path, site, tls_site, certs):
    web, refused = free_port(), f"http://127.0.0.1:{free_port()}/"
    config = tmp_path / "opswatch.yaml"
    config.write_text(f"""
data_dir: {tmp_path / 'data'}
scrape_interval: 1s
scrape_configs:
  - job_name: website
    probe:
      prober: http
      http: {{tls_config: {{ca_file: {certs[0]}}}}}
    static_configs:
      - targets: ["{site.base}/ok", "{site.base}/fail", "{tls_site.base}/ok", "{refused}"]
        labels: {{team: web}}
""")
    run = spawn([sys.executable, "-m", "opswatch", "run", "--config", str(config), "--port", str(web), "--duration", "5"])
    wait_http(f"http://127.0.0.1:{web}/-/healthy")
    time.sleep(2.5)
    targets = httpx.get(f"http://127.0.0.1:{web}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    errors = {t["instance"]: t["last_error"] for t in targets}
    assert errors[f"{site.base}/ok"] == "" and "HTTP status 500" in errors[f"{site.base}/fail"]
    assert run.wait(timeout=30) == 0

    store = SQLiteStore(tmp_path / "data" / "opswatch.db")
    try:
        success = {ts.labels["instance"]: ts.values.iloc[-1] for ts in store.select("probe_success")}
        assert success == {f"{site.base}/ok": 1.0, f"{site.base}/fail": 0.0, f"{tls_site.base}/ok": 1.0, refused: 0.0}
        assert all(ts.labels["job"] == "website" and ts.labels["team"] == "web" for ts in store.select("probe_success"))
        [expiry] = store.select("probe_ssl_earliest_cert_expiry")
        assert expiry.labels["instance"] == f"{tls_site.base}/ok" and expiry.values.iloc[-1] == EXPIRY.timestamp()
        status = {ts.labels["instance"]: ts.values.iloc[-1] for ts in store.select("probe_http_status_code")}
        assert status[f"{site.base}/fail"] == 500.0
        assert {ts.values.iloc[-1] for ts in store.select("up")} == {1.0}  # the prober ran: up, as with blackbox
        assert len(store.select("probe_duration_seconds")) == 4
    finally:
        store.close()
