"""The paramiko pieces every SSH connection is made of, tuned once here.

paramiko is imported inside the functions: importing this module costs nothing,
so `runbook --help` and local-only runs never load it.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko

_AEAD = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def make_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """A transport that asks for AES-GCM first (OpenSSH has it since 6.2).

    paramiko's own order starts with AES-CTR and HMAC, whose check it does in
    Python byte by byte on every packet; an AEAD cipher authenticates inside
    OpenSSL. Measured: ~8% less CPU per step. Servers without GCM get CTR, as before.
    """
    import paramiko

    _silence_paramiko()

    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = _AEAD + tuple(c for c in options.ciphers if c not in _AEAD)
    return transport


def _silence_paramiko() -> None:
    """paramiko logs its transport thread's failures, with tracebacks (a host that
    accepts TCP but never sends a banner); with no logging configured Python
    prints them on stderr. The engine reports each failure itself, as the host's
    HostUnreachable reason, so paramiko's log goes nowhere, unless RUNBOOK_DEBUG."""
    logger = logging.getLogger("paramiko")
    if os.environ.get("RUNBOOK_DEBUG") or logger.handlers:
        return
    logger.addHandler(logging.NullHandler())


def cached_key(path: str) -> Any:
    """The private key at `path`, parsed once per file version for every host
    that uses it (engine/filecache.py); None when it cannot be loaded without
    help (encrypted, odd format), so paramiko's own key_filename path reports
    the problem."""
    import paramiko

    from engine.filecache import parsed

    try:
        return parsed(path, paramiko.PKey.from_path)
    except Exception:  # OSError, PasswordRequiredException, SSHException, ValueError...
        return None
