"""Running one Command over an SSH exec channel, and killing it again.

The remote command line is built so that the engine can always find what to
kill: sshd starts every session in its own session and process group (setsid
in session.c), led by the login shell that runs our line. That shell first
prints its pid (= the process group id) on stdout, which we read and strip, and
a timeout or interrupt then signals the whole group from a second channel:
`kill -TERM -- -PGID`, then KILL after a grace period. Children that stay in
the group (a backgrounded `sleep`) die with it.

The command's text and env vars reach the host on the channel's stdin, read
by a fixed reader shell (base.hidden): the exec line is in the remote argv,
which every user there can read. Env vars are `export`ed in that text, after
sudo (the server's AcceptEnv is not relied on, and sudo would drop an outer
environment); cwd is a `cd`.
The outer shell does not `exec` the command, so a command killed by a signal
reports 128+N as its rc, as shells do, instead of paramiko's -1.
"""

from __future__ import annotations

import select
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.connections.base import (
    KILL_GRACE,
    Command,
    ExecResult,
    become_words,
    hidden,
    wait_slice,
)
from engine.connections.output import Capture
from engine.errors import StepError, StepTimeout

if TYPE_CHECKING:
    import paramiko

# Stdin larger than this is written from a thread so a command that talks back
# before reading all of it cannot deadlock us.
_INLINE_STDIN = 256 * 1024
_READ = 1 << 20
# Longest poll() sleep: bounds the cost of a wake-up paramiko lost.
_POLL = 0.1


def remote_line(command: Command) -> tuple[str, bytes | None]:
    """The line the login shell runs (pid marker, cd, then the command) and
    what to send on stdin. The command's text and env travel on stdin (see
    base.hidden): the line is in the remote argv, where any user's `ps` sees it."""
    line = "echo $$; "
    if command.cwd:
        line += f"cd {shlex.quote(command.cwd)} && "
    if command.pty:
        return line + shlex.join(_visible_words(command)), command.stdin
    launch = hidden(command, one_line=True)
    return line + shlex.join(launch.words), launch.stdin


def _visible_words(command: Command) -> list[str]:
    """The command as plain argv (pty commands only: a terminal echoes stdin)."""
    if command.cmd is not None:
        words = ["/bin/sh", "-c", command.cmd]
    else:
        words = [str(w) for w in command.argv or []]
        if not words:
            raise StepError("empty argv: nothing to run")
    words = [*command.env_words(), *words]
    return become_words(command.become, words) if command.become else words


def kill_line(pgid: int, sig: str, become: str | None) -> str:
    line = f"kill -{sig} -- -{pgid} 2>/dev/null"
    if become:
        # The group holds sudo (root) and the command (another user): the login
        # user may not be allowed to signal them, root through sudo is.
        line += f"; sudo -n kill -{sig} -- -{pgid} 2>/dev/null"
    return line + "; true"


@dataclass(eq=False)  # identity: kept in a set
class Running:
    """One command in flight, as interrupt() needs to see it."""

    channel: Any
    become: str | None
    pgid: int | None = None
    started: threading.Event = field(default_factory=threading.Event)
    killed: bool = False


def execute(
    transport: paramiko.Transport,
    command: Command,
    timeout: float | None,
    register: Callable[[Running], None],
    unregister: Callable[[Running], None],
    kill: Callable[[Running], None],
    kill_grace: float = KILL_GRACE,
) -> ExecResult:
    """Run `command` on an open channel of `transport` and collect its output."""
    line, stdin = remote_line(command)
    channel = transport.open_session(timeout=30)
    running = Running(channel, command.become)
    out, err = command.output.captures()
    register(running)
    try:
        if command.pty:
            channel.get_pty()
        channel.exec_command(line)
        writer = _feed_stdin(channel, stdin)
        deadline = None if timeout is None else time.monotonic() + timeout
        if not _collect(channel, running, out, err, deadline):
            kill(running)
            # The killed command closes its streams; keep what it printed last.
            _collect(channel, running, out, err, time.monotonic() + kill_grace * 2)
            cut = ExecResult.captured(-1, out, err)
            raise StepTimeout(
                f"timed out after {timeout:g}s; killed the command's remote process group",
                data={"rc": None, "stdout": _text(cut.stdout), "stderr": _text(cut.stderr)},
            )
        if writer is not None:
            writer.join(timeout=5)
        rc = _exit_status(channel, deadline, kill_grace)
        return ExecResult.captured(rc, out, err)
    finally:
        unregister(running)
        channel.close()
        out.close()
        err.close()


