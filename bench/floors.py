"""The raw paramiko floors of bench/fanout.py, run as their own process so
their CPU and memory are measured like every other tool's.

    python bench/floors.py KIND SPEC.json

exec: per host one transport (TCP_NODELAY), one exec channel per command.
session: per host one transport and one `sh` channel; each command is written
to it followed by an end marker, and its output read up to that marker.
subshell: the same, each command in its own subshell `( ... )`: the isolation
issue 6 asks of the engine's steps (a fork on the host per step), and nothing
else (no stderr framing, no cwd/env, no timeout handling).
prefork: the subshell floor with the next command's subshell forked ahead: the
shell loops `( read line; eval "$line" )`, so the fork happens while the client
is busy, off the round trip (the fork's CPU on the host stays).
separated: the subshell floor with stdout and stderr apart (the command's stderr
on the channel's stderr, an end marker on each stream: one more packet a step).
recorded: separated, and each step's start and result committed to an SQLite
file (WAL, synchronous=NORMAL) before going on, as an audited, resumable run
needs: one commit per step (a result shares its transaction with the next
step's start), and rows that several hosts queue at once share one commit
(group commit, as the engine's event bus does).
prefork-separated, prefork-recorded: the same on the prefork loop: the least
an engine with isolated steps, separated streams and an audit trail can cost
per step over SSH (no templates, thresholds, console or timeouts).
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
                buf += _recv(channel.recv)
            out, _, rest = buf.partition(end)
            rc, _, buf = rest.partition(b"\n")
            assert rc == b"0" and out == f"step-{j}\n".encode(), out
        channel.close()
    finally:
        transport.close()


class Journal:
    """The least history an audited run needs: committed rows, group-committed.

    A thread queues its rows and waits until a commit that holds them is done;
    whichever waiting thread finds no commit in progress commits everything
    queued so far, so hosts that finish together share one transaction.
    """

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(suffix=".db")
        os.close(fd)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE events (host TEXT, step INT, kind TEXT, rc INT, out TEXT)")
        self.cv = threading.Condition()
        self.pending: list[tuple[str, int, str, int | None, str]] = []
        self.queued = 0  # rows queued so far, in all
        self.done = 0  # rows committed so far
        self.busy = False
        self.commits = 0

    def commit(self, *rows: tuple[str, int, str, int | None, str]) -> None:
        with self.cv:
            self.pending.extend(rows)
            self.queued += len(rows)
            mine = self.queued
            while self.done < mine:
                if self.busy:
                    self.cv.wait()
                    continue
                batch, self.pending, upto, self.busy = self.pending, [], self.queued, True
                self.cv.release()
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    self.conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", batch)
                    self.conn.execute("COMMIT")
                finally:
                    self.cv.acquire()
                    self.busy = False
                self.done, self.commits = upto, self.commits + 1
                self.cv.notify_all()

    def close(self) -> None:
        rows = self.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        self.conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.unlink(self.path + suffix)
        print(f"journal: {rows} rows in {self.commits} commits", file=sys.stderr)


# The prefork shell: a subshell waits for its command line while the last one's
# result travels; 99 from `read` means the client closed the session (a floor
# runs `echo` only: no command of its own returns 99). FRAME: the end markers.
PREFORK_LOOP = (
    "echo __ready__; while :; do ( IFS= read -r line || exit 99; exec </dev/null; "
    'eval "$line" ) FRAME; done\n'
)
PLAIN_FRAME = '; rc=$?; [ $rc = 99 ] && exit 0; echo "__end__ $rc"'
SEPARATED_FRAME = (
    "2>&3 3>&-; rc=$?; [ $rc = 99 ] && exit 0; "
    "printf '\\n%s %s\\n' TOKEN $rc; printf '\\n%s\\n' TOKEN >&3"
)


def prefork_host(address: str, port: int, key: str, k: int) -> None:
    transport = connect(address, port, key)
    try:
        channel = transport.open_session()
        channel.exec_command("exec sh")
        channel.sendall(PREFORK_LOOP.replace(" FRAME", PLAIN_FRAME).encode())
        buf = _ready(channel)
        for j in range(k):
            channel.sendall(f"echo step-{j}\n".encode())
            while b"__end__ " not in buf or b"\n" not in buf[buf.index(b"__end__ ") :]:
                buf += _recv(channel.recv)
            out, _, rest = buf.partition(b"__end__ ")
            rc, _, buf = rest.partition(b"\n")
            assert rc == b"0" and out == f"step-{j}\n".encode(), out
        channel.close()
    finally:
        transport.close()


def separated_host(
    address: str, port: int, key: str, k: int, journal: Journal | None, prefork: bool
) -> None:
    """Steps framed as the engine frames them: stderr apart, a marker on each stream."""
    transport = connect(address, port, key)
    try:
        channel = transport.open_session()
        channel.exec_command("exec sh 3>&2 2>/dev/null")
        # The prefork loop cannot take a new token per step (the subshell is
        # forked before the step is sent): one random token per session.
        token = secrets.token_hex(16)
        out, err = b"", b""
        if prefork:
            frame = " " + SEPARATED_FRAME.replace("TOKEN", token)
            channel.sendall(PREFORK_LOOP.replace(" FRAME", frame).encode())
            out = _ready(channel)
        if journal is not None:
            journal.commit((address, 0, "started", None, ""))
        for j in range(k):
            if prefork:
                line = f"echo step-{j}\n"
            else:
                token = secrets.token_hex(16)
                frame = SEPARATED_FRAME.replace("TOKEN", token)
                line = f"( echo step-{j}\n) </dev/null {frame}\n"
            channel.sendall(line.encode())
            out_end, err_end = f"\n{token} ".encode(), f"\n{token}\n".encode()
            while err_end not in err:
                err += _recv(channel.recv_stderr)
            while out_end not in out or b"\n" not in out[out.index(out_end) + len(out_end) :]:
                out += _recv(channel.recv)
            body, _, rest = out.partition(out_end)
            rc, _, out = rest.partition(b"\n")
            stderr, _, err = err.partition(err_end)
            assert rc == b"0" and body == f"step-{j}\n".encode() and not stderr, (body, stderr)
            if journal is not None:
                done = (address, j, "finished", int(rc), body.decode())
                more = [(address, j + 1, "started", None, "")] if j + 1 < k else []
                journal.commit(done, *more)
        channel.close()
    finally:
        transport.close()


def _ready(channel: paramiko.Channel) -> bytes:
    """Wait until the prefork loop runs; what came after its banner.

    The loop must be parsed before the first command is sent: the shell reads
    ahead, and would take a command meant for the subshell's `read`.
    """
    buf = b""
    while b"__ready__\n" not in buf:
        buf += _recv(channel.recv)
    return buf.split(b"__ready__\n", 1)[1]


def _recv(read: Any) -> bytes:
    data = read(65536)
    if not data:
        raise EOFError("session ended")
    return data


def main() -> None:
    kind, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        spec: dict[str, Any] = json.load(f)
    journal = Journal() if kind.endswith("recorded") else None

    def framed(prefork: bool) -> Any:
        return lambda *a: separated_host(*a, journal=journal, prefork=prefork)

    runs: dict[str, Any] = {
        "exec": exec_host,
        "session": session_host,
        "subshell": lambda *a: session_host(*a, subshell=True),
        "prefork": prefork_host,
        "separated": framed(prefork=False),
        "recorded": framed(prefork=False),
        "prefork-separated": framed(prefork=True),
        "prefork-recorded": framed(prefork=True),
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
    if journal is not None:
        journal.close()
    if errors:
        print("\n".join(map(str, errors)), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
