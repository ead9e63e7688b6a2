"""The `http` step against real HTTP and HTTPS servers running in threads."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest

from engine.errors import ServiceError, StepError, StepTimeout
from engine.redaction import Redactor, redact_dsn
from engine.steps.base import StepContext, get_step_type
from tests.fixtures.web import CERT_DAYS, WebServers
from tests.helpers import in_thread, step_context


def make_ctx(timeout: float | None = None, redactor: Redactor | None = None) -> StepContext:
    return step_context("t", timeout, redactor=redactor)


def run(body: dict[str, Any], timeout: float | None = None, redactor: Redactor | None = None):
    """Run an http step body; return (data, failure message)."""
    step = get_step_type("http")
    spec = step.Spec.model_validate(body)
    data = step.run(spec, make_ctx(timeout, redactor))
    return data, step.failure(spec, data)


def test_get_json_with_expect_status(web_servers: WebServers) -> None:
    data, failure = run({"url": f"{web_servers.http_url}/json", "expect_status": 200})
    assert failure is None
    assert data["status"] == 200
    assert data["json"] == {"ok": True, "n": 3}
    assert data["headers"]["content-type"] == "application/json"
    assert data["headers"]["x-test-server"] == "web-fixture"
    assert data["tls"] is None
    assert data["truncated"] is False
    assert data["url"] == f"{web_servers.http_url}/json"
    assert data["elapsed_ms"] >= 0


def test_post_json_with_headers_and_params(web_servers: WebServers) -> None:
    data, failure = run(
        {
            "url": f"{web_servers.http_url}/echo",
            "method": "post",
            "json": {"name": "db1", "items": [1, 2]},
            "headers": {"X-Runbook": "yes"},
            "params": {"q": "vacuum", "n": 2},
        }
    )
    assert failure is None
    echoed = data["json"]
    assert echoed["method"] == "POST"
    assert echoed["json"] == {"name": "db1", "items": [1, 2]}
    assert echoed["headers"]["x-runbook"] == "yes"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["query"] == {"q": "vacuum", "n": "2"}


def test_raw_body_and_basic_auth(web_servers: WebServers) -> None:
    redactor = Redactor()
    data, _ = run(
        {
            "url": f"{web_servers.http_url}/echo",
            "method": "PUT",
            "body": "plain text",
            "auth": {"username": "ops", "password": "hunter2-secret"},
        },
        redactor=redactor,
    )
    assert data["json"]["body"] == "plain text"
    assert data["json"]["headers"]["authorization"].startswith("Basic ")
    # The password joins the run's redaction set, so no output can show it.
    assert redactor.text("pw=hunter2-secret") == "pw=***"


def test_server_error_fails_with_default_expect_status(web_servers: WebServers) -> None:
    data, failure = run({"url": f"{web_servers.http_url}/status/500"})
    assert data["status"] == 500
    assert data["json"] is None
    assert failure is not None
    assert "HTTP 500" in failure and "expected 2xx" in failure
    assert "status 500 body" in failure


def test_expect_status_pattern_accepts_5xx(web_servers: WebServers) -> None:
    data, failure = run({"url": f"{web_servers.http_url}/status/503", "expect_status": "5xx"})
    assert data["status"] == 503
    assert failure is None
    _, failure = run({"url": f"{web_servers.http_url}/status/404", "expect_status": [200, 404]})
    assert failure is None


def test_head_has_headers_and_no_body(web_servers: WebServers) -> None:
    data, failure = run({"url": f"{web_servers.http_url}/json", "method": "HEAD"})
    assert failure is None
    assert data["status"] == 200
    assert data["text"] == ""
    assert data["json"] is None
    assert data["headers"]["content-type"] == "application/json"


def test_redirects_followed_or_not(web_servers: WebServers) -> None:
    data, _ = run({"url": f"{web_servers.http_url}/redirect"})
    assert data["status"] == 200
    assert data["url"] == f"{web_servers.http_url}/json"
    data, failure = run({"url": f"{web_servers.http_url}/redirect", "follow_redirects": False})
    assert data["status"] == 302
    assert data["headers"]["location"] == "/json"
    assert failure is not None and "HTTP 302" in failure


def test_huge_body_is_truncated(web_servers: WebServers) -> None:
    data, _ = run({"url": f"{web_servers.http_url}/big?mib=3"})
    assert data["truncated"] is True
    assert len(data["text"]) == 1 << 20


def test_declared_charset_is_used(web_servers: WebServers) -> None:
    data, _ = run({"url": f"{web_servers.http_url}/text"})
    assert data["text"] == "caf\u00e9"


def test_slow_handler_times_out_with_step_timeout(web_servers: WebServers) -> None:
    with pytest.raises(StepTimeout, match=r"timed out after 0\.3s"):
        run({"url": f"{web_servers.http_url}/slow?seconds=3"}, timeout=0.3)
    # The field wins over the default when no step timeout is set.
    with pytest.raises(StepTimeout):
        run({"url": f"{web_servers.http_url}/slow?seconds=3", "timeout": "300ms"})


def test_connection_refused_is_a_service_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ServiceError) as info:
            run({"url": f"http://127.0.0.1:{port}/health"})
    assert info.value.service == "http"
    assert info.value.code == "connect"
    assert "connection refused" in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_userinfo_password_never_shown_in_errors() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://admin:s3cr3t-pass@127.0.0.1:{port}/x"
        with pytest.raises(ServiceError) as info:
            run({"url": url})
    message = str(info.value)
    assert "s3cr3t-pass" not in message
    assert "admin:***@127.0.0.1" in message
    assert redact_dsn(url) == f"http://admin:***@127.0.0.1:{port}/x"
    assert redact_dsn("https://example.org/a?b=1") == "https://example.org/a?b=1"


def test_a_credential_like_query_value_is_masked_in_the_url_only(web_servers: WebServers) -> None:
    # `?auth=true` is shown as auth=*** in the step's URL, but "true" does not join
    # the run's secrets: every later "true" in every output would be masked.
    redactor = Redactor()
    data, failure = run({"url": f"{web_servers.http_url}/json?auth=true"}, redactor=redactor)
    assert failure is None
    assert data["url"].endswith("/json?auth=***")
    assert redactor.text("enabled=true") == "enabled=true"


def test_https_without_verification_reports_certificate(web_servers: WebServers) -> None:
    data, failure = run({"url": f"{web_servers.https_url}/json", "verify": False})
    assert failure is None
    assert data["json"] == {"ok": True, "n": 3}
    tls = data["tls"]
    assert tls["not_after"] == web_servers.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    expected_days = (web_servers.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    assert abs(tls["days_left"] - expected_days) < 0.02
    assert CERT_DAYS - 1 < tls["days_left"] <= CERT_DAYS
    assert tls["subject"] == "localhost"
    assert tls["issuer"] == "localhost"
    assert tls["serial"] == format(web_servers.serial, "x")
    assert tls["self_signed"] is True
    assert "localhost" in tls["dns_names"]


def test_https_self_signed_fails_verification_clearly(web_servers: WebServers) -> None:
    with pytest.raises(ServiceError) as info:
        run({"url": f"{web_servers.https_url}/json"})
    assert info.value.code == "tls"
    message = str(info.value)
    assert "TLS certificate verification failed" in message
    assert "self-signed" in message or "self signed" in message


def test_https_verify_with_ca_bundle_path(web_servers: WebServers) -> None:
    data, failure = run(
        {"url": f"{web_servers.https_url}/json", "verify": str(web_servers.cert_path)}
    )
    assert failure is None
    assert data["status"] == 200
    assert data["tls"]["not_after"] == web_servers.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_missing_ca_bundle_is_a_step_error(web_servers: WebServers, tmp_path) -> None:
    with pytest.raises(StepError, match="cannot load CA bundle"):
        run({"url": f"{web_servers.https_url}/json", "verify": str(tmp_path / "nope.pem")})


# ------------------------------------------------ the operator's second Ctrl-C


def run_cancelled(url: str, cancel_when: Callable[[], None] | None) -> tuple[BaseException, float]:
    """Run a GET of `url` with a long timeout; the second Ctrl-C (cancel_all)
    comes once `cancel_when()` returns (the request is in the server), or before
    the step when None."""
    import time

    from engine.execution.cancel import Cancellers

    cancellers = Cancellers()
    if cancel_when is None:
        cancellers.cancel_all()
    ctx = step_context("slow", 60, cancellable=cancellers.scope)
    step = get_step_type("http")
    spec = step.Spec.model_validate({"url": url, "verify": False})
    started = time.monotonic()
    thread, errors = in_thread(lambda: step.run(spec, ctx))
    if cancel_when is not None:
        cancel_when()
        cancellers.cancel_all()
    thread.join(15)
    assert not thread.is_alive(), "the request kept waiting after cancel_all()"
    [error] = errors
    return error, time.monotonic() - started


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_second_ctrl_c_ends_a_request_waiting_on_the_server(
    web_servers: WebServers, scheme: str
) -> None:
    base = web_servers.http_url if scheme == "http" else web_servers.https_url
    url, arrived = web_servers.slow(base, seconds=20)
    error, took = run_cancelled(url, arrived)
    assert isinstance(error, ServiceError) and error.code == "cancelled", error
    assert "interrupted (Ctrl-C) during the request" in str(error)
    assert took < 10  # the handler answers after 20 s, the step timeout is 60 s


def test_a_request_after_the_second_ctrl_c_is_not_sent() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        error, _ = run_cancelled(f"http://127.0.0.1:{port}/", cancel_when=None)
        assert isinstance(error, ServiceError) and "not sent" in str(error), error
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected


def test_a_body_cut_by_the_second_ctrl_c_is_not_taken_as_complete() -> None:
    # Without Content-Length or chunks, a body ends when the connection closes:
    # the shutdown looks the same to httpx, so the step must tell it apart.
    import socket
    import threading

    release, sent = threading.Event(), threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Connection: close\r\n\r\n{"status": "partial'
                )
                sent.set()
                release.wait(30)

        threading.Thread(target=serve, daemon=True).start()
        try:
            error, took = run_cancelled(f"http://127.0.0.1:{port}/", lambda: _wait(sent))
        finally:
            release.set()
    assert isinstance(error, ServiceError) and error.code == "cancelled", error
    assert took < 10


def _wait(event: threading.Event) -> None:
    assert event.wait(10), "the server never sent its partial body"
