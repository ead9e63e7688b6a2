"""The protocol every connection type implements, and the connection registry.

A step never knows whether its host is local or remote: it builds a `Command`
(or asks for a file stream, or a tunnel) and the host's connection carries it.
Connections open lazily (first call of `open`) and stay open for every later
step on the same host; the runner closes them when the run ends.
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from engine.errors import StepError
from engine.registry import Registry

from .output import Capture, OutputSpec

if TYPE_CHECKING:
    from engine.inventory.host import Host
    from engine.secrets import Secrets


@dataclass
class Command:
    """One command to run on a host.

    Exactly one of `cmd` (run by /bin/sh -c) or `argv` (no shell) is set.
    """

    cmd: str | None = None
    argv: list[str] | None = None
    stdin: bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    become: str | None = None  # run as this user through sudo -n
    # A pty echoes what it is sent, so a pty command's text cannot travel on
    # stdin (see `hidden`): it is passed in argv, where `ps` shows it.
    pty: bool = False
    output: OutputSpec = field(default_factory=OutputSpec)  # what of stdout/stderr to keep

    def __post_init__(self) -> None:
        if (self.cmd is None) == (self.argv is None):
            raise ValueError("a Command has exactly one of cmd or argv")

    def env_words(self) -> list[str]:
        """`env K=V ...` before a command: how env crosses sudo and a remote shell.
        Raises StepError for a name no shell could export."""
        bad = [k for k in self.env if not ENV_NAME.match(str(k))]
        if bad:
            raise StepError(f"invalid environment variable name(s): {', '.join(map(str, bad))}")
        return ["env", *(f"{k}={v}" for k, v in self.env.items())] if self.env else []


@dataclass
class Hidden:
    """How to start a command whose text stays out of every process list.

    `words` is a fixed reader (`/bin/sh -c READER sh`, under sudo for become)
    and `stdin` carries the real text first, then the command's own stdin.
    Why: argv is world-readable (`ps`, /proc/PID/cmdline) and a shell command
    often holds a secret, so `sh -c CMD` would show it to every user."""

    words: list[str]
    stdin: bytes


def hidden(command: Command, one_line: bool = False) -> Hidden:
    """`command` as a reader shell plus its text on stdin (see Hidden).
    `one_line`: no newline in the words (a login shell parses them)."""
    text = script(command)
    if command.stdin is None and len(text) > _BYTEWISE:
        # A long text with no stdin after it: one `cat` reads it in blocks.
        reader = '__rb_s=$(cat); exec </dev/null; eval " $__rb_s"'
        data = text.encode()
    else:
        # `read` takes stdin a byte at a time, so it stops exactly after the
        # token line and the command inherits the rest of stdin untouched.
        token = secrets.token_hex(8)
        reader = (
            f'__rb_s=; while IFS= read -r __rb_l; do [ "$__rb_l" = {token} ] && break; '
            f'__rb_s="$__rb_s$__rb_l{_NL[one_line]}"; done; unset __rb_l __rb_n; eval " $__rb_s"'
        )
        if one_line:
            # Over SSH a login shell parses the reader first, and csh/tcsh refuse
            # a newline inside quotes: printf makes it (the `x` keeps $(...)
            # from eating it). A fork, so only where it is needed.
            reader = "__rb_n=$(printf '\\nx'); __rb_n=${__rb_n%x}; " + reader
        data = f"{text}\n{token}\n".encode() + (command.stdin or b"")
    words = ["/bin/sh", "-c", reader, "sh"]
    if command.become:
        words = become_words(command.become, words)
    return Hidden(words, data)


# How the reader joins the lines it reads: a newline, or (one_line) a
# variable holding one.
_NL = {False: "\n", True: "$__rb_n"}

# Up to this many characters the text is read byte by byte (cheaper than a
# fork of `cat`); a 100 KB text that way would cost ~0.1 s.
_BYTEWISE = 8192


def script(command: Command) -> str:
    """The shell text `command` amounts to: its exports, then its cmd (or an
    exec of its argv). Raises StepError for a name no shell could export."""
    command.env_words()  # checks the names
    exports = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in command.env.items())
    if command.cmd is not None:
        text = exports + command.cmd
    else:
        words = [str(w) for w in command.argv or []]
        if not words:
            raise StepError("empty argv: nothing to run")
        text = exports + "exec " + shlex.join(words)
    if "\0" in text:
        # A shell stops reading at a NUL: what follows it would silently not run.
        raise StepError("the command or its env holds a NUL byte, which no shell can read")
    return text


# Seconds a killed step gets between SIGTERM and SIGKILL (timeout, second Ctrl-C).
# Connections take `kill_grace=` to change it (tests use a fraction of a second).
KILL_GRACE = 2.0

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def become_words(user: str, words: list[str]) -> list[str]:
    """`words` run as `user` through sudo: -n fails at once where sudo would ask
    for a password (nobody can answer it), -H gives the user's own HOME."""
    return ["sudo", "-n", "-H", "-u", user, "--", *words]


