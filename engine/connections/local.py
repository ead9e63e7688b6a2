"""The `local` connection: commands run as subprocesses of the engine.

A shell command's text goes to the shell on stdin, never in argv, where any
user's `ps` would see it (and the secrets it holds): see base.hidden.
Every command starts in its own session (process group), so a timeout or an
interrupt kills the whole tree it spawned, not only the shell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from engine.errors import StepError, StepTimeout
from engine.inventory.host import Host

from .base import KILL_GRACE, Command, ExecResult, Readable, hidden
from .output import Capture


class LocalConnection:
    def __init__(self, host: Host, *, kill_grace: float = KILL_GRACE, **_options: object) -> None:
        # Options (secrets, resolve_host) matter to remote connections only.
        self.host = host
        self.kill_grace = kill_grace
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        """Nothing to open: the engine's own machine is always reachable."""

    def run(self, command: Command, timeout: float | None = None) -> ExecResult:
        words, stdin, env = _launch(command)
        try:
            proc = subprocess.Popen(
                words,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=command.cwd,
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            if command.cwd and not os.path.isdir(command.cwd):
                raise StepError(f"cwd {command.cwd!r} does not exist") from None
            raise StepError(f"command not found: {exc.filename}") from None
        except PermissionError as exc:
            raise StepError(f"permission denied: {exc.filename}") from None
        with self._lock:
            self._running.add(proc)
        out, err = command.output.captures()
        pump = _Pump(proc, stdin, out, err)
        try:
            if not pump.wait(timeout):
                _kill_group(proc, self.kill_grace)
                pump.wait(self.kill_grace * 2)  # keep what it printed last
                pump.stop()
                cut = ExecResult.captured(-1, out, err)
                raise StepTimeout(
                    f"timed out after {timeout:g}s; killed the command's process group",
                    data={"rc": None, "stdout": _text(cut.stdout), "stderr": _text(cut.stderr)},
                )
        finally:
            with self._lock:
                self._running.discard(proc)
        return ExecResult.captured(proc.returncode, out, err)

    def put(self, source: Readable, path: str, mode: int | None = None) -> int:
        written = 0
        with open(path, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
                written += len(chunk)
        if mode is not None:
            os.chmod(path, mode)
        return written

    @contextmanager
    def get(self, path: str) -> Iterator[Readable]:
        with open(path, "rb") as stream:
            yield stream

    @contextmanager
    def tunnel(self, remote_host: str, remote_port: int) -> Iterator[tuple[str, int]]:
        # The host is the engine's own machine: its ports are reachable as they are.
        yield remote_host, remote_port

    def interrupt(self) -> None:
        with self._lock:
            running = list(self._running)
        for proc in running:
            _kill_group(proc, self.kill_grace)

    def close(self) -> None:
        self.interrupt()


class _Pump:
    """Feeds a process its stdin and drains its stdout and stderr into
    captures, a thread each, so neither pipe can fill and stall the other and
    memory stays bounded however much the process prints."""

    def __init__(
        self, proc: subprocess.Popen[bytes], stdin: bytes | None, out: Capture, err: Capture
    ) -> None:
        self.proc = proc
        self._lock = threading.Lock()
        self._stopped = False
        assert proc.stdout is not None and proc.stderr is not None  # both are PIPE
        self.readers = [
            self._start(self._drain, proc.stdout, out),
            self._start(self._drain, proc.stderr, err),
        ]
        if stdin is not None and proc.stdin is not None:
            self._start(_feed, proc.stdin, stdin)

    @staticmethod
    def _start(target: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name="local-pipe")
        thread.start()
        return thread

    def _drain(self, pipe: IO[bytes], capture: Capture) -> None:
        with pipe:
            while chunk := os.read(pipe.fileno(), 1 << 16):
                with self._lock:
                    if self._stopped:
                        return
                    capture.write(chunk)

    def wait(self, timeout: float | None) -> bool:
        """Both streams ended and the process exited: True; False at `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        for reader in self.readers:
            reader.join(left())
            if reader.is_alive():
                return False
        try:
            self.proc.wait(left())
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        """Keep nothing more: a process that escaped the kill may still print."""
        with self._lock:
            self._stopped = True


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        with pipe:
            pipe.write(data)
    except (BrokenPipeError, OSError):
        pass  # the command exited without reading all of it, as a pipe allows


def _launch(command: Command) -> tuple[list[str], bytes | None, dict[str, str] | None]:
    """argv, stdin and environment for Popen.

    A shell command (and anything run through sudo) starts as a fixed reader
    shell with its text on stdin: argv is world-readable. A plain argv runs
    as it is (its words are the program's own arguments either way)."""
    if command.cmd is not None or command.become:
        launch = hidden(command)
        return launch.words, launch.stdin, None
    env = None
    if command.env:
        command.env_words()  # checks the names
        env = {**os.environ, **{k: str(v) for k, v in command.env.items()}}
    if not command.argv:
        raise StepError("empty argv: nothing to run")
    return list(command.argv), command.stdin, env


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the command's process group, then SIGKILL what is left."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            # The shell is gone; its children may not be. One more SIGKILL to the group.
            os.killpg(pgid, signal.SIGKILL)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            continue
        return


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")
