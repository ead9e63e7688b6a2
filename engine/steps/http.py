"""`http`: one request from the control node, with the peer's TLS certificate.

The certificate is read from the live TLS socket even when `verify: false`, so a
certificate-expiry check needs neither openssl on the host nor a trusted chain.
Bodies are streamed and cut at `MAX_BODY` so a health endpoint that suddenly
returns a gigabyte cannot exhaust the engine's memory; the whole request also
honours one deadline (the step timeout), not only httpx's per-read timeouts.
The operator's second Ctrl-C shuts the request's sockets down (`_Sockets`), so
a step waiting on a server ends at once instead of at its timeout (a connect
or a DNS lookup still in progress ends at the connect timeout).
"""

from __future__ import annotations

import json as jsonlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.errors import ServiceError, StepError, StepTimeout
from engine.format.model import Duration
from engine.redaction import mask, redact_dsn

from .base import StepContext, StepSpec, StepType

if TYPE_CHECKING:
    import httpx

MAX_BODY = 1 << 20  # bytes of body kept in the result
DEFAULT_TIMEOUT = 30.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STATUS_TOKEN = re.compile(r"^([1-5])(?:xx|XX)$|^([1-5]\d\d)$")


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    # Never part of a dump (dry-run display, reports), whatever rendered it.
    password: str = Field(default="", exclude=True)