class Readable(Protocol):
    """What `put` reads from: a file, a pipe, an S3 body (no seeking, no length)."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class ExecResult:
    rc: int
    stdout: bytes
    stderr: bytes
    # Bytes of each stream left out of `stdout`/`stderr` (see output.Capture).
    stdout_omitted: int = 0
    stderr_omitted: int = 0

    @classmethod
    def captured(cls, rc: int, out: Capture, err: Capture) -> ExecResult:
        """The result from two finished captures (which this closes)."""
        out.close()
        err.close()
        return cls(rc, out.value(), err.value(), out.omitted, err.omitted)


@runtime_checkable
class Connection(Protocol):
    """What a host's connection can do. Errors: HostUnreachable, StepTimeout."""

    host: Host

    def open(self) -> None:
        """Connect now (idempotent). Raises HostUnreachable."""

    def run(self, command: Command, timeout: float | None = None) -> ExecResult:
        """Run and wait. On timeout, kill the command's processes and raise StepTimeout."""
        ...

    def put(self, source: Readable, path: str, mode: int | None = None) -> int:
        """Stream `source` into the file `path` on the host; return bytes written."""
        ...

    def get(self, path: str) -> AbstractContextManager[Readable]:
        """A readable stream of the host's file `path`."""
        ...

    def tunnel(self, remote_host: str, remote_port: int) -> AbstractContextManager[tuple[str, int]]:
        """Reach `remote_host:remote_port` as seen from the host; yields a local (host, port)."""
        ...

    def interrupt(self) -> None:
        """Kill every command this connection is running now (second Ctrl-C)."""

    def close(self) -> None: ...


class ConnectionFactory(Protocol):
    """How the runner makes a host's connection: a connection class, typically.
    `secrets` renders a password template; `resolve_host` finds a jump host by
    name. Types that need neither accept and ignore them."""

    def __call__(
        self,
        host: Host,
        *,
        secrets: Secrets | None = None,
        resolve_host: Callable[[str], Host] | None = None,
    ) -> Connection: ...


connection_types: Registry[ConnectionFactory] = Registry(
    "connection type", "runbook_engine.connections"
)


connection_types.register_path("local", "engine.connections.local:LocalConnection")
connection_types.register_path("ssh", "engine.connections.ssh.connection:SSHConnection")


def connection_for(host: Host) -> Connection:
    """A new, not yet opened connection for `host`."""
    return connection_types.get(host.connection)(host)


def wait_slice(deadline: float | None, most: float) -> float | None:
    """How long the next wait may last: `most`, or less as `deadline` (a
    time.monotonic() value) nears; None once it has passed."""
    if deadline is None:
        return most
    left = deadline - time.monotonic()
    return None if left <= 0 else min(most, left)


def iter_chunks(stream: Readable, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk
