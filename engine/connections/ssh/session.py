"""A persistent shell per SSH host: one exec channel running `/bin/sh`, fed one
framed step at a time, so a step costs a fork on the host instead of a new SSH
session (and a new login shell, which re-reads the user's rc files each time).

Each step is isolated as if it had its own session:

    ( cd DIR || exit 1; export K=V; eval 'CMD'
    ) </dev/null 2>&3 3>&-; __rb_rc=$?
    printf '\n%s %s\n' TOKEN "$__rb_rc"       # on stdout
    printf '\n%s\n' TOKEN >&3                 # on stderr (fd 3, see below)

- its own subshell: `cd` and `export` never reach the next step, and it reads
  /dev/null, never the session's stdin (which carries our protocol). `eval` in
  the subshell costs one fork and no exec; a command that mentions `$$` or
  `PPID` (or runs through sudo) gets a shell of its own instead, so `$$` is
  its own pid and not the session's. That shell reads its text from a
  here-document, never from argv, which any user's `ps` can read;
- a timeout or Ctrl-C signals every process below the session shell (the
  step's whole tree, collected before any is signalled) from a second channel,
  TERM then KILL; the session shell itself survives and the next step runs;
- its exact exit code (128+N for a signal, as a shell reports it), and stdout
  and stderr on the channel's two streams, each ended by a random token per
  step that no output can forge. We add exactly one newline before each token
  and strip exactly that one, so binary and unterminated output come back
  byte for byte. The session shell's own stderr is /dev/null (its "Terminated"
  notices are not the step's output); fd 3 carries the steps' stderr.

A session that died between steps is replaced before the next step. One that
dies during a step fails that step (it may have half-run: it is not retried)
and is replaced for the next. Steps that need what this channel cannot give
(stdin, a pty) use exec_channel.py instead, as does everything when the login shell
is not a POSIX shell: SSHConnection decides, see `eligible`.
"""

from __future__ import annotations

import re
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.connections.base import KILL_GRACE, Command, ExecResult, hidden, script, wait_slice
from engine.connections.output import Capture
from engine.errors import StepError, StepTimeout

if TYPE_CHECKING:
    import paramiko

_READ = 1 << 20
_START_TIMEOUT = 30.0
# A step quiet for this long makes us check that the session shell still lives.
_PROBE_EVERY = 2.0
# Longest blocking read of one stream before the other is drained.
_SLICE = 0.05
# A stdout read this big means the step's output flows: read it as it comes.
_FLOWING = 32 * 1024


class SessionUnavailable(Exception):
    """The host cannot run a session (its login shell is not POSIX): use exec."""


