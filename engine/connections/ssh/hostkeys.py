"""SSH host key checking: the three `host_key_policy` values and their messages.

This module imports paramiko at its top on purpose: it is only ever imported
from inside SSHConnection.open(), so the CLI still starts without paramiko.

Policies, as OpenSSH's StrictHostKeyChecking:

- ``strict`` (default): the key must already be in known_hosts.
- ``accept-new``: an unknown host's key is appended to known_hosts; a known
  host whose key CHANGED is still refused (that is what a MITM looks like).
- ``ignore``: any key is accepted, nothing is written.

Entries use OpenSSH's naming: ``addr`` on port 22, ``[addr]:port`` otherwise, so
files written by ``ssh-keyscan`` / ``ssh`` and by the engine are interchangeable.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import threading
from pathlib import Path

import paramiko

from engine.filecache import parsed

POLICIES = ("strict", "accept-new", "ignore")

# Threads of one run append to the same file; flock covers other processes.
_write_lock = threading.Lock()


class HostKeyRejected(Exception):
    """The server's key is not acceptable; the message says how to fix it."""


def known_hosts_path(configured: str | None) -> Path:
    return Path(os.path.expanduser(configured or "~/.ssh/known_hosts"))


def entry_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def unknown_key_message(address: str, port: int, key: paramiko.PKey, known_hosts: Path) -> str:
    scan = (
        f"ssh-keyscan -p {port} {shlex.quote(address)}"
        if port != 22
        else (f"ssh-keyscan {shlex.quote(address)}")
    )
    return (
        f"host key of {entry_name(address, port)} is not in {known_hosts} "
        f"(host_key_policy: strict; the server offered {key.get_name()} {key.fingerprint}). "
        f"After checking that fingerprint, add it: {scan} >> {shlex.quote(str(known_hosts))} "
        f"-- or set host_key_policy: accept-new for this host"
    )


def changed_key_message(
    address: str, port: int, offered: paramiko.PKey, expected: paramiko.PKey, known_hosts: Path
) -> str:
    name = entry_name(address, port)
    return (
        f"host key of {name} has CHANGED: {known_hosts} has {expected.get_name()} "
        f"{expected.fingerprint}, the server offered {offered.get_name()} {offered.fingerprint}. "
        f"Someone may be intercepting the connection. If the change is expected (host "
        f"reinstalled), remove the old entry with: ssh-keygen -f {shlex.quote(str(known_hosts))} "
        f"-R {shlex.quote(name)} and connect again"
    )


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for hosts that have no entry in known_hosts.

    Known hosts with a different key never reach here: paramiko raises
    BadHostKeyException itself, which the connection turns into the CHANGED
    message for every policy but `ignore` (which loads no known_hosts at all).
    """

    def __init__(self, policy: str, address: str, port: int, known_hosts: Path) -> None:
        if policy not in POLICIES:
            raise ValueError(f"host_key_policy must be one of {', '.join(POLICIES)}")
        self.policy = policy
        self.address = address
        self.port = port
        self.known_hosts = known_hosts
        self.added = False

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if self.policy == "ignore":
            return
        if self.policy == "strict":
            raise HostKeyRejected(
                unknown_key_message(self.address, self.port, key, self.known_hosts)
            )
        append_host_key(self.known_hosts, hostname, key)
        self.added = True


def load_into(
    client: paramiko.SSHClient, policy: str, known_hosts: Path, name: str | None = None
) -> None:
    """Give `client` the known keys to check against (none for `ignore`).

    With `name` (the entry_name of the target), only that host's keys are added,
    from a parse of the file shared by every connection until the file changes:
    fanning out to N hosts then parses known_hosts once, not N times.
    """
    if policy == "ignore" or not known_hosts.exists():
        return
    try:
        if name is None:
            client.load_host_keys(str(known_hosts))
            return
        target = client.get_host_keys()
        for keytype, key in (_parsed(known_hosts).lookup(name) or {}).items():
            target.add(name, keytype, key)
    except OSError as exc:
        raise HostKeyRejected(f"cannot read {known_hosts}: {exc.strerror}") from None


def _parsed(path: Path) -> paramiko.HostKeys:
    """The file's parse, shared (read-only) until it changes: see engine/filecache.py."""
    return parsed(path, paramiko.HostKeys)


def append_host_key(known_hosts: Path, name: str, key: paramiko.PKey) -> None:
    """Append `name key` to known_hosts, creating it (and ~/.ssh) private."""
    line = paramiko.hostkeys.HostKeyEntry([name], key).to_line()
    if line is None:  # paramiko gives None only for an entry without a key
        raise HostKeyRejected(f"cannot record the host key of {name}: the key is empty")
    with _write_lock:
        try:
            known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise HostKeyRejected(
                f"cannot record the new host key of {name} in {known_hosts}: {exc.strerror}"
            ) from None
        with os.fdopen(fd, "a") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            try:
                # Another process may have added the same host meanwhile.
                existing = paramiko.HostKeys(str(known_hosts)).lookup(name)
                if existing is not None and existing.get(key.get_name()) == key:
                    return
                # A file whose last line has no newline (hand-edited, `echo -n`) would
                # glue our entry onto that line's comment, where nothing reads it.
                if _ends_without_newline(known_hosts):
                    line = "\n" + line
                out.write(line)
                out.flush()
            finally:
                fcntl.flock(out, fcntl.LOCK_UN)


def _ends_without_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"
