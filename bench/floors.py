"""The two raw paramiko floors of bench/fanout.py, run as their own process so
their CPU and memory are measured like every other tool's.

    python bench/floors.py exec|session|subshell|prefork|separated|recorded SPEC.json

exec: per host one transport (TCP_NODELAY), one exec channel per command.
session: per host one transport and one `sh` channel; each command is written
to it followed by an end marker, and its output read up to that marker.
subshell: the same, each command in its own subshell `( ... )`: the isolation
issue 6 asks of the engine's steps (a fork on the host per step), and nothing
else (no stderr framing, no cwd/env, no timeout handling).
prefork: the subshell floor with the next command's subshell forked ahead: the
shell loops `( read line; eval "$line" )`, so the fork happens while the client
is busy, off the round trip (the fork's CPU on the host stays).
separated: the subshell floor with stdout and stderr apart, an end marker on
each stream (the recorded floor without its SQLite commits).
recorded: the subshell floor plus the two things every engine step must also
do: stdout and stderr come back apart (the step's stderr on the channel's
stderr, an end marker on each stream: one more packet per step), and the
step's start and its result are each committed to an SQLite file (WAL,
synchronous=NORMAL) before going on, as an audited, resumable run needs. No
templates, no thresholds, no console, no timeouts: the least such an engine
can cost per step over SSH.
All hosts at once, one thread each; every command's output is checked.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import sys
import tempfile
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


class Journal:
    """The least history an audited run needs: a committed row per step start and end."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(suffix=".db")
        os.close(fd)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE events (host TEXT, step INT, kind TEXT, rc INT, out TEXT)")
        self.lock = threading.Lock()

    def commit(self, *rows: tuple[str, int, str, int | None, str]) -> None:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.unlink(self.path + suffix)


JOURNAL: Journal | None = None


# The prefork shell: a subshell waits for its command line while the last one's
# result travels; 99 from `read` means the client closed the session.
PREFORK_LOOP = (
    "echo __ready__; while :; do ( IFS= read -r line || exit 99; exec </dev/null; "
    'eval "$line" ); rc=$?; [ $rc = 99 ] && exit 0; echo "__end__ $rc"; done\n'
)


def prefork_host(address: str, port: int, key: str, k: int) -> None:
    transport = connect(address, port, key)
    try:
        channel = transport.open_session()
        channel.exec_command("exec sh")
        channel.sendall(PREFORK_LOOP.encode())
        buf = b""
        # The loop must be parsed before the first command: the shell reads
        # ahead, and would take a command meant for the subshell's `read`.
        while b"__ready__\n" not in buf:
            data = channel.recv(65536)
            if not data:
                raise EOFError("session ended")
            buf += data
        buf = buf.split(b"__ready__\n", 1)[1]
        for j in range(k):
            channel.sendall(f"echo step-{j}\n".encode())
            while b"__end__ " not in buf or b"\n" not in buf[buf.index(b"__end__ ") :]:
                data = channel.recv(65536)
                if not data:
                    raise EOFError("session ended")
                buf += data
            out, _, rest = buf.partition(b"__end__ ")
            rc, _, buf = rest.partition(b"\n")
            assert rc == b"0" and out == f"step-{j}\n".encode(), out
        channel.close()
    finally:
        transport.close()


def recorded_host(address: str, port: int, key: str, k: int) -> None:
    transport = connect(address, port, key)
    try:
        channel = transport.open_session()
        channel.exec_command("exec sh 3>&2 2>/dev/null")
        out, err = b"", b""
        # One commit per step: a step's result goes in the same transaction as the
        # next step's start (both durable before that step runs).
        if JOURNAL is not None:
            JOURNAL.commit((address, 0, "started", None, ""))
        for j in range(k):
            token = secrets.token_hex(16)
            channel.sendall(
                f"( echo step-{j}\n) </dev/null 2>&3 3>&-; rc=$?; "
                f"printf '\\n%s %s\\n' {token} $rc; printf '\\n%s\\n' {token} >&3\n".encode()
            )
            out_end, err_end = f"\n{token} ".encode(), f"\n{token}\n".encode()
            while err_end not in err:
                data = channel.recv_stderr(65536)
                if not data:
                    raise EOFError("session ended")
                err += data
            while out_end not in out or b"\n" not in out[out.index(out_end) + len(out_end) :]:
                data = channel.recv(65536)
                if not data:
                    raise EOFError("session ended")
                out += data
            body, _, rest = out.partition(out_end)
            rc, _, out = rest.partition(b"\n")
            stderr, _, err = err.partition(err_end)
            assert rc == b"0" and body == f"step-{j}\n".encode() and not stderr, (body, stderr)
            if JOURNAL is not None:
                done = (address, j, "finished", int(rc), body.decode())
                more = [(address, j + 1, "started", None, "")] if j + 1 < k else []
                JOURNAL.commit(done, *more)
        channel.close()
    finally:
        transport.close()


def main() -> None:
    global JOURNAL
    kind, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        spec: dict[str, Any] = json.load(f)
    runs = {
        "exec": exec_host,
        "session": session_host,
        "subshell": lambda *a: session_host(*a, subshell=True),
        "prefork": prefork_host,
        "separated": recorded_host,  # without a JOURNAL
        "recorded": recorded_host,
    }
    if kind == "recorded":
        JOURNAL = Journal()
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
    if JOURNAL is not None:
        JOURNAL.close()
    if errors:
        print("\n".join(map(str, errors)), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
