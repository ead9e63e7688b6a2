"""Sealing what crosses the broker: authenticated encryption with the deployment key.

Every task and message between the controller and the workers is a pickled
Python object sealed with Fernet (AES-128-CBC with an HMAC-SHA256 over it), keyed
from one shared secret per deployment (`RUNBOOK_WORKER_KEY`, or the file named
by `RUNBOOK_WORKER_KEY_FILE`). A message whose HMAC does not check is refused
before it is unpickled, so only a holder of the key can make a worker do
anything, and a holder of the key could already run any shell step there.
Secrets inside (secret params, values asked for by a step) are never in clear
on the broker.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

from engine.errors import UsageError

KEY_ENV = "RUNBOOK_WORKER_KEY"
KEY_FILE_ENV = "RUNBOOK_WORKER_KEY_FILE"
MIN_KEY_LENGTH = 32


class Unauthenticated(Exception):
    """A message not sealed with this deployment's key (or too old): refused."""


def new_key() -> str:
    """A fresh deployment key: 32 random bytes, URL-safe text."""
    return secrets.token_urlsafe(32)


def load_key(environ: dict[str, str] | None = None) -> str:
    """The deployment key from the environment or its file; UsageError saying how."""
    env = dict(os.environ) if environ is None else environ
    key = env.get(KEY_ENV, "")
    if not key and env.get(KEY_FILE_ENV):
        path = Path(env[KEY_FILE_ENV]).expanduser()
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise UsageError(f"{KEY_FILE_ENV}={path}: cannot read: {exc.strerror}") from None
    if not key:
        raise UsageError(
            f"distributed runs need the deployment key: set {KEY_ENV} (or {KEY_FILE_ENV}) "
            "to the same secret on the controller and every worker; "
            "`runbook worker --new-key` prints a fresh one"
        )
    if len(key) < MIN_KEY_LENGTH:
        raise UsageError(
            f"{KEY_ENV} is too short ({len(key)} characters, at least {MIN_KEY_LENGTH}): "
            "`runbook worker --new-key` prints a fresh one"
        )
    return key


class Sealer:
    """seal(obj) → text for the broker; open(text) → obj, or Unauthenticated."""

    def __init__(self, key: str) -> None:
        from cryptography.fernet import Fernet

        # Any long secret becomes a Fernet key (32 bytes: 16 to sign, 16 to encrypt).
        digest = hashlib.sha256(b"runbook-worker-key\0" + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, obj: Any) -> str:
        return self._fernet.encrypt(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).decode()

    def open(self, token: str | bytes, ttl: int | None = None) -> Any:
        from cryptography.fernet import InvalidToken

        raw = token.encode() if isinstance(token, str) else token
        try:
            plain = self._fernet.decrypt(raw, ttl=ttl)
        except InvalidToken:
            raise Unauthenticated(
                "not sealed with this deployment's key (RUNBOOK_WORKER_KEY differs), or expired"
            ) from None
        return pickle.loads(plain)  # only after the HMAC checked: it came from a key holder
