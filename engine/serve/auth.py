"""Who is asking: `Authorization: Bearer TOKEN` → the config's User, and their rights.

Routes declare what they need with `Depends(need("start"))`: no or an unknown
token is 401 (with `WWW-Authenticate: Bearer`), a known user without the
right is 403 naming the right. The users live in app.state.config, so any
router (the API, the web page) shares them through the same dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.users import RIGHTS, User, user_for_token

_bearer = HTTPBearer(auto_error=False, description="A user's token from the serve config")


def current_user(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> User:
    """The user whose bearer token came with the request; 401 otherwise."""
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            401, "no token: send `Authorization: Bearer TOKEN`", {"WWW-Authenticate": "Bearer"}
        )
    user = user_for_token(request.app.state.config.users, credentials.credentials)
    if user is None:
        _audit_failure(request)
        raise HTTPException(401, "unknown token", {"WWW-Authenticate": "Bearer"})
    return user


def need(right: str) -> Callable[..., User]:
    """A dependency: the current user, who must have `right`; 403 otherwise."""
    if not any(right in rights for rights in RIGHTS.values()):
        raise ValueError(f"no role grants the right {right!r}")

    def check(user: User = Depends(current_user)) -> User:
        if not user.may(right):
            roles = ", ".join(sorted(user.roles)) or "none"
            granted = ", ".join(sorted(r for r, rights in RIGHTS.items() if right in rights))
            raise HTTPException(
                403, f"{user.name} (roles: {roles}) may not {right}: a role with it: {granted}"
            )
        return user

    return check


def audit(request: Request, user: str, action: str, run_id: str | None, **detail: Any) -> None:
    """One row of the audit table: who did what to which run, from where."""
    client = request.client.host if request.client else ""
    request.app.state.manager.store.add_audit(user, action, run_id, {**detail, "from": client})


def _audit_failure(request: Request) -> None:
    """An unknown token is written down (where from, which path), never the token."""
    try:
        audit(request, "", "login failed", None, path=request.url.path)
    except Exception:
        pass  # the 401 matters more than this row
