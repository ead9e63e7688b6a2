"""runbooks/emergency-certificate.yaml against a real HTTPS server of the test's own
that, like nginx, keeps serving the certificate it loaded until it is told to reload.

The served files are live/server.pem and live/server.key. The "renewal" copies a
fresh certificate made beforehand over them (as certbot rewrites its live/ files);
the "reload" touches a flag file, which the server acts on at the first
connection at least RELOAD_LAG seconds later (a reload takes a moment: the check
after it must retry)."""

from __future__ import annotations

import datetime as dt
import shlex
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509

from tests.fixtures.web import make_self_signed
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "emergency-certificate.yaml"
RELOAD_LAG = 0.5


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep pytest output clean."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


class ReloadingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, live: Path, flag: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.live, self.flag, self.reloads = live, flag, 0
        self.context = self._load()

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.live / "server.pem", self.live / "server.key")
        return context

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = self.socket.accept()
        try:
            requested = self.flag.stat().st_mtime
        except FileNotFoundError:
            requested = None
        if requested is not None and time.time() - requested >= RELOAD_LAG:
            self.context = self._load()
            self.reloads += 1
            self.flag.unlink()
        # The handshake happens in the handler's thread, at its first read.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (HEAD without a body, timeouts) are expected."""


@dataclass
class Site:
    url: str
    live: Path  # the served files
    fresh: Path  # the renewed certificate, made beforehand
    flag: Path  # touched by the reload command
    server: ReloadingServer

    def served_not_after(self) -> dt.datetime:
        """The notAfter of the certificate a new connection gets now."""
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        raw = socket.create_connection(self.server.server_address, timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).not_valid_after_utc

    def params(self, **extra: str) -> list[str]:
        values = {
            "url": self.url,
            "cert_file": str(self.live / "server.pem"),
            "ca_bundle": str(self.live / "server.pem"),  # self-signed: its own CA
            "certs_cmd": f"openssl x509 -noout -subject -enddate -in {shlex.quote(str(self.live / 'server.pem'))}",
            "renew_dry_run_cmd": f"test -r {shlex.quote(str(self.fresh / 'server.pem'))}",
            "renew_cmd": " && ".join(
                f"cp {shlex.quote(str(self.fresh / n))} {shlex.quote(str(self.live / n))}"
                for n in ("server.pem", "server.key")
            ),
            "reload_cmd": f"touch {shlex.quote(str(self.flag))}",
            "renewal_schedule_cmd": "echo '0 */12 * * * root certbot -q renew'",
            "recheck_delay": "1s",
            "recheck_attempts": "8",
        }
        values.update(extra)
        return [arg for k, v in values.items() for arg in ("-p", f"{k}={v}")]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Callable[[int], Site]]:
    servers: list[ReloadingServer] = []

    def start(days: int) -> Site:
        live, fresh = tmp_path / "live", tmp_path / "fresh"
        live.mkdir()
        fresh.mkdir()
        if days < 0:
            make_expired(live, days_ago=-days)
        else:
            make_self_signed(live, days=days)
        make_self_signed(fresh, days=90)
        server = ReloadingServer(live, tmp_path / "reload-requested")
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        url = f"https://localhost:{server.server_address[1]}/"
        return Site(url, live, fresh, tmp_path / "reload-requested", server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def make_expired(directory: Path, days_ago: int) -> None:
    """Like make_self_signed, but valid from 30 days before its expiry `days_ago` days ago."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    not_after = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - dt.timedelta(days=30))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _days(not_after: dt.datetime) -> float:
    return (not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400


def test_a_short_certificate_is_renewed_reloaded_and_verified(site: Callable[[int], Site]) -> None:
    s = site(3)
    code, doc = run_json(RUNBOOK, *s.params(), "--yes")
    steps = steps_of(doc)
    # Before: critical, about 3 days, on the endpoint and in the file.
    assert 2.9 < steps["cert"]["metrics"]["tls_days_left_before"]["value"] <= 3
    assert 2.9 < steps["cert_file"]["metrics"]["cert_file_days_left_before"]["value"] <= 3
    assert steps["finding"]["data"]["severity_before"] == "critical"
    assert steps["finding"]["data"]["renew_needed"] is True
    assert "notAfter=" in steps["certs"]["data"]["stdout"]
    assert steps["dns"]["data"]["stdout"].split()[-1] == "localhost"
    # The fix ran, in order, and the server really serves the new certificate.
    for step_id in ("renew_test", "renew", "reload"):
        assert steps[step_id]["state"] == "ok", steps[step_id]
    assert s.server.reloads == 1
    assert 89.9 < _days(s.served_not_after()) <= 90
    # After: the served certificate was read again until the reload took (the
    # first read still got the old one), and judged ok; so were the file and chain.
    now = steps["cert_now"]
    assert now["state"] == "ok" and now["attempts"] >= 2, now
    assert 89.9 < now["metrics"]["tls_days_left"]["value"] <= 90
    assert 89.9 < steps["cert_file_now"]["metrics"]["cert_file_days_left"]["value"] <= 90
    assert steps["chain"]["state"] == "ok"
    assert steps["handover"]["state"] == "skipped"
    # Fixed and verified: exit 0. The 3 days found are in the record, not the verdict.
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}


def test_an_expired_certificate_is_critical_and_a_dry_run_changes_nothing(
    site: Callable[[int], Site],
) -> None:
    s = site(-2)
    before = (s.live / "server.pem").read_bytes()
    code, doc = run_json(RUNBOOK, *s.params(), "--dry-run")
    steps = steps_of(doc)
    assert -2.01 < steps["cert"]["metrics"]["tls_days_left_before"]["value"] < -1.99
    assert steps["finding"]["data"]["severity_before"] == "critical"
    for step_id in ("renew_test", "renew", "reload", "handover"):
        assert steps[step_id]["state"] == "skipped", steps[step_id]
    # The verdict in a dry run: the served certificate, as it is.
    now = steps["cert_now"]
    assert now["state"] == "critical" and now["metrics"]["tls_days_left"]["value"] < -1.99
    assert steps["cert_file_now"]["state"] == "critical"
    assert code == 2, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    assert (s.live / "server.pem").read_bytes() == before
    assert not s.flag.exists() and s.server.reloads == 0
    assert _days(s.served_not_after()) < 0


def test_without_yes_nothing_is_renewed(site: Callable[[int], Site]) -> None:
    s = site(3)
    before = (s.live / "server.pem").read_bytes()
    code, doc = run_json(RUNBOOK, *s.params())
    steps = steps_of(doc)
    assert steps["renew_test"]["state"] == "ok"  # the test ran; the renewal asked
    assert steps["renew"]["state"] == "aborted"  # no terminal, no --yes: declined
    assert "reload" not in steps  # the host stopped at the declined gate
    assert code == 4
    assert (s.live / "server.pem").read_bytes() == before
    assert not s.flag.exists()
    assert 2.9 < _days(s.served_not_after()) <= 3


def test_a_failed_renewal_keeps_the_old_certificate_and_hands_over(
    site: Callable[[int], Site],
) -> None:
    s = site(3)
    before = (s.live / "server.pem").read_bytes()
    fail = "echo 'too many certificates already issued' >&2; exit 1"
    code, doc = run_json(RUNBOOK, *s.params(renew_cmd=fail), "--yes", "--approve", "handover")
    steps = steps_of(doc)
    assert steps["renew"]["state"] == "failed"
    assert steps["reload"]["state"] == "skipped"
    assert steps["cert_now"]["state"] == "critical"
    assert steps["cert_now"]["attempts"] == 1  # nothing reloaded: nothing to wait for
    assert 2.9 < steps["cert_now"]["metrics"]["tls_days_left"]["value"] <= 3
    handover = steps["handover"]
    assert handover["state"] == "ok", handover
    text = handover["data"]["instructions"]
    for needle in (
        "too many certificates already issued",
        "getent hosts localhost",
        "/.well-known/acme-challenge/",
        "/var/log/letsencrypt/",
        "systemctl list-timers | grep certbot",
    ):
        assert needle in text, text
    assert code == 3
    assert (s.live / "server.pem").read_bytes() == before
    assert s.server.reloads == 0 and 2.9 < _days(s.served_not_after()) <= 3
