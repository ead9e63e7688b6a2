"""Sealing what crosses the broker: authenticated encryption with the deployment key.

Every task and message between the controller and the workers is a pickled
Python object sealed with AES-256-GCM (authenticated encryption: one C call
each way, where Fernet's CBC and HMAC in Python cost ten times as much per
message), keyed from one shared secret per deployment (`RUNBOOK_WORKER_KEY`,
or the file named by `RUNBOOK_WORKER_KEY_FILE`). A message whose tag does not
check is refused before it is unpickled, so only a holder of the key can make
a worker do anything, and a holder of the key could already run any shell step
there. Secrets inside (secret params, values asked for by a step) are never in
clear on the broker.

A token is URL-safe base64 of: version (1 byte), the time it was sealed
(8 bytes, authenticated), a random 96-bit nonce, the ciphertext and its tag.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import secrets
import struct
import time
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

    VERSION = b"\x01"

    def __init__(self, key: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        # Any long secret becomes a 256-bit key.
        digest = hashlib.sha256(b"runbook-worker-key\0" + key.encode()).digest()
        self._aead = AESGCM(digest)

    def seal(self, obj: Any) -> str:
        header = self.VERSION + struct.pack(">Q", int(time.time()))
        nonce = os.urandom(12)
        plain = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        sealed = self._aead.encrypt(nonce, plain, header)
        return base64.urlsafe_b64encode(header + nonce + sealed).decode()

    def open(self, token: str | bytes, ttl: int | None = None) -> Any:
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(token)
        except (ValueError, TypeError):
            raise Unauthenticated("not a sealed message") from None
        header, nonce, sealed = raw[:9], raw[9:21], raw[21:]
        if len(raw) < 21 + 16 or header[:1] != self.VERSION:
            raise Unauthenticated("not a sealed message (or from another engine version)")
        try:
            plain = self._aead.decrypt(nonce, sealed, header)
        except InvalidTag:
            raise Unauthenticated(
                "not sealed with this deployment's key (RUNBOOK_WORKER_KEY differs)"
            ) from None
        (sealed_at,) = struct.unpack(">Q", header[1:])
        if ttl is not None and time.time() - sealed_at > ttl:
            raise Unauthenticated(f"expired: sealed {time.time() - sealed_at:.0f}s ago")
        return pickle.loads(plain)  # only after the tag checked: it came from a key holder
