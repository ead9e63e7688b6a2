"""Who may do what: users, their roles and their API tokens.

Roles: `viewer` reads runs, `operator` also starts, cancels and resumes runs
and acknowledges manual steps, `approver` also answers gates. A gate's
`approvers:` may name users or `@role`s; roles beyond the three are free
(`@dba`) and only matter there.

The `users:` mapping lives in the `runbook serve` config file. A run started
from a terminal learns roles from the same file when $RUNBOOK_SERVE_CONFIG
names it, so `approvers: ['@dba']` means the same in both. Tokens are kept
as SHA-256 digests (or read from an environment variable), never in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UsageError

ROLES = ("viewer", "operator", "approver")
# What each built-in role allows; a user's rights are the union of their roles'.
RIGHTS = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "start", "cancel", "acknowledge"}),
    "approver": frozenset({"read", "approve"}),
}


@dataclass(frozen=True)
class User:
    name: str
    roles: frozenset[str]
    token_sha256: str | None = None  # hex digest of the bearer token

    def may(self, right: str) -> bool:
        return any(right in RIGHTS.get(role, frozenset()) for role in self.roles)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_users(raw: Any, where: str) -> dict[str, User]:
    """The `users:` mapping: name → {roles: [...], token_sha256: HEX | token_env: VAR}."""
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: `users:` must map user names to their roles and token")
    users: dict[str, User] = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping):
            raise UsageError(f"{where}: users.{name}: expected {{roles: [...], token_sha256: ...}}")
        unknown = set(entry) - {"roles", "token_sha256", "token_env"}
        if unknown:
            raise UsageError(f"{where}: users.{name}: unknown key(s) {', '.join(sorted(unknown))}")
        roles = entry.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise UsageError(f"{where}: users.{name}.roles: a list of role names")
        digest = entry.get("token_sha256")
        if entry.get("token_env"):
            token = os.environ.get(str(entry["token_env"]), "")
            if not token:
                raise UsageError(
                    f"{where}: users.{name}.token_env: ${entry['token_env']} is not set"
                )
            digest = token_digest(token)
        if digest is not None and (len(str(digest)) != 64 or not _is_hex(str(digest))):
            raise UsageError(
                f"{where}: users.{name}.token_sha256: 64 hex digits (printf %s TOKEN | sha256sum)"
            )
        users[str(name)] = User(str(name), frozenset(roles), str(digest) if digest else None)
    return users


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def user_for_token(users: Mapping[str, User], token: str) -> User | None:
    """The user whose token this is; compared in constant time."""
    digest = token_digest(token)
    found = None
    for user in users.values():
        if user.token_sha256 and hmac.compare_digest(user.token_sha256, digest):
            found = user
    return found


def load_users_file(path: str | Path) -> dict[str, User]:
    import yaml

    where = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{where}: cannot read the users: {exc}") from None
    if not isinstance(doc, Mapping):
        raise UsageError(f"{where}: expected a mapping with `users:`")
    return parse_users(doc.get("users") or {}, where)


def roles_in(users: Mapping[str, User], user: str) -> frozenset[str]:
    """`user`'s roles among `users`; none for a user not among them."""
    found = users.get(user)
    return found.roles if found is not None else frozenset()


def users_from_env() -> tuple[str, dict[str, User]] | None:
    """$RUNBOOK_SERVE_CONFIG and its `users:`, or None when it is not set."""
    path = os.environ.get("RUNBOOK_SERVE_CONFIG", "").strip()
    return (path, load_users_file(path)) if path else None


def roles_from_env() -> Any:
    """A user → roles function from $RUNBOOK_SERVE_CONFIG's `users:` (no roles
    for anyone when it is not set)."""
    found = users_from_env()
    users = found[1] if found is not None else {}
    return lambda user: roles_in(users, user)
