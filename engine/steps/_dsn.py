"""Passwords out of connection strings, for error messages and logs.

Service errors must name *which* server refused (an operator with three
databases needs to know which DSN is wrong) without ever printing its
password. Both spellings PostgreSQL accepts are handled, plus Redis URLs:

- URLs: ``postgresql://user:pw@host/db?password=pw``, ``redis://:pw@host:6379/0``,
  ``rediss://user:pw@host``;
- libpq key=value strings: ``host=db1 password=pw`` or ``password='p w\\'x'``.

Pure string work with no library import, so any module may use it cheaply.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MASK = "***"

# Query parameters / conninfo keys that hold a credential.
_SECRET_KEYS = frozenset({"password", "pass", "passwd", "sslpassword", "auth", "token"})

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# key = value, the value bare or single-quoted with backslash escapes (libpq rules).
_KV = re.compile(r"(?P<key>\b[a-z_]+)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|[^\s']+)")


def _is_url(text: str) -> bool:
    return bool(_URL.match(text.strip()))


def redact_dsn(dsn: str) -> str:
    """`dsn` with every password replaced by ``***``; the rest left readable."""
    if not dsn:
        return dsn
    if _is_url(dsn):
        return _redact_url(dsn)
    return _KV.sub(_mask_kv, dsn)


def _mask_kv(match: re.Match[str]) -> str:
    if match.group("key").lower() in _SECRET_KEYS:
        return f"{match.group('key')}={MASK}"
    return match.group(0)


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        # Unparsable (e.g. a bad IPv6 literal): mask everything between :// and @.
        return re.sub(r"(://[^/@]*?):[^/@]*@", rf"\1:{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        query = "&".join(
            f"{k}={MASK}" if k.lower() in _SECRET_KEYS else piece
            for piece in query.split("&")
            for k in [piece.split("=", 1)[0]]
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def dsn_passwords(dsn: str) -> list[str]:
    """Every password written in `dsn`, decoded, so a Redactor can hide it anywhere."""
    found: list[str] = []
    if not dsn:
        return found
    if _is_url(dsn):
        try:
            parts = urlsplit(dsn.strip())
        except ValueError:
            return found
        if parts.password:
            # Both spellings: libpq may echo either the decoded or the written form.
            found += {parts.password, unquote(parts.password)}
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_KEYS and v]
        return found
    for match in _KV.finditer(dsn):
        if match.group("key").lower() not in _SECRET_KEYS:
            continue
        value = match.group("value")
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1] if value.endswith("'") else value[1:])
        if value:
            found.append(value)
    return found


def scrub(text: str, dsn: str) -> str:
    """`text` (e.g. a library's error message) with `dsn`'s passwords masked."""
    for secret in sorted(dsn_passwords(dsn), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
