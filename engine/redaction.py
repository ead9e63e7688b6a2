"""What output may not show, decided in one place.

Every output channel (console, JSON, JUnit, HTML, history rows, error
messages) writes what passed through this module:

- `Redactor`: a run's set of secret values (read by `secret()`, params declared
  `secret: true`, passwords written in connection strings), each replaced by
  `***` wherever it appears. Values join the set as they become known, so
  whatever a template actually used is what gets hidden.
- `redact_dsn` / `dsn_passwords` / `scrub`: passwords written in a connection
  string (a URL, or libpq's key=value form), for messages that name a server
  (an operator with three databases needs to know which DSN is wrong) without
  showing its password.
- `redact_result` / `redact_run`: a `sensitive` step's result is shown as
  `***` whole, not only its known secrets.
- `mask_secret_named`: vars whose *name* says they hold a secret (inventory
  display, where no run has learnt their values).

Pure string and data work with no heavy import, so any module may use it.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from .results import RunResult, StepResult

MASK = "***"

# Shorter values are not masked: masking "a" or "1" everywhere would shred the
# output for nothing, and such values are not secrets worth the name.
MIN_SECRET_LENGTH = 3


class Redactor:
    """Replaces every registered secret value by `***`, in any nested data.

    Falsy while it knows no secret, so callers can skip the walk; test it with
    `is not None` when asking whether there is one at all.
    """

    def __init__(self) -> None:
        self._values: list[str] = []  # every form of every secret, longest first
        self._learnt: set[str] = set()  # the secrets themselves, as given to add()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Learn a secret: the value itself, and the forms output may show it in."""
        if not value or len(value) < MIN_SECRET_LENGTH or value in self._learnt:
            return  # secret() is called at every render: known values cost a lookup
        forms = {f for f in shown_forms(value) if len(f) >= MIN_SECRET_LENGTH}
        with self._lock:
            self._learnt.add(value)
            new = forms.difference(self._values)
            if new:
                # Longest first, so a secret that contains another is masked whole.
                self._values = sorted([*self._values, *new], key=len, reverse=True)

    def learn_run_inputs(
        self, secret_params: Iterable[str], params: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        """Before a run records anything: the values of params declared secret,
        and the passwords written in any connection string given as a param or
        extra var (`-p url=redis://:pw@host`)."""
        for name in secret_params:
            if params.get(name):
                self.add(str(params[name]))
        for value in [*params.values(), *extra.values()]:
            if isinstance(value, str):
                for password in dsn_passwords(value):
                    self.add(password)

    def __bool__(self) -> bool:
        return bool(self._values)

    def partial_end(self, text: str) -> int:
        """Where a secret begins that `text` ends in the middle of (len(text)
        if none). Text cut off there (a kept head of output, a chunk written
        before the rest arrives) holds no piece of a secret that masking,
        which needs the whole value, would miss."""
        cut = len(text)
        for form in self._values:
            at = text.find(form[0], max(0, len(text) - len(form) + 1))
            while 0 <= at < cut:
                if form.startswith(text[at:]):
                    cut = at
                    break
                at = text.find(form[0], at + 1)
        return cut

    def partial_start(self, text: str) -> int:
        """Where `text` starts to be clear of a secret it begins in the middle
        of (0 if none): the mirror of partial_end, for a kept tail."""
        start = 0
        for form in self._values:
            end = text.rfind(form[-1], 0, min(len(text), len(form) - 1))
            while end >= start:
                if form.endswith(text[: end + 1]):
                    start = end + 1
                    break
                end = text.rfind(form[-1], 0, end)
        return start

    def text(self, text: str) -> str:
        for value in self._values:  # kept longest first by add()
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __call__(self, data: Any) -> Any:
        if not self._values:
            return data
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, bytes):
            return self.text(data.decode("utf-8", "replace"))
        if isinstance(data, Mapping):
            return {k: self(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self(v) for v in data]
        return data


def shown_forms(value: str) -> set[str]:
    """`value` as output may carry it: JSON-escaped (to_json, JSON reports, history),
    shell-quoted (the `quote` filter, dry-run text), URL-encoded, base64, with CRLF
    line ends, and each line of a multi-line value alone (one line of a PEM key
    printed by itself is as much a leak as the whole key)."""
    forms = {value}
    for text in (value, value.replace("\n", "\r\n")) if "\n" in value else (value,):
        forms.add(text)
        forms.add(json.dumps(text)[1:-1])
        forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
        forms.add(shlex.quote(text))
        forms.add(quote(text))  # as Jinja's urlencode filter: "/" kept
        forms.add(quote(text, safe=""))
        forms.add(quote_plus(text))
        forms.add(base64.b64encode(text.encode()).decode())
    if "\n" in value or "\r" in value:
        forms.update(line.strip() for line in value.splitlines())
    return forms


def mask(text: str, values: Iterable[str | None]) -> str:
    """`text` with each of `values` replaced by `***`, longest first."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


# ------------------------------------------------------------ results


def redact_result(result: StepResult, redactor: Redactor) -> StepResult:
    """A step result as it may be shown: a sensitive step's values all masked."""
    if result.sensitive:
        data: dict[str, Any] = dict.fromkeys(result.data, MASK)
        rendered = dict.fromkeys(result.rendered, MASK) if result.rendered else result.rendered
        return replace(
            result, name=redactor.text(result.name), data=data, rendered=rendered,
            error=redactor(result.error), skip_reason=redactor(result.skip_reason),
        )  # fmt: skip
    if not redactor:
        return result
    return replace(
        result,
        name=redactor.text(result.name),  # rendered: it may quote a value
        data=redactor(result.data),
        rendered=redactor(result.rendered),
        error=redactor(result.error),
        skip_reason=redactor(result.skip_reason),  # may quote a failure (dry run)
    )


def redact_run(result: RunResult, redactor: Redactor) -> RunResult:
    hosts = {}
    for name, hr in result.hosts.items():
        hosts[name] = replace(
            hr,
            steps=[redact_result(s, redactor) for s in hr.steps],
            unreachable=redactor(hr.unreachable),
            aborted=redactor(hr.aborted),
        )
    return replace(result, hosts=hosts, aborted=redactor(result.aborted))


def is_masked(value: Any) -> bool:
    """Whether a recorded value had a secret masked in it (resume asks for it again)."""
    if isinstance(value, str):
        return MASK in value
    if isinstance(value, dict):
        return any(is_masked(v) for v in value.values())
    if isinstance(value, list):
        return any(is_masked(v) for v in value)
    return False


# Names that say a value is a secret: vars shown without a run (inventory display),
# and environment variables read through `env` in templates. Inside a name these
# are telling enough (DBPASSWORD, GITHUB_TOKEN); the short ones only as a word
# of the name (AWS_ACCESS_KEY, DB_PASS), so KEYBOARD or AUTHOR are not.
_SECRET_IN_NAME = re.compile(r"password|passwd|secret|token|private_?key|api_?key|credential", re.I)
_SECRET_WORDS = frozenset({"pass", "pwd", "key", "keys", "auth", "pat"})
# A name ending in one of these says where a secret is, not what it is:
# `backup_key_file`, `TLS_KEY_PATH`, `password_file` hold paths, shown as they are.
_PLACE_WORDS = frozenset({"file", "path", "dir", "filename", "location"})


def looks_secret(name: object) -> bool:
    text = str(name)
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    if words and words[-1] in _PLACE_WORDS:
        return False
    if _SECRET_IN_NAME.search(text):
        return True
    return any(word in _SECRET_WORDS for word in words)


def mask_secret_named(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (MASK if looks_secret(k) else v) for k, v in values.items()}


# ------------------------------------------------- connection strings
#
# Both spellings PostgreSQL accepts are handled, plus Redis and HTTP URLs:
# - URLs: postgresql://user:pw@host/db?password=pw, redis://:pw@host:6379/0,
#   https://user:pw@host/path?token=t;
# - libpq key=value strings: host=db1 password=pw, or password='p w\'x'.

# Query parameters / conninfo keys that hold a credential.
_SECRET_KEYS = frozenset({"password", "pass", "passwd", "sslpassword", "auth", "token"})

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# key = value, the value bare or single-quoted with backslash escapes (libpq rules).
_KV = re.compile(r"(?P<key>\b[a-z_]+)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|[^\s']+)")


def _is_url(text: str) -> bool:
    return bool(_URL.match(text.strip()))


def redact_dsn(dsn: str) -> str:
    """`dsn` (a URL or libpq key=value) with every password as ***; the rest readable."""
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
    """`text` (e.g. a library's error message) with `dsn`'s passwords masked, and
    the DSN itself shown redacted where it is quoted whole (a URL too odd to
    parse for its password still gets the pattern-based mask of redact_dsn)."""
    text = mask(text, dsn_passwords(dsn))
    if dsn and dsn in text:
        text = text.replace(dsn, redact_dsn(dsn))
    return text
