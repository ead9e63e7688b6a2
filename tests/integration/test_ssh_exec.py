"""Commands over the ssh connection, against a real sshd (tests/fixtures/sshd.py)."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.connections.base import Command, connection_for
from engine.connections.output import OutputSpec
from engine.connections.ssh.connection import SSHConnection
from engine.errors import StepTimeout
from tests.fixtures.sshd import SSHServer

# Transport tests compare every byte: they ask for the whole output.
WHOLE = OutputSpec(limit=64 << 20)


@pytest.fixture
def conn(sshd: SSHServer) -> Iterator[SSHConnection]:
    # A short TERM-to-KILL grace: the kill tests need not wait the default 2 s.
    connection = SSHConnection(sshd.host(), kill_grace=0.3)
    yield connection
    connection.close()


def sleep_marker() -> str:
    """A `sleep` argument no other process on the machine has: pgrep finds ours."""
    return f"{random.randint(5000, 9000)}.{random.randint(10**8, 10**9)}"


def remote_pids(marker: str) -> list[str]:
    # The sshd is on this machine, so its children are visible to pgrep here.
    out = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    return out.stdout.split()


def wait_until(predicate, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_registry_builds_an_ssh_connection(sshd: SSHServer) -> None:
    connection = connection_for(sshd.host())
    assert isinstance(connection, SSHConnection)


def test_exact_rc_and_separate_streams(conn: SSHConnection) -> None:
    result = conn.run(Command(cmd="echo out; echo err >&2; printf more; exit 42"))
    assert result.rc == 42
    assert result.stdout == b"out\nmore"
    assert result.stderr == b"err\n"


def test_argv_is_quoted_exactly(conn: SSHConnection) -> None:
    argv = ["printf", "%s|", "a b", "it's", "$HOME", "*", ""]
    result = conn.run(Command(argv=argv))
    assert result.rc == 0
    assert result.stdout == b"a b|it's|$HOME|*||"


def test_stdin_env_and_cwd(conn: SSHConnection, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = conn.run(
        Command(
            cmd='read line; echo "$line/$GREETING/$(pwd)"',
            stdin=b"from stdin\n",
            env={"GREETING": "hello 'quoted' $world"},
            cwd=str(tmp_path),
        )
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.decode() == f"from stdin/hello 'quoted' $world/{tmp_path}\n"


def test_missing_cwd_fails_the_command(conn: SSHConnection) -> None:
    result = conn.run(Command(cmd="echo should-not-run", cwd="/nonexistent/dir"))
    assert result.rc != 0
    assert b"should-not-run" not in result.stdout
    assert b"/nonexistent/dir" in result.stderr


def test_binary_round_trip_through_stdin_and_stdout(conn: SSHConnection) -> None:
    # 3 MiB: more than the channel window, so stdin is written from a thread
    # while stdout is read, and every byte value is present.
    data = bytes(range(256)) * 4096 + os.urandom(2 << 20)
    result = conn.run(Command(argv=["cat"], stdin=data, output=WHOLE))
    assert result.rc == 0
    assert result.stdout == data
    assert result.stderr == b""


def test_large_stdout_and_stderr_together_do_not_deadlock(conn: SSHConnection) -> None:
    size = 12_000_000
    cmd = f"(yes out | head -c {size}) & (yes err | head -c {size} >&2); wait"
    result = conn.run(Command(cmd=cmd, output=WHOLE), timeout=60)
    assert result.rc == 0
    assert len(result.stdout) == size and len(result.stderr) == size
    assert set(result.stdout.split(b"\n")[:-1]) == {b"out"}
    assert set(result.stderr.split(b"\n")[:-1]) == {b"err"}


def test_five_hosts_concurrently(sshd: SSHServer) -> None:
    connections = [SSHConnection(h) for h in sshd.hosts()]
    try:
        with ThreadPoolExecutor(len(connections)) as pool:
            results = list(
                pool.map(
                    lambda c: c.run(
                        Command(cmd='echo "$SSH_CONNECTION"; echo $NAME', env={"NAME": c.host.name})
                    ),
                    connections,
                )
            )
    finally:
        for c in connections:
            c.close()
    for host, result in zip(sshd.hosts(), results, strict=True):
        assert result.rc == 0
        ssh_connection, name = result.stdout.decode().split("\n")[:2]
        # SSH_CONNECTION = client_ip client_port server_ip server_port
        assert ssh_connection.split()[2:] == [host.address, str(sshd.port)]
        assert name == host.name


def test_one_transport_shared_by_concurrent_first_calls(conn: SSHConnection) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: conn.run(Command(cmd='echo "$SSH_CONNECTION"')), range(8))
        )
    client_ports = {r.stdout.split()[1] for r in results}
    assert len(client_ports) == 1, "open() must connect once, whoever calls first"


def test_become_runs_through_sudo(sshd: SSHServer, conn: SSHConnection) -> None:
    result = conn.run(Command(argv=["id", "-un"], become=sshd.become_user))
    assert result.rc == 0, result.stderr
    assert result.stdout == f"{sshd.become_user}\n".encode()
    shell = conn.run(Command(cmd='echo "$(id -un) $VAR"', env={"VAR": "kept"}, become="root"))
    assert shell.stdout == b"root kept\n"


def test_pty_command_gets_a_terminal(conn: SSHConnection) -> None:
    result = conn.run(Command(cmd="tty", pty=True))
    assert result.rc == 0
    assert result.stdout.startswith(b"/dev/"), result.stdout


def test_timeout_kills_the_remote_children(conn: SSHConnection) -> None:
    marker = sleep_marker()
    with pytest.raises(StepTimeout) as caught:
        conn.run(Command(cmd=f"echo started; echo oops >&2; sleep {marker} & wait"), timeout=1)
    assert caught.value.data["stdout"] == "started\n"
    assert caught.value.data["stderr"] == "oops\n"
    assert caught.value.data["rc"] is None
    assert wait_until(lambda: not remote_pids(marker)), "the remote sleep survived the timeout"
    # The connection is still usable afterwards.
    assert conn.run(Command(cmd="echo ok")).stdout == b"ok\n"


def test_timeout_kills_a_command_run_with_become(sshd: SSHServer, conn: SSHConnection) -> None:
    marker = sleep_marker()
    command = Command(cmd=f"sleep {marker}", become=sshd.become_user)
    with pytest.raises(StepTimeout):
        conn.run(command, timeout=1)
    assert wait_until(lambda: not remote_pids(marker)), "the sudo'd sleep survived the timeout"


def test_timeout_of_a_command_ignoring_sigterm(conn: SSHConnection) -> None:
    marker = sleep_marker()
    with pytest.raises(StepTimeout):
        conn.run(Command(cmd=f"trap '' TERM; sleep {marker} & wait; sleep {marker}"), timeout=1)
    assert wait_until(lambda: not remote_pids(marker)), "SIGKILL did not follow SIGTERM"


def test_interrupt_kills_running_commands(conn: SSHConnection) -> None:
    markers = [sleep_marker(), sleep_marker()]
    results: list[object] = []

    def run(marker: str) -> None:
        results.append(conn.run(Command(cmd=f"sleep {marker} & wait")))

    threads = [threading.Thread(target=run, args=(m,)) for m in markers]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: all(remote_pids(m) for m in markers)), "commands did not start"
    conn.interrupt()
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive()
    assert len(results) == 2
    assert all(r.rc != 0 for r in results)  # type: ignore[attr-defined]
    assert wait_until(lambda: not any(remote_pids(m) for m in markers))
