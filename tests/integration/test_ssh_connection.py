"""Connecting over SSH, against the real sshd of tests/fixtures/sshd.py: host-key
policies, jumps, passwords, SFTP streams, tunnels to the local PostgreSQL and
Redis (and to small TCP servers of the test's own, for what a tunnel must carry
exactly), and unreachable hosts."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.connections.base import Command
from engine.connections.ssh.connection import SSHConnection
from engine.errors import HostUnreachable, StepError
from engine.inventory.host import Host
from tests.fixtures.sshd import SSHServer, keygen


@pytest.fixture
def conn(sshd: SSHServer) -> Iterator[SSHConnection]:
    connection = SSHConnection(sshd.host())
    yield connection
    connection.close()


def connect(host: Host, **kw) -> SSHConnection:  # type: ignore[no-untyped-def]
    connection = SSHConnection(host, **kw)
    try:
        assert connection.run(Command(cmd="echo up")).stdout == b"up\n"
    except BaseException:
        connection.close()
        raise
    return connection


# ---------------------------------------------------------------- host keys


def test_strict_refuses_an_unknown_host_key_and_says_how_to_fix_it(
    sshd: SSHServer, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = sshd.host(name="db1", known_hosts=str(empty))
    with pytest.raises(HostUnreachable) as info:
        connect(host)
    message = str(info.value)
    assert "db1" in message
    assert f"[{sshd.address}]:{sshd.port}" in message  # the entry to add
    assert "known_hosts" in message and "accept-new" in message
    assert empty.read_text() == ""  # strict never writes


def _other_key_known_hosts(sshd: SSHServer, tmp_path: Path) -> Path:
    other = keygen(tmp_path / "impostor", "impostor")
    path = tmp_path / "known_hosts"
    path.write_text(f"[{sshd.address}]:{sshd.port} {other}\n")
    return path


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_a_changed_host_key_is_refused_by_strict_and_accept_new(
    sshd: SSHServer, tmp_path: Path, policy: str
) -> None:
    known = _other_key_known_hosts(sshd, tmp_path)
    before = known.read_text()
    host = sshd.host(name="db1", known_hosts=str(known), host_key_policy=policy)
    with pytest.raises(HostUnreachable) as info:
        connect(host)
    assert "changed" in str(info.value).lower()
    assert known.read_text() == before


def test_accept_new_records_an_unknown_key_and_then_trusts_only_it(
    sshd: SSHServer, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    host = sshd.host(known_hosts=str(known), host_key_policy="accept-new")
    connect(host).close()
    lines = known.read_text().splitlines()
    assert len(lines) == 1
    entry, key_type, key = lines[0].split()
    assert entry == f"[{sshd.address}]:{sshd.port}"
    assert f"{key_type} {key}" == " ".join(sshd.host_public_key.split()[:2])
    # The recorded key is now checked strictly: a second connection still works...
    connect(sshd.host(known_hosts=str(known), host_key_policy="strict")).close()


def test_ignore_connects_whatever_the_key(sshd: SSHServer, tmp_path: Path) -> None:
    known = _other_key_known_hosts(sshd, tmp_path)
    connect(sshd.host(known_hosts=str(known), host_key_policy="ignore")).close()
    assert known.read_text().count("\n") == 1  # ignore never writes either


def test_accept_new_appends_after_a_last_line_without_newline(
    sshd: SSHServer, tmp_path: Path
) -> None:
    # A hand-edited file may end without a newline; the new entry must not be
    # glued onto that line (where nothing would read it: every run would add it again).
    other = keygen(tmp_path / "other", "other-host")
    known = tmp_path / "known_hosts"
    known.write_text(f"[10.9.9.9]:2222 {other}")
    connect(sshd.host(known_hosts=str(known), host_key_policy="accept-new")).close()
    lines = known.read_text().splitlines()
    assert lines[0] == f"[10.9.9.9]:2222 {other}"
    assert lines[1].startswith(f"[{sshd.address}]:{sshd.port} ssh-ed25519 ")
    connect(sshd.host(known_hosts=str(known), host_key_policy="strict")).close()


def test_hashed_known_hosts_entries_are_checked(sshd: SSHServer, tmp_path: Path) -> None:
    # OpenSSH's HashKnownHosts writes |1|salt|hash names; strict must read them.
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert sshd.address not in known.read_text()
    connect(sshd.host(known_hosts=str(known))).close()
    (tmp_path / "changed").mkdir()
    impostor = _other_key_known_hosts(sshd, tmp_path / "changed")
    subprocess.run(["ssh-keygen", "-H", "-f", str(impostor)], check=True, capture_output=True)
    with pytest.raises(HostUnreachable, match="CHANGED"):
        connect(sshd.host(known_hosts=str(impostor)))


# ---------------------------------------------------------------- jump hosts


def _direct_tcpip_count(server: SSHServer, target: str) -> int:
    """Forwarding requests the jump's sshd logged (DEBUG1) towards `target`."""
    lines = server.log_text().splitlines()
    return sum(
        1 for ln in lines if "server_request_direct_tcpip" in ln and f"target {target} " in ln
    )


def test_jump_by_inventory_name(sshd: SSHServer, sshd_jump: SSHServer) -> None:
    bastion = sshd.host(name="bastion")
    target = sshd_jump.host(name="inner", jump="bastion")
    before = _direct_tcpip_count(sshd, sshd_jump.address)
    connection = connect(target, resolve_host=lambda name: {"bastion": bastion}[name])
    try:
        out = connection.run(Command(cmd='echo "$SSH_CONNECTION"')).stdout.decode().split()
    finally:
        connection.close()
    # The target saw the connection arrive from the jump host's side of loopback.
    assert out[2:] == [sshd_jump.address, str(sshd_jump.port)]
    assert _direct_tcpip_count(sshd, sshd_jump.address) > before


def test_jump_by_user_at_address_port(sshd: SSHServer, sshd_jump: SSHServer) -> None:
    target = sshd_jump.host(name="inner", jump=f"root@{sshd.address}:{sshd.port}")
    before = _direct_tcpip_count(sshd, sshd_jump.address)
    connect(target).close()
    assert _direct_tcpip_count(sshd, sshd_jump.address) > before


def test_unreachable_jump_names_the_jump(sshd_jump: SSHServer) -> None:
    port = _closed_port()
    target = sshd_jump.host(name="inner", jump=f"root@127.0.0.1:{port}", connect_timeout=2)
    with pytest.raises(HostUnreachable) as info:
        connect(target)
    assert "inner" in str(info.value) and "via jump host" in str(info.value)


def test_a_jump_that_may_not_forward_fails_at_the_jump(
    sshd: SSHServer, sshd_jump: SSHServer
) -> None:
    # The jump's sshd forbids forwarding to the password user: only a connection
    # really made through the jump can fail this way, and the error says where.
    bastion = sshd.host(
        name="bastion", user=sshd.password_user, key_file=None, password=sshd.password
    )
    target = sshd_jump.host(name="inner", jump="bastion")
    with pytest.raises(HostUnreachable) as info:
        connect(target, resolve_host=lambda name: {"bastion": bastion}[name])
    message = str(info.value)
    assert "inner" in message and "bastion" in message
    assert f"{sshd_jump.address}:{sshd_jump.port}" in message
    assert "prohibited" in message.lower()
    assert sshd.password not in message


# ---------------------------------------------------------------- passwords


