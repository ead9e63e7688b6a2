"""A network zone made of a Linux network namespace, for the distributed tests.

`zone_namespace()` makes a namespace `rbz-<hex>` joined to the root namespace
by a veth pair (root side 10.213.X.1/30, inside 10.213.X.2/30), and gives the
zone's host an address, 10.214.X.1/32, that exists only on the namespace's
loopback. The root namespace gets an `unreachable` route for that address, so
a connect from it fails at once: without it the connect would go to the
default gateway, and some (a sandbox's transparent proxy) accept any TCP
connection. A broker on 10.213.X.1 is reachable from both sides.

Everything is removed on exit. Needs root and `ip netns add` (an unprivileged
container cannot): without them the caller's test is skipped with the reason.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.sshd import SSHD, keygen
from tests.helpers import stop_process

LOCK = "/tmp/runbook-tests-netns.lock"


@dataclass(frozen=True)
class Namespace:
    name: str
    host_veth: str
    ns_veth: str
    octet: int

    @property
    def outside(self) -> str:
        """The root side of the veth: where the broker listens."""
        return f"10.213.{self.octet}.1"

    @property
    def inside(self) -> str:
        return f"10.213.{self.octet}.2"

    @property
    def hidden(self) -> str:
        """The zone host's address: only on the namespace's loopback."""
        return f"10.214.{self.octet}.1"

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _must(*args: str) -> None:
    done = _ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_octet() -> int:
    """An X whose 10.213.X.0/30 and 10.214.X.1 no address or route uses yet."""
    used = (
        _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all").stdout
    )
    for octet in random.sample(range(1, 255), 254):
        if f"10.213.{octet}." not in used and f"10.214.{octet}." not in used:
            return octet
    raise RuntimeError("no free 10.213.X.0/30 subnet")


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed")


@contextmanager
def zone_namespace() -> Iterator[Namespace]:
    _skip_unless_possible()
    tag = uuid.uuid4().hex[:8]
    ns = Namespace(f"rbz-{tag}", f"rbz{tag}h", f"rbz{tag}n", 0)
    added = _ip("netns", "add", ns.name)
    if added.returncode != 0:
        pytest.skip(f"`ip netns add` fails here (unprivileged container?): {added.stderr.strip()}")
    route = ""
    try:
        # Locked: two tests must not both find the same X free.
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ns = Namespace(ns.name, ns.host_veth, ns.ns_veth, _free_octet())
            _must("link", "add", ns.host_veth, "type", "veth", "peer", "name", ns.ns_veth)
            _must("link", "set", ns.ns_veth, "netns", ns.name)
            _must("addr", "add", f"{ns.outside}/30", "dev", ns.host_veth)
            _must("link", "set", ns.host_veth, "up")
            inside = ["-n", ns.name]
            _must(*inside, "addr", "add", f"{ns.inside}/30", "dev", ns.ns_veth)
            _must(*inside, "link", "set", ns.ns_veth, "up")
            _must(*inside, "link", "set", "lo", "up")
            _must(*inside, "addr", "add", f"{ns.hidden}/32", "dev", "lo")
            _must("route", "add", "unreachable", f"{ns.hidden}/32")
            route = f"{ns.hidden}/32"
        yield ns
    finally:
        if route:
            _ip("route", "del", "unreachable", route)
        _ip("link", "del", ns.host_veth)  # gone with the namespace too, unless never moved
        _ip("netns", "del", ns.name)


@dataclass
class Broker:
    url: str
    process: subprocess.Popen[bytes]


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_on(address: str, workdir: Path) -> Iterator[Broker]:
    """A throwaway redis-server on `address` only (no persistence)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port(address)
    argv = [
        binary, "--bind", address, "--port", str(port), "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--protected-mode", "no", "--dir", str(workdir),
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((address, port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {address}:{port}")
            time.sleep(0.05)
        yield Broker(f"redis://{address}:{port}/0", process)
    finally:
        stop_process(process, timeout=5)


@dataclass
class InsideSSHD:
    address: str
    port: int
    client_key: Path
    known_hosts: Path
    log: Path
    process: subprocess.Popen[bytes]


# Run inside the namespace: read the banner, as proof sshd listens there.
PROBE = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1) as s:
    print(s.recv(8).decode())
"""


@contextmanager
def sshd_inside(ns: Namespace, workdir: Path, port: int = 22) -> Iterator[InsideSSHD]:
    """sshd in `ns` on its hidden address; root logs in with a fresh key.

    The suite's start_sshd binds and probes from this process's namespace,
    where the hidden address does not exist, so the config is written here."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    host_key = workdir / "host_ed25519_key"
    host_public = keygen(host_key, "netns-host")
    client_key = workdir / "client_ed25519"
    authorized = workdir / "authorized_keys"
    authorized.write_text(keygen(client_key, "netns-client") + "\n")
    known_hosts = workdir / "known_hosts"
    # OpenSSH's known_hosts names port 22 by the bare address, others as [addr]:port.
    entry = ns.hidden if port == 22 else f"[{ns.hidden}]:{port}"
    known_hosts.write_text(f"{entry} {host_public}\n")
    known_hosts.chmod(0o600)
    log = workdir / "sshd.log"
    config = workdir / "sshd_config"
    config.write_text(
        f"""ListenAddress {ns.hidden}:{port}
HostKey {host_key}
PidFile {workdir / "sshd.pid"}
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel VERBOSE
"""
    )
    argv = ns.command(SSHD, "-D", "-f", str(config), "-E", str(log))
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        probe = ns.command(sys.executable, "-c", PROBE, ns.hidden, str(port))
        deadline = time.monotonic() + 10
        while subprocess.run(probe, capture_output=True, text=True).stdout[:4] != "SSH-":
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode() if process.stderr else ""
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"sshd in {ns.name} did not start: {err}\n{text}")
            time.sleep(0.05)
        yield InsideSSHD(ns.hidden, port, client_key, known_hosts, log, process)
    finally:
        stop_process(process, timeout=5)
