"""The persistent shell session (engine/connections/ssh/session.py) against the
real sshd: steps stay isolated, outputs exact, timeouts kill, and a broken
session is replaced. tests/integration/test_ssh_exec.py runs through the
session too (for every command without stdin or a pty)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from engine.connections.base import Command
from engine.connections.output import OutputSpec
from engine.connections.ssh.connection import SSHConnection
from engine.errors import StepError, StepTimeout
from tests.fixtures.sshd import CSH_USER, SSHServer


@pytest.fixture
def conn(sshd: SSHServer) -> Iterator[SSHConnection]:
    # A short TERM-to-KILL grace: the kill tests need not wait the default 2 s.
    connection = SSHConnection(sshd.host(), kill_grace=0.3)
    assert connection.use_session
    yield connection
    connection.close()


def run(conn: SSHConnection, cmd: str, **kw) -> tuple[int, bytes, bytes]:  # type: ignore[no-untyped-def]
    timeout = kw.pop("timeout", 30)
    result = conn.run(Command(cmd=cmd, **kw), timeout=timeout)
    return result.rc, result.stdout, result.stderr


def session_pid(conn: SSHConnection) -> int:
    assert conn._session is not None
    return conn._session.shell_pid


def marker() -> str:
    return f"{random.randint(5000, 9000)}.{random.randint(10**8, 10**9)}"


def pids_of(sleep_arg: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"sleep {sleep_arg}"], capture_output=True, text=True)
    return out.stdout.split()


def gone(sleep_arg: str, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while pids_of(sleep_arg) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pids_of(sleep_arg)


def test_steps_share_one_shell(conn: SSHConnection) -> None:
    parents = {run(conn, "echo $PPID")[1] for _ in range(5)}
    assert len(parents) == 1  # every step is a child of the same session shell
    assert int(parents.pop()) == session_pid(conn)


def test_exit_codes_and_streams_are_exact(conn: SSHConnection) -> None:
    assert run(conn, "printf out; printf err >&2; exit 7") == (7, b"out", b"err")
    assert run(conn, "true") == (0, b"", b"")
    assert run(conn, "printf 'a\\n\\n'; printf '\\n' >&2") == (0, b"a\n\n", b"\n")
    assert run(conn, "kill -9 $$")[0] == 128 + 9


def test_binary_output_is_byte_exact(conn: SSHConnection, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(300_000) + b"\n" + b"\x00" * 10  # ends without a newline
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    rc, out, err = run(conn, f"cat {blob}; cat {blob} >&2")
    assert rc == 0 and out == data and err == data


def test_huge_output_on_both_streams(conn: SSHConnection) -> None:
    size = 8_000_000
    cmd = f"head -c {size} /dev/zero; head -c {size} /dev/zero >&2"
    rc, out, err = run(conn, cmd, output=OutputSpec(limit=2 * size))
    assert rc == 0 and len(out) == size and len(err) == size


def test_env_and_cwd_do_not_leak_between_steps(conn: SSHConnection, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = run(conn, 'echo "$RB_X"; pwd', env={"RB_X": "one"}, cwd=str(tmp_path))
    assert rc == 0
    assert out.decode().split() == ["one", str(tmp_path)]
    # What the command itself changes stays in its own subshell too.
    run(conn, "export RB_Y=leak; cd /tmp; umask 077")
    _, out, _ = run(conn, 'echo "${RB_X:-unset} ${RB_Y:-unset}"; pwd; umask')
    words = out.decode().split()
    assert words[:2] == ["unset", "unset"]
    assert words[2] != "/tmp" and words[3] != "0077"


def test_a_command_reading_stdin_gets_eof_not_the_session(conn: SSHConnection) -> None:
    assert run(conn, "cat; echo after") == (0, b"after\n", b"")
    assert run(conn, "echo still fine") == (0, b"still fine\n", b"")


def test_stdin_steps_go_through_exec(conn: SSHConnection) -> None:
    rc, out, _ = run(conn, "tr a-z A-Z; echo $PPID >&2", stdin=b"hello")
    assert (rc, out) == (0, b"HELLO")


def test_timeout_kills_the_step_and_the_session_goes_on(conn: SSHConnection) -> None:
    first = run(conn, "true") and session_pid(conn)
    arg = marker()
    with pytest.raises(StepTimeout) as info:
        run(conn, f"echo started; sleep {arg} & sleep {arg}; echo never", timeout=1)
    assert info.value.data["stdout"] == "started\n"
    assert gone(arg), "the step's processes survived its timeout"
    assert run(conn, "echo next") == (0, b"next\n", b"")
    assert session_pid(conn) == first


def test_timeout_of_a_step_ignoring_term(conn: SSHConnection) -> None:
    arg = marker()
    with pytest.raises(StepTimeout):
        run(conn, f"trap '' TERM; sleep {arg}", timeout=0.5)
    assert gone(arg)
    assert run(conn, "echo ok")[1] == b"ok\n"


def test_become_in_the_session(sshd: SSHServer, conn: SSHConnection) -> None:
    rc, out, _ = run(conn, "id -un; echo $PPID", become=sshd.become_user)
    name, _ppid = out.decode().split()
    assert rc == 0 and name == sshd.become_user


def test_session_killed_between_steps_is_replaced(conn: SSHConnection) -> None:
    run(conn, "true")
    old = session_pid(conn)
    os.kill(old, signal.SIGKILL)  # sshd runs on this machine
    time.sleep(0.2)
    assert run(conn, "echo fine") == (0, b"fine\n", b"")
    assert session_pid(conn) != old


def test_session_killed_during_a_step_fails_only_that_step(conn: SSHConnection) -> None:
    run(conn, "true")
    old = session_pid(conn)
    arg = marker()
    threading.Timer(0.5, os.kill, (old, signal.SIGKILL)).start()
    with pytest.raises(StepError) as info:
        run(conn, f"sleep {arg}", timeout=20)
    assert "session shell ended" in str(info.value) and "not retried" in str(info.value)
    subprocess.run(["pkill", "-f", f"sleep {arg}"])
    assert run(conn, "echo next") == (0, b"next\n", b"")
    assert session_pid(conn) != old


def test_interrupt_kills_the_running_step(conn: SSHConnection) -> None:
    arg = marker()

    def interrupt_once_running() -> None:  # not before: there would be nothing to kill
        deadline = time.monotonic() + 10
        while not pids_of(arg) and time.monotonic() < deadline:
            time.sleep(0.02)
        conn.interrupt()

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    rc, _, _ = run(conn, f"sleep {arg}", timeout=20)
    assert rc == 128 + signal.SIGTERM
    assert gone(arg)


def test_exec_per_step_when_switched_off(sshd: SSHServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_SESSION", "0")
    connection = SSHConnection(sshd.host())
    try:
        parent = connection.run(Command(cmd="ps -o comm= -p $PPID")).stdout.decode().strip()
    finally:
        connection.close()
    assert parent.startswith("sshd")  # a login shell of its own, straight under sshd
    assert connection._session is None


def test_with_the_session_a_step_runs_under_the_session_shell(conn: SSHConnection) -> None:
    parent = run(conn, "ps -o comm= -p $PPID")[1].decode().strip()
    assert parent == "sh"


def test_file_descriptors_above_1023(sshd: SSHServer) -> None:
    """A fan-out to ~1,000 hosts holds more than 1,024 fds: select() refuses such
    fds outright ("filedescriptor out of range"), so neither path may use it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1300, hard), hard))
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    connection = SSHConnection(sshd.host())
    try:
        session = connection.run(Command(cmd="echo via-session"), timeout=30)
        exec_path = connection.run(Command(cmd="cat", stdin=b"via-exec"), timeout=30)
    finally:
        connection.close()
        for fd in held:
            os.close(fd)
    assert (session.rc, session.stdout) == (0, b"via-session\n")
    assert (exec_path.rc, exec_path.stdout) == (0, b"via-exec")


