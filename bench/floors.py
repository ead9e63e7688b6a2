"""The two raw paramiko floors of bench/fanout.py, run as their own process so
their CPU and memory are measured like every other tool's.

    python bench/floors.py exec|session|subshell SPEC.json

exec: per host one transport (TCP_NODELAY), one exec channel per command.
session: per host one transport and one `sh` channel; each command is written
to it followed by an end marker, and its output read up to that marker.
subshell: the same, each command in its own subshell `( ... )`: the isolation
issue 6 asks of the engine's steps (a fork on the host per step), and nothing
else (no stderr framing, no cwd/env, no timeout handling).
All hosts at once, one thread each; every command's output is checked.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paramiko


def connect(address: str, port: int, key: str) -> paramiko.Transport:
    sock = socket.create_connection((address, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=10)
    transport.auth_publickey("rbbench", paramiko.Ed25519Key.from_private_key_file(key))
    return transport


def exec_host(address: str, port: int, key: str, k: int) -> None:
    transport = connect(address, port, key)
    try:
        for j in range(k):
            channel = transport.open_session()
            channel.exec_command(f"echo step-{j}")
            out = channel.makefile("rb").read()
            channel.makefile_stderr("rb").read()
            assert channel.recv_exit_status() == 0 and out == f"step-{j}\n".encode(), out
            channel.close()
    finally:
        transport.close()


def session_host(address: str, port: int, key: str, k: int, subshell: bool = False) -> None:
    transport = connect(address, port, key)
    try:
        channel = transport.open_session()
        channel.exec_command("exec sh")
        buf = b""
        for j in range(k):
            marker = f"__end_{j}__"
            command = f"( echo step-{j} )" if subshell else f"echo step-{j}"
            channel.sendall(f"{command}; echo {marker} $?\n".encode())
            end = f"{marker} ".encode()
            while end not in buf or not buf[buf.index(end) :].count(b"\n"):
                data = channel.recv(65536)
                if not data:
                    raise EOFError("session ended")
                buf += data
            out, _, rest = buf.partition(end)
            rc, _, buf = rest.partition(b"\n")
            assert rc == b"0" and out == f"step-{j}\n".encode(), out
        channel.close()
    finally:
        transport.close()


def main() -> None:
    kind, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        spec: dict[str, Any] = json.load(f)
    runs = {
        "exec": exec_host,
        "session": session_host,
        "subshell": lambda *a: session_host(*a, subshell=True),
    }
    run = runs[kind]
    addresses = spec["addresses"]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(address: str) -> None:
        try:
            run(address, spec["ports"][address], spec["key"], spec["k"])
        except BaseException as exc:  # reported below, with the host
            with lock:
                errors.append(RuntimeError(f"{address}: {exc!r}"))

    with ThreadPoolExecutor(len(addresses)) as pool:
        list(pool.map(one, addresses))
    if errors:
        print("\n".join(map(str, errors)), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