def _feed_stdin(channel: paramiko.Channel, data: bytes | None) -> threading.Thread | None:
    if not data:
        channel.shutdown_write()
        return None
    if len(data) <= _INLINE_STDIN:
        channel.sendall(data)
        channel.shutdown_write()
        return None

    def feed() -> None:
        try:
            for start in range(0, len(data), 1 << 16):
                channel.sendall(data[start : start + (1 << 16)])
            channel.shutdown_write()
        except (OSError, EOFError):
            pass  # the command exited without reading all of it, as with a pipe

    thread = threading.Thread(target=feed, name="ssh-stdin", daemon=True)
    thread.start()
    return thread


def _collect(
    channel: paramiko.Channel,
    running: Running,
    out: Capture,
    err: Capture,
    deadline: float | None,
) -> bool:
    """Read stdout and stderr together until both end (True) or `deadline` passes.

    One thread, poll() on the channel's pipe (paramiko signals it for data on
    either stream), non-blocking reads: neither stream can fill up and stall
    the other, however large they get. paramiko's pipe for "either stream" can
    lose a wake-up when both streams change at once (its two halves are not
    updated under one lock), so poll() never sleeps longer than _POLL and the
    buffers are checked whether or not it woke us.
    """
    head = bytearray() if running.pgid is None else None
    poller = select.poll()
    poller.register(channel.fileno(), select.POLLIN)
    out_done = err_done = False
    while not (out_done and err_done):
        wait = wait_slice(deadline, _POLL)
        if wait is None:
            return False
        try:
            poller.poll(wait * 1000)  # poll, not select: fds above 1023 with many hosts
        except (OSError, ValueError):
            break  # closed under us by a kill that could not find the process group
        # EOF is read before the buffers: data always arrives before EOF, so
        # "EOF seen and buffer empty" means the stream really ended. (No channel
        # timeout of 0 for non-blocking reads: the stdin thread shares it.)
        eof = channel.eof_received or channel.closed
        if not out_done:
            if channel.recv_ready():
                chunk = channel.recv(_READ)
                if head is not None:
                    head = _take_pid_line(running, head + chunk, out)
                else:
                    out.write(chunk)
            elif eof:
                out_done = True
        if not err_done:
            if channel.recv_stderr_ready():
                err.write(channel.recv_stderr(_READ))
            elif eof:
                err_done = True
    if head:
        out.write(bytes(head))  # no marker line: the login shell is not a POSIX shell
    return True


def _take_pid_line(running: Running, head: bytearray, out: Capture) -> bytearray | None:
    """The command's first line is its process group id (`echo $$`): once it is
    whole, note it and pass the rest on to `out`; until then keep it (returned)."""
    if b"\n" not in head:
        return head
    marker, _, rest = bytes(head).partition(b"\n")
    running.pgid = _pid(marker)
    running.started.set()
    # No pid: the login shell is not a POSIX shell; keep it all.
    out.write(rest if running.pgid is not None else bytes(head))
    return None


def _pid(marker: bytes) -> int | None:
    try:
        return int(marker.strip())
    except ValueError:
        return None


def _exit_status(channel: paramiko.Channel, deadline: float | None, grace: float) -> int:
    wait = None if deadline is None else max(deadline - time.monotonic(), 0.0) + grace
    if not channel.status_event.wait(wait):
        return -1
    return channel.recv_exit_status()


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")