def test_password_from_a_secret(sshd: SSHServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_TEST_SSH_PASSWORD", sshd.password)
    from engine.redaction import Redactor
    from engine.secrets import Secrets

    redactor = Redactor()
    host = sshd.host(
        user=sshd.password_user, key_file=None, password="{{ secret('RB_TEST_SSH_PASSWORD') }}"
    )
    connection = connect(host, secrets=Secrets(redactor))
    try:
        assert connection.run(Command(cmd="id -un")).stdout.decode().strip() == sshd.password_user
    finally:
        connection.close()
    assert redactor.text(f"pw={sshd.password}") == "pw=***"


def test_wrong_password_is_refused_without_showing_it(sshd: SSHServer) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    host = sshd.host(user=sshd.password_user, key_file=None, password=wrong)
    with pytest.raises(HostUnreachable) as info:
        connect(host)
    message = str(info.value)
    assert "authentication failed" in message and sshd.password_user in message
    assert wrong not in message


# ---------------------------------------------------------------- SFTP


def test_put_and_get_of_50_mb_keep_every_byte(conn: SSHConnection, tmp_path: Path) -> None:
    data = os.urandom(50 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    remote = tmp_path / "remote.bin"
    assert conn.put(io.BytesIO(data), str(remote), mode=0o600) == len(data)
    assert (remote.stat().st_mode & 0o777) == 0o600
    # The remote side (sha256sum on the host) agrees...
    out = conn.run(Command(argv=["sha256sum", str(remote)])).stdout.decode()
    assert out.split()[0] == digest
    # ...and so does the stream read back, in chunks.
    h, size = hashlib.sha256(), 0
    with conn.get(str(remote)) as stream:
        while chunk := stream.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    assert size == len(data) and h.hexdigest() == digest


def test_get_of_a_missing_file_is_a_clear_error(conn: SSHConnection, tmp_path: Path) -> None:
    missing = tmp_path / "nope.bin"
    with pytest.raises(StepError) as info, conn.get(str(missing)) as stream:
        stream.read()
    assert str(missing) in str(info.value) and "No such file" in str(info.value)


# ---------------------------------------------------------------- tunnels


def test_tunnel_to_the_hosts_redis(conn: SSHConnection) -> None:
    import redis

    key = f"rbtest:tunnel:{uuid.uuid4().hex}"
    with conn.tunnel("127.0.0.1", 6379) as (address, port):
        client = redis.Redis(host=address, port=port, socket_timeout=5)
        try:
            assert client.ping() is True
            client.set(key, "through ssh")
            assert client.get(key) == b"through ssh"
            client.delete(key)
        finally:
            client.close()
    # Closed with the block: nothing listens on the local end any more.
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=1).close()


def test_tunnel_to_the_hosts_postgres(conn: SSHConnection) -> None:
    import psycopg

    with conn.tunnel("127.0.0.1", 5432) as (address, port):
        dsn = f"postgresql://postgres@{address}:{port}/postgres"
        with psycopg.connect(dsn, connect_timeout=5) as pg:
            assert pg.execute("select 41 + 1").fetchone() == (42,)


def test_a_tunnel_that_cannot_reach_its_target_says_why_in_the_steps_error(
    conn: SSHConnection,
) -> None:
    from engine.errors import ServiceError
    from engine.steps.base import get_step_type
    from tests.fixtures.sshd import free_port
    from tests.helpers import step_context

    closed = free_port("127.0.0.1")  # nothing listens there, as seen from the host
    sql = get_step_type("sql")
    spec = sql.Spec.model_validate(
        {"dsn": f"postgresql://postgres@127.0.0.1:{closed}/postgres", "query": "SELECT 1",
         "tunnel": True}
    )  # fmt: skip
    with pytest.raises(ServiceError) as info:
        sql.run(spec, step_context("db", timeout=10, get_connection=lambda: conn))
    message = str(info.value)
    assert f"tunnel via {conn.host.name}: cannot reach 127.0.0.1:{closed}" in message, message


def _serve_once(handler) -> int:  # type: ignore[no-untyped-def]
    """A one-connection TCP server on 127.0.0.1 (the SSH host's loopback too)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)

    def serve() -> None:
        with listener:
            peer, _ = listener.accept()
            with peer:
                try:
                    handler(peer)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def _echo(peer: socket.socket) -> None:
    while data := peer.recv(1 << 16):
        peer.sendall(data)
    peer.shutdown(socket.SHUT_WR)


def test_tunnel_passes_a_half_close_on(conn: SSHConnection) -> None:
    # The client sends everything, then shuts its write side (as `nc -N` or an
    # HTTP/1.0 client does): the answer still in flight must come back whole.
    data = os.urandom(4 << 20)
    with (
        conn.tunnel("127.0.0.1", _serve_once(_echo)) as address,
        socket.create_connection(address, timeout=20) as client,
    ):
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        back = bytearray()
        while chunk := client.recv(1 << 20):
            back += chunk
    assert len(back) == len(data) and hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


def test_tunnel_carries_both_directions_at_once(conn: SSHConnection) -> None:
    # The server writes 16 MiB before it reads anything while the client uploads
    # 16 MiB: a forwarder that blocks on one direction starves the other (deadlock).
    size = 16 << 20
    down, up = os.urandom(size), os.urandom(size)

    def talker(peer: socket.socket) -> None:
        peer.sendall(down)
        h, n = hashlib.sha256(), 0
        while n < size and (chunk := peer.recv(1 << 16)):
            h.update(chunk)
            n += len(chunk)
        peer.sendall(h.digest())

    with (
        conn.tunnel("127.0.0.1", _serve_once(talker)) as address,
        socket.create_connection(address, timeout=20) as client,
    ):
        threading.Thread(target=client.sendall, args=(up,), daemon=True).start()
        got = bytearray()
        while len(got) < size + 32 and (chunk := client.recv(1 << 20)):
            got += chunk
    assert hashlib.sha256(got[:size]).digest() == hashlib.sha256(down).digest()
    assert bytes(got[size:]) == hashlib.sha256(up).digest()


def test_tunnel_to_a_closed_port_closes_that_client_only(conn: SSHConnection) -> None:
    with (
        conn.tunnel("127.0.0.1", _closed_port()) as address,
        socket.create_connection(address, timeout=10) as client,
    ):
        assert client.recv(10) == b""  # the far end refused: EOF, not a hang
    # The transport is unharmed.
    assert conn.run(Command(cmd="echo still")).stdout == b"still\n"


# ---------------------------------------------------------------- unreachable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_port_is_unreachable_naming_the_host(sshd: SSHServer) -> None:
    host = sshd.host(name="ghost", port=_closed_port(), connect_timeout=2)
    with pytest.raises(HostUnreachable) as info:
        connect(host)
    assert "ghost" in str(info.value)
    assert "connection refused" in str(info.value)


def test_a_port_that_never_speaks_ssh_is_unreachable_after_connect_timeout(
    sshd: SSHServer,
) -> None:
    # TCP accepts (a firewall, a wrong service) but no banner comes: the message
    # says so, not paramiko's "No existing session". Which of paramiko's two 1 s
    # timers fires first varies, hence either wording.
    with socket.create_server(("127.0.0.1", 0)) as mute:
        port = mute.getsockname()[1]
        host = sshd.host(name="mute", address="127.0.0.1", port=port, connect_timeout=1)
        with pytest.raises(HostUnreachable) as info:
            connect(host)
    message = str(info.value)
    assert "mute" in message and f"127.0.0.1:{port}" in message
    assert any(
        cause in message
        for cause in ("no SSH handshake within 1s (connect_timeout)", "SSH protocol banner")
    ), message


def test_a_port_speaking_another_protocol_is_unreachable(sshd: SSHServer) -> None:
    def http(peer: socket.socket) -> None:
        peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    host = sshd.host(name="web", address="127.0.0.1", port=_serve_once(http), connect_timeout=2)
    with pytest.raises(HostUnreachable) as info:
        connect(host)
    assert "web" in str(info.value) and "SSH protocol banner" in str(info.value)


def test_missing_key_file_is_unreachable_with_the_path(sshd: SSHServer, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_key"
    with pytest.raises(HostUnreachable) as info:
        connect(sshd.host(key_file=str(missing)))
    assert str(missing) in str(info.value)


def test_an_aead_cipher_is_negotiated_first(conn: SSHConnection) -> None:
    # paramiko's default (AES-CTR + HMAC) checks every packet's MAC in Python.
    transport = conn._transport()
    assert transport.remote_cipher == "aes128-gcm@openssh.com"
    assert transport.local_cipher == "aes128-gcm@openssh.com"
    assert conn.run(Command(cmd="echo sealed")).stdout == b"sealed\n"