class SessionLost(Exception):
    """The session's shell or channel ended."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent  # False: the step never left us, so it certainly did not run


def eligible(command: Command) -> bool:
    """Whether the session can run `command` with the same meaning as exec."""
    return not command.pty and not command.stdin


# A command that asks for its own pid (or its parent's) gets a shell of its own:
# inside a subshell, `$$` would name the session shell (and `kill $$` end it).
_OWN_PID = re.compile(r"\$\$|\$\{\$\}|\bPPID\b")


def step_line(command: Command, token: str) -> str:
    """The framed line the session shell runs for one step."""
    script(command)  # checks the env names and refuses a NUL byte
    exports = "".join(f"export {k}={shlex.quote(str(v))}; " for k, v in command.env.items())
    if command.become or (command.cmd is not None and _OWN_PID.search(command.cmd)):
        # A shell of its own (sudo needs a program; `$$` must be its own pid),
        # fed its text by a here-document: never in argv, where `ps` shows it.
        exports, body = "", _own_shell(command, token)
    elif command.cmd is not None:
        # No exec: the cheapest isolation. The space: bash's eval would take
        # a text starting with "-" for an option of its own.
        body = "eval " + shlex.quote(" " + command.cmd)
    else:
        words = [str(w) for w in command.argv or []]
        if not words:
            raise StepError("empty argv: nothing to run")
        body = "exec " + shlex.join(words)
    cd = f"cd {shlex.quote(command.cwd)} || exit 1; " if command.cwd else ""
    # fd 3 is the channel's stderr (the session shell's own stderr, where it would
    # report "Terminated" for a killed step, is /dev/null: see ShellSession._start).
    return (
        f"( {cd}{exports}{body}\n) </dev/null 2>&3 3>&-; __rb_rc=$?; "
        f"printf '\\n%s %s\\n' {token} \"$__rb_rc\"; printf '\\n%s\\n' {token} >&3\n"
    )


def _own_shell(command: Command, token: str) -> str:
    """`exec` of a reader shell (base.hidden) whose stdin is a here-document."""
    launch = hidden(command)
    text = launch.stdin.decode()  # a session step has no stdin of its own: text only
    end = f"RB_{token}"
    newline = "" if text.endswith("\n") else "\n"
    return f"exec {shlex.join(launch.words)} <<'{end}'\n{text}{newline}{end}"


def kill_line(shell_pid: int, sig: str, become: str | None) -> str:
    """Signal every process below the session shell: the running step's tree.

    Collected first, then signalled, so no child is reparented out of reach
    while its parent dies. Processes a step left running in the background in
    an earlier step are no longer below the shell, and are left alone.
    """
    tree = (
        'rb_t() { for c in $(pgrep -P "$1" 2>/dev/null || ps -o pid= --ppid "$1"); '
        'do echo "$c"; rb_t "$c"; done; }; '
        f'pids=$(rb_t {shell_pid}); [ -n "$pids" ] || exit 0; '
    )
    line = tree + f"kill -{sig} $pids 2>/dev/null"
    if become:
        line += f"; sudo -n kill -{sig} $pids 2>/dev/null"
    return line + "; true"


class ShellSession:
    """One `/bin/sh` on the host, running one step at a time."""

    def __init__(
        self,
        transport: paramiko.Transport,
        side: Callable[[str], int | None],
        kill_grace: float = KILL_GRACE,
    ) -> None:
        self.kill_grace = kill_grace
        # Runs a housekeeping command on a channel of its own: its exit status or None.
        self._side = side
        self.channel = transport.open_session(timeout=30)
        self.shell_pid = 0
        self.running: Command | None = None
        self.killed = False
        self._start()

    def _start(self) -> None:
        token = secrets.token_hex(8)
        # The login shell says its pid and becomes /bin/sh (same pid). The
        # redirections are sh's own: a csh login shell cannot say `3>&2`.
        self.channel.exec_command(
            f"echo {token} $$; exec /bin/sh -c 'exec /bin/sh 3>&2 2>/dev/null'"
        )
        deadline = time.monotonic() + _START_TIMEOUT
        head = bytearray()
        # Blocking reads with a timeout, never fileno(): that would cost two more
        # fds per host, and select() fails outright on fds above 1023.
        while b"\n" not in head:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise SessionUnavailable("the session shell did not start")
            self.channel.settimeout(left)
            try:
                data = self.channel.recv(4096)
            except TimeoutError:
                continue
            if not data:
                self.close()
                raise SessionUnavailable(bytes(head).decode(errors="replace").strip() or "eof")
            head += data
        line = bytes(head).split(b"\n", 1)[0].split()
        if len(line) != 2 or line[0] != token.encode() or not line[1].isdigit():
            self.close()
            raise SessionUnavailable("the login shell is not a POSIX shell")
        self.shell_pid = int(line[1])

    @property
    def alive(self) -> bool:
        ch = self.channel
        return not (ch.closed or ch.eof_received or ch.exit_status_ready())

    def run(self, command: Command, timeout: float | None) -> ExecResult:
        token = secrets.token_hex(16)
        line = step_line(command, token)
        self.running, self.killed = command, False
        out_capture, err_capture = command.output.captures()
        out = _Marked(out_capture, b"\n" + token.encode() + b" ", with_rc=True)
        err = _Marked(err_capture, b"\n" + token.encode() + b"\n")
        try:
            try:
                self.channel.sendall(line.encode())
            except OSError as exc:
                raise SessionLost(f"cannot send the step: {exc}", sent=False) from None
            deadline = None if timeout is None else time.monotonic() + timeout
            if self._collect(out, err, deadline):
                return ExecResult.captured(out.rc or 0, out_capture, err_capture)
            # Timed out: kill the step's tree; keep what it printed last.
            self.kill("TERM", command.become)
            if not self._collect(out, err, time.monotonic() + self.kill_grace):
                self.kill("KILL", command.become)
                if not self._collect(out, err, time.monotonic() + self.kill_grace):
                    self.close()  # stuck: the next step gets a new session
            out.flush()  # the markers never came: keep what waited for them
            err.flush()
            cut = ExecResult.captured(-1, out_capture, err_capture)
            raise StepTimeout(
                f"timed out after {timeout:g}s; killed the command's process group",
                data={"rc": None, "stdout": _text(cut.stdout), "stderr": _text(cut.stderr)},
            )
        finally:
            self.running = None
            out_capture.close()
            err_capture.close()

    def kill(self, sig: str, become: str | None) -> None:
        self.killed = True
        self._side(kill_line(self.shell_pid, sig, become))

    def interrupt(self) -> None:
        command = self.running
        if command is None:
            return
        self.kill("TERM", command.become)
        time.sleep(0.05)
        if self.running is not None:
            threading.Timer(self.kill_grace, self._kill_if_running, (command,)).start()

    def _kill_if_running(self, command: Command) -> None:
        if self.running is command:
            self.kill("KILL", command.become)

    def _collect(self, out: _Marked, err: _Marked, deadline: float | None) -> bool:
        """Read both streams until both end markers arrived: True; False at deadline.

        The stderr marker is the last thing a step sends, so the thread sleeps on
        stderr and takes stdout as it finds it ready: one wake-up usually finds
        the output and both markers (waking on every stdout packet cost ~25% more
        CPU a step). Flowing stdout (a read of _FLOWING or more) is read as it
        comes, so the window both streams share never fills. Blocking reads in
        slices of _SLICE, not select() on paramiko's fd pipe (two syscalls a
        packet, fds above 1023 refused); a probe of the shell now and then."""
        flowing = False
        channel = self.channel
        next_probe = time.monotonic() + _PROBE_EVERY
        data: bytes | None
        while not (out.done and err.done):
            wait = wait_slice(deadline, _SLICE)
            if wait is None:
                return False
            got = False
            if not out.done and channel.recv_ready():
                data = channel.recv(_READ)
                flowing = flowing or len(data) >= _FLOWING
                out.feed(data)
                got = True
            if not err.done and channel.recv_stderr_ready():
                err.feed(channel.recv_stderr(_READ))
                got = True
            if out.done and err.done:
                break
            channel.settimeout(wait)
            try:
                if err.done or (flowing and not out.done):
                    data = channel.recv(_READ)
                    out.feed(data)
                else:
                    data = channel.recv_stderr(_READ)
                    err.feed(data)
            except TimeoutError:
                data = None  # nothing came in this slice (EOF would be b"")
            if data == b"":
                raise SessionLost("the session shell ended during the step")
            got = got or bool(data)
            if not got and time.monotonic() >= next_probe:
                next_probe = time.monotonic() + _PROBE_EVERY
                if not self._shell_alive():
                    raise SessionLost(
                        "the session shell ended during the step (its processes may still run)"
                    )
        return True

    def _shell_alive(self) -> bool:
        """A shell that died leaves no EOF while the step's processes still hold
        the streams open: ask the host whether it lives (now and then, when idle)."""
        if self.channel.exit_status_ready():
            return False
        return self._side(f"kill -0 {self.shell_pid} 2>/dev/null") != 1

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # closing a dead channel
            pass


class _Marked:
    """One stream of a session step: its bytes go to a Capture until the end
    marker (for stdout: the marker, then the step's rc and a newline), which
    is cut off. The last bytes wait in `pending` until they cannot be part of
    a marker split across reads."""

    def __init__(self, capture: Capture, end: bytes, with_rc: bool = False) -> None:
        self.capture = capture
        self.end = end
        self.with_rc = with_rc
        self.keep = len(end) + (12 if with_rc else 0)  # "-1" to "255" and "\n" fit
        self.pending = bytearray()
        self.done = False
        self.rc: int | None = None

    def feed(self, data: bytes) -> None:
        if self.done or not data:
            return
        self.pending += data
        at = self.pending.find(self.end)
        if at < 0:
            self._pass(len(self.pending) - self.keep)
            return
        self._pass(at)  # the marker now starts `pending`
        if self.with_rc:
            nl = self.pending.find(b"\n", len(self.end))
            if nl < 0:
                return  # the rc digits are still on their way
            self.rc = int(self.pending[len(self.end) : nl])
        self.pending.clear()
        self.done = True

    def flush(self) -> None:
        """The stream ends without its marker (a timeout): what waited in
        `pending` is the step's output, up to where a marker began."""
        if self.done:
            return
        at = self.pending.find(self.end)
        if at < 0:  # a marker cut short is not output either
            at = len(self.pending)
            for size in range(min(len(self.end) - 1, at), 0, -1):
                if self.pending.endswith(self.end[:size]):
                    at -= size
                    break
        self._pass(at)
        self.pending.clear()

    def _pass(self, upto: int) -> None:
        if upto > 0:
            self.capture.write(bytes(self.pending[:upto]))
            del self.pending[:upto]


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")
