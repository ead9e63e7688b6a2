"""What `secret('backend:...')` names, read before anything is fetched, and how
a key picks one value out of what a backend returns.

Pure string and data work: the unit tests cover it without any server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from engine.errors import SecretError

DEFAULT_VAULT_MOUNT = "secret"  # where `vault server -dev` and most installs mount KV v2

# Each backend's prefix and the shape of its references, for error messages.
SYNTAX = {
    "vault": "vault:PATH#KEY or vault:MOUNT:PATH#KEY",
    "aws": "aws:NAME or aws:NAME#KEY",
    "sops": "sops:FILE#KEY",
}

# Key names listed in a "no such key" message; names are structure, not values.
SHOWN_KEYS = 10


class FetchError(Exception):
    """A backend could not give the value: the cause, never the value."""


@dataclass(frozen=True)
class SecretRef:
    """`vault:kv:app/db#password` as parts. `text` is the reference as written,
    the only form of it error messages show."""

    text: str
    backend: str
    location: str  # a Vault path, an AWS secret's name or ARN, a SOPS file
    key: str = ""  # after '#': a field; dots step into nested mappings
    mount: str = ""  # Vault's KV v2 mount

    @property
    def document(self) -> tuple[str, str, str]:
        """What one fetch returns, whichever key is then picked from it."""
        return (self.backend, self.mount, self.location)


@lru_cache(maxsize=1024)
def parse_ref(text: str) -> SecretRef | None:
    """The reference `text` names, or None for a plain name (environment or
    --secrets file). Raises SecretError for a malformed reference."""
    backend, colon, rest = text.partition(":")
    if not colon or backend not in SYNTAX:
        return None
    location, hashmark, key = rest.partition("#")
    if hashmark and not key:
        _malformed(text, backend, "nothing after '#'")
    mount = ""
    if backend == "vault":
        mount, colon, path = location.partition(":")
        if not colon:
            mount, path = DEFAULT_VAULT_MOUNT, location
        mount, location = mount.strip("/"), path.strip("/")
        if not mount:
            _malformed(text, backend, "an empty mount before ':'")
    if not location:
        _malformed(text, backend, "no " + ("file" if backend == "sops" else "path or name"))
    if backend in ("vault", "sops") and not key:
        _malformed(text, backend, "no key: name the value with #KEY")
    return SecretRef(text, backend, location, key, mount)


def _malformed(text: str, backend: str, what: str) -> None:
    raise SecretError(f"secret {text!r}: {what}; write {SYNTAX[backend]}")


def pick(node: Any, path: str, above: str = "") -> Any:
    """node[path], where dots step into nested mappings (`db.password`) and a
    number into a list (`hosts.0`). A key that itself holds dots (`tls.crt`)
    is matched whole before the path is split."""
    if isinstance(node, list):
        head, _, rest = path.partition(".")
        if not (head.isdigit() and int(head) < len(node)):
            raise FetchError(f"no item {head!r} in the list at {above or 'the top'!r}")
        item = node[int(head)]
        return pick(item, rest, _joined(above, head)) if rest else item
    if not isinstance(node, Mapping):
        raise FetchError(f"{above!r} is a single value, it has no key {path!r}")
    if path in node:
        return node[path]
    dots = [at for at, char in enumerate(path) if char == "."]
    for at in reversed(dots):  # the longest key that exists wins
        if path[:at] in node:
            return pick(node[path[:at]], path[at + 1 :], _joined(above, path[:at]))
    keys = ", ".join(sorted(map(str, node))[:SHOWN_KEYS]) or "none"
    where = f" under {above!r}" if above else ""
    raise FetchError(f"no key {path!r}{where} (keys there: {keys})")


def _joined(above: str, key: str) -> str:
    return f"{above}.{key}" if above else key


def as_text(value: Any, key: str) -> str:
    """A picked value as the string a template gets."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list):
        kind = "a mapping" if isinstance(value, Mapping) else "a list"
        raise FetchError(f"{key!r} is {kind}, not a value: name a key below it ({key}.NAME)")
    if value is None:
        raise FetchError(f"{key!r} is empty (null)")
    return json.dumps(value)  # true, 5432, 1.5: as the file wrote them


def leaves(value: Any) -> list[str]:
    """Every string inside parsed JSON or YAML: what a template
    holding the whole document could print."""
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value] if isinstance(value, str) else []