def test_become_where_sudo_wants_a_password_fails_at_once(sshd: SSHServer) -> None:
    # The password user has no NOPASSWD rule: `sudo -n` refuses instead of
    # prompting, so the step fails with sudo's reason and nothing waits for input.
    # With a pty, a sudo without -n would prompt there and hang until the timeout.
    connection = SSHConnection(
        sshd.host(user=sshd.password_user, key_file=None, password=sshd.password)
    )
    try:
        in_session = connection.run(Command(cmd="id -un", become="root"), timeout=20)
        assert connection._session is not None  # it ran in the session shell
        by_exec = connection.run(Command(cmd="cat", stdin=b"x", become="root"), timeout=20)
        on_a_pty = connection.run(Command(cmd="id -un", become="root", pty=True), timeout=20)
    finally:
        connection.close()
    for result in (in_session, by_exec, on_a_pty):
        output = result.stdout + result.stderr  # a pty merges the two streams
        assert result.rc == 1 and b"a password is required" in output
        assert b"terminal is required" not in output and b"root" not in result.stdout


def test_multi_line_commands_arrive_exactly(conn: SSHConnection) -> None:
    # A block-scalar command (YAML `|`) goes through the session's framing as
    # it is: blank lines, backslashes, leading and trailing spaces, quotes, a CR,
    # a here-document; its exit status whatever it is.
    cmd = (
        "printf '%s|' 'a\\\\b'\n"
        "\n"
        "  printf '[%s]' '  padded  '   \n"
        "cat <<'EOF'\n"
        "end-of-doc\n"
        "it's \\$HOME \\\\ done\r\n"
        "EOF\n"
        "exit 99"
    )
    rc, out, err = run(conn, cmd)
    assert (rc, err) == (99, b"")
    assert out == (b"a\\\\b|[  padded  ]end-of-doc\nit's \\$HOME \\\\ done\r\n")
    assert run(conn, "echo after") == (0, b"after\n", b"")


def test_a_csh_login_shell_runs_steps_exactly(sshd: SSHServer) -> None:
    """tcsh parses the line the engine sends before /bin/sh runs the step:
    multi-line commands, stdin and env arrive as they would under a POSIX shell."""
    connection = SSHConnection(sshd.host(user=CSH_USER), kill_grace=0.3)
    try:
        cmd = "a=1\nif [ $a = 1 ]; then\n  echo \"multi $RB_V\"\nfi\nprintf 'err' >&2"
        assert run(connection, cmd, env={"RB_V": "line's"}) == (0, b"multi line's\n", b"err")
        assert connection._session is not None  # the session runs under tcsh too
        assert run(connection, "tr a-z A-Z", stdin=b"piped") == (0, b"PIPED", b"")  # exec
    finally:
        connection.close()


def test_a_nul_byte_fails_the_step_and_the_session_goes_on(conn: SSHConnection) -> None:
    with pytest.raises(StepError, match="NUL"):
        run(conn, "echo a\0echo b")
    assert run(conn, "-nosuch 2>/dev/null; echo next") == (0, b"next\n", b"")