class HttpSpec(StepSpec):
    url: str
    method: str = "GET"
    headers: dict[str, str] = {}
    # `json` would shadow BaseModel.json(); the alias keeps the runbook key.
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    params: dict[str, str | int | float | bool | list[str | int | float]] = {}
    expect_status: int | list[int] | str = "2xx"
    verify: bool | str = True
    timeout: Duration | None = None
    follow_redirects: bool = True
    auth: BasicAuth | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        value = value.strip().upper()
        if not re.fullmatch(r"[A-Z]+", value):
            raise ValueError(f"{value!r} is not an HTTP method")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("the url must start with http:// or https://")
        return value

    @field_validator("expect_status")
    @classmethod
    def _expect(cls, value: int | list[int] | str) -> int | list[int] | str:
        status_matcher(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpSpec:
        if "json_body" in self.model_fields_set and self.body is not None:
            raise ValueError("give at most one of `json` and `body`")
        return self


def status_matcher(expect: int | list[int] | str) -> list[tuple[int, int]]:
    """`200`, `[200, 204]`, `"2xx"`, `"2xx,304"` → inclusive status ranges."""
    if isinstance(expect, bool):
        raise ValueError("expect_status is a status, a list of statuses or a pattern like 2xx")
    if isinstance(expect, int):
        tokens: list[str] = [str(expect)]
    elif isinstance(expect, list):
        tokens = [str(x) for x in expect]
    else:
        tokens = [t.strip() for t in re.split(r"[,|\s]+", expect) if t.strip()]
    if not tokens:
        raise ValueError("expect_status cannot be empty")
    ranges = []
    for token in tokens:
        match = _STATUS_TOKEN.match(token)
        if not match:
            raise ValueError(f"{token!r} is not a status (100-599) or a class like 2xx")
        if match[1]:
            base = int(match[1]) * 100
            ranges.append((base, base + 99))
        else:
            ranges.append((int(match[2]), int(match[2])))
    return ranges


def status_ok(status: int, expect: int | list[int] | str) -> bool:
    return any(lo <= status <= hi for lo, hi in status_matcher(expect))


class HttpStep(StepType):
    name = "http"
    Spec = HttpSpec

    def normalize(self, body: Any) -> Any:
        # `http: https://example.org/health` is a GET of that URL.
        if isinstance(body, str):
            return {"url": body}
        return body

    def dry_run_safe(self, spec: HttpSpec) -> bool:
        return spec.method in SAFE_METHODS

    def describe(self, spec: HttpSpec) -> str:
        return f"{spec.method} {redact_dsn(spec.url)}"

    def failure(self, spec: HttpSpec, data: dict[str, Any]) -> str | None:
        status = data.get("status")
        if not isinstance(status, int) or status_ok(status, spec.expect_status):
            return None
        text = (data.get("text") or "").strip()
        snippet = text[:200] + ("..." if len(text) > 200 else "")
        return (
            f"HTTP {status} from {spec.method} {redact_dsn(spec.url)} "
            f"(expected {_expect_text(spec.expect_status)})" + (f": {snippet}" if snippet else "")
        )

    def run(self, spec: HttpSpec, ctx: StepContext) -> dict[str, Any]:
        secrets = _register_secrets(spec, ctx)
        sockets = _Sockets()  # for the operator's second Ctrl-C: shut down, not waited on

        def cancelled_error(when: str) -> ServiceError:
            message = f"{spec.method} {redact_dsn(spec.url)}: cancelled: the run was interrupted"
            return ServiceError(
                "http", mask(f"{message} (Ctrl-C){when}", secrets), code="cancelled"
            )

        with ctx.cancellable(sockets.shut_down) as cancelled:
            try:
                if cancelled.is_set():  # the second Ctrl-C came before this step
                    raise cancelled_error("; not sent")
                data = self._request(spec, ctx, secrets, sockets.trace)
                if cancelled.is_set() and _ends_at_close(data):
                    # Shutting the socket down ends such a body like the server would.
                    raise cancelled_error(" during the request")
                return data
            except Exception as exc:  # httpx's own errors, or ours made from them
                if not cancelled.is_set() or getattr(exc, "code", None) == "cancelled":
                    raise
                raise cancelled_error(" during the request") from None
            finally:
                sockets.close()

    def _request(
        self,
        spec: HttpSpec,
        ctx: StepContext,
        secrets: list[str],
        trace: Callable[[str, dict[str, Any]], None],
    ) -> dict[str, Any]:
        import httpx

        shown = redact_dsn(spec.url)
        timeout = _timeout(spec, ctx)
        deadline = time.monotonic() + timeout
        auth = (spec.auth.username, spec.auth.password) if spec.auth else None

        def fail(message: str, code: str) -> ServiceError:
            return ServiceError(
                "http", mask(f"{spec.method} {shown}: {message}", secrets), code=code
            )

        started = time.monotonic()
        try:
            with (
                httpx.Client(
                    verify=_verify(spec.verify),
                    timeout=httpx.Timeout(timeout),
                    follow_redirects=spec.follow_redirects,
                    auth=auth,
                ) as client,
                client.stream(spec.method, spec.url, **_request_args(spec, trace)) as response,
            ):
                tls = _peer_certificate(response, ctx.now())
                raw, truncated = _read_body(response, deadline, timeout)
                elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        except httpx.TimeoutException as exc:
            kind = type(exc).__name__.replace("Timeout", "").lower() or "request"
            raise StepTimeout(
                mask(f"http {spec.method} {shown}: timed out after {timeout:g}s ({kind})", secrets)
            ) from None
        except httpx.ConnectError as exc:
            raise _connect_error(exc, spec, fail) from None
        except httpx.TooManyRedirects:
            raise fail("too many redirects", "redirects") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise fail(f"invalid URL: {exc}", "url") from None
        except httpx.HTTPError as exc:
            raise fail(f"{type(exc).__name__}: {exc}", type(exc).__name__) from None

        text = _decode(raw, response)
        return {
            "status": response.status_code,
            "reason": response.reason_phrase,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "json": _parse_json(text, response, truncated),
            "text": text,
            "truncated": truncated,
            "elapsed_ms": elapsed_ms,
            "url": redact_dsn(str(response.url)),
            "tls": tls,
        }


class _Sockets:
    """The request's TCP sockets, duplicated as httpx opens them (its `trace`
    extension), so that a second Ctrl-C can shut them down from another thread.

    Shutting a socket down wakes a read blocked on it, which closing does not;
    the duplicate is the same connection under a descriptor of our own, so it
    cannot be a different socket that reused the number after httpx closed its
    own. A connection opened after the Ctrl-C is shut down as it opens (the
    cancel is also repeated each second until the step lets go).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dups: list[socket.socket] = []
        self._shut = False

    def trace(self, name: str, info: dict[str, Any]) -> None:
        # connection.connect_tcp.complete, or socks.connect_tcp.complete via a proxy
        if not name.endswith("connect_tcp.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        try:
            dup = sock.dup()
        except OSError:  # out of descriptors: the request goes on, uncancellable
            return
        with self._lock:
            self._dups.append(dup)
            if self._shut:
                _shut_down(dup)

    def shut_down(self) -> None:
        # Under the lock, so `close` cannot free a descriptor in between.
        with self._lock:
            self._shut = True
            for dup in self._dups:
                _shut_down(dup)

    def close(self) -> None:
        with self._lock:
            for dup in self._dups:
                dup.close()
            self._dups = []


def _request_args(spec: HttpSpec, trace: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:
    """httpx's arguments for the request itself: query, headers, body, trace."""
    args: dict[str, Any] = {"params": spec.params or None, "headers": spec.headers}
    if "json_body" in spec.model_fields_set:
        args["json"] = spec.json_body
    elif spec.body is not None:
        args["content"] = spec.body.encode()
    args["extensions"] = {"trace": trace}  # tells _Sockets each connection opened
    return args


def _ends_at_close(data: dict[str, Any]) -> bool:
    """Whether the body ran until the connection closed (no length, not chunked)."""
    headers = data["headers"]
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    return "content-length" not in headers and not chunked and data["status"] not in (204, 304)


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the peer, or never connected
        pass


def _register_secrets(spec: HttpSpec, ctx: StepContext) -> list[str]:
    """The URL's userinfo password and `auth`'s join the run's redaction set.

    Only those: a query value such as `?auth=true` is shown masked in the URL
    (redact_dsn), but masking "true" in every later output would be noise."""
    found = []
    try:
        password = urlsplit(spec.url).password
    except ValueError:
        password = None
    if password:
        found.append(password)
    if spec.auth and spec.auth.password:
        found.append(spec.auth.password)
    for value in found:
        ctx.redactor.add(value)
    return found


def _timeout(spec: HttpSpec, ctx: StepContext) -> float:
    """The field, capped by the step timeout; 30 s when neither is set."""
    candidates = [t for t in (spec.timeout, ctx.timeout) if t]
    return min(candidates) if candidates else DEFAULT_TIMEOUT


def _verify(verify: bool | str) -> bool | ssl.SSLContext:
    if isinstance(verify, bool):
        return verify
    import os

    path = os.path.expanduser(verify)
    try:
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StepError(f"http.verify: cannot load CA bundle {verify!r}: {reason}") from None


def _connect_error(
    exc: Exception, spec: HttpSpec, fail: Callable[[str, str], ServiceError]
) -> ServiceError:
    text = str(exc)
    target = urlsplit(spec.url)
    where = f"{target.hostname}:{target.port or (443 if target.scheme == 'https' else 80)}"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        reason = text.split("certificate verify failed:")[-1].split("(_ssl")[0].strip(" )")
        if "expired" in reason or "not yet valid" in reason:
            # Trusting another CA would not help: the dates are wrong.
            return fail(
                f"TLS certificate of {where} is not valid now: {reason}; "
                "renew it (`verify: false` reads it anyway, with `tls.days_left`)",
                "tls",
            )
        return fail(
            f"TLS certificate verification failed for {where}: {reason or text}; "
            "trust its CA with `verify: /path/to/ca.pem` or disable with `verify: false`",
            "tls",
        )
    if "SSL" in text or "TLS" in text:
        return fail(f"TLS handshake with {where} failed: {text}", "tls")
    if "refused" in text.lower():
        return fail(f"cannot connect to {where}: connection refused", "connect")
    dns_failures = (
        "name or service not known",
        "nodename nor servname",
        "temporary failure in name resolution",
        "no address associated",
        "getaddrinfo failed",
    )
    if any(marker in text.lower() for marker in dns_failures):
        return fail(f"cannot resolve host {target.hostname!r}", "dns")
    return fail(f"cannot connect to {where}: {text}", "connect")


def _read_body(response: httpx.Response, deadline: float, timeout: float) -> tuple[bytes, bool]:
    """At most MAX_BODY bytes of the (decoded) body; the rest is not downloaded."""
    chunks: list[bytes] = []
    size = 0
    truncated = False
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            import httpx

            raise httpx.ReadTimeout(f"body not received within {timeout:g}s")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            truncated = True
            break
    return b"".join(chunks)[:MAX_BODY], truncated


def _decode(raw: bytes, response: httpx.Response) -> str:
    encoding = response.charset_encoding or "utf-8"
    try:
        return raw.decode(encoding, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _parse_json(text: str, response: httpx.Response, truncated: bool) -> Any:
    if truncated or not text.strip():
        return None
    ctype = response.headers.get("content-type", "").lower()
    looks_json = text.lstrip()[:1] in ("{", "[")
    if "json" not in ctype and not looks_json:
        return None
    try:
        return jsonlib.loads(text)
    except ValueError:
        return None


def _peer_certificate(response: httpx.Response, now: datetime) -> dict[str, Any] | None:
    """The server certificate's dates and names, straight from the TLS socket."""
    if response.url.scheme != "https":
        return None
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    # The raw _ssl object takes its flag positionally only: True = DER bytes.
    der = ssl_object.getpeercert(True) if ssl_object is not None else None
    if not der:
        return None
    return certificate_info(der, now)


def certificate_info(der: bytes, now: datetime | None = None) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    not_before = cert.not_valid_before_utc
    now = now or datetime.now(UTC)

    def name(value: x509.Name) -> str:
        cns = value.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cns[0].value) if cns else value.rfc4514_string()

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return {
        "not_after": _iso(not_after),
        "not_before": _iso(not_before),
        "days_left": round((not_after - now).total_seconds() / 86400, 2),
        "subject": name(cert.subject),
        "issuer": name(cert.issuer),
        "subject_dn": cert.subject.rfc4514_string(),
        "issuer_dn": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "dns_names": names,
        "self_signed": cert.subject == cert.issuer,
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expect_text(expect: int | list[int] | str) -> str:
    if isinstance(expect, list):
        return ", ".join(str(x) for x in expect)
    return str(expect)
