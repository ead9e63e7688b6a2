"""The `ssh` connection: one authenticated paramiko transport per host, reused.

Opening costs a TCP connect, a key exchange and authentication; every later
command is one new channel on the same transport (no re-auth). The socket is
ours, with TCP_NODELAY (paramiko leaves Nagle on, which adds ~45 ms to every
exec round trip). paramiko is imported inside functions only, and the helper
modules that import it at their top (hostkeys) are imported the same way.

Jumps (`jump: bastion` or `jump: user@addr:port`) open the jump host's own
SSHConnection, recursively, and use a direct-tcpip channel through it as the
target's socket. What the inventory leaves unset comes from ~/.ssh/config
(HostName, User, Port, IdentityFile, ProxyJump), as OpenSSH would.

Every failure to connect becomes HostUnreachable naming the host and saying
what to do; the password is never part of any message.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from engine.connections.base import KILL_GRACE, Command, ExecResult, Readable
from engine.errors import Aborted, EngineError, HostUnreachable, StepError
from engine.inventory.host import Host
from engine.redaction import Redactor
from engine.secrets import Secrets

from . import exec_channel as ssh_exec
from . import jump as ssh_jump
from . import session as ssh_session
from . import transport as ssh_transport

if TYPE_CHECKING:
    import paramiko

KEEPALIVE = 15


@dataclass
class Target:
    """Where and as whom to connect, after ~/.ssh/config filled the gaps."""

    address: str
    port: int
    user: str
    key_files: list[str]
    jump: str | None


class SSHConnection:
    def __init__(
        self,
        host: Host,
        secrets: Secrets | None = None,
        resolve_host: Callable[[str], Host] | None = None,
        *,
        kill_grace: float = KILL_GRACE,
        _via: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.kill_grace = kill_grace
        self._secrets = secrets
        self._resolve_host = resolve_host
        self._via = _via  # hosts this one is a jump for, to refuse loops
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._jump: SSHConnection | None = None
        self._running: set[ssh_exec.Running] = set()
        self._running_lock = threading.Lock()
        # The persistent shell for steps (session.py); an exec channel per step without it.
        self.use_session = os.environ.get("RUNBOOK_SSH_SESSION", "1") != "0"
        self._session: ssh_session.ShellSession | None = None
        self._handshake: Any = None  # the socket while connecting (interrupt() shuts it)
        self._session_lock = threading.Lock()

    # ------------------------------------------------------------ connecting

    def open(self) -> None:
        self._transport()

    def _transport(self) -> paramiko.Transport:
        """The live transport, connecting (or reconnecting a dead one) first."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return transport
            self._drop()
            self._client = self._connect()
            transport = self._client.get_transport()
            assert transport is not None
            return transport

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        from . import hostkeys as ssh_hostkeys

        target = self.target()
        policy_name = self.host.host_key_policy or "strict"
        if policy_name not in ssh_hostkeys.POLICIES:
            self._fail(f"host_key_policy {policy_name!r} is not one of strict, accept-new, ignore")
        known = ssh_hostkeys.known_hosts_path(self.host.known_hosts)
        policy = ssh_hostkeys.HostKeyPolicy(policy_name, target.address, target.port, known)
        password = self._password()
        for key_file in target.key_files:
            if not os.path.exists(key_file):
                self._fail(f"key_file {key_file} does not exist")
        pkey = ssh_transport.cached_key(target.key_files[0]) if len(target.key_files) == 1 else None
        sock = self._handshake = self._socket(target)
        client = paramiko.SSHClient()
        timeout = self.host.connect_timeout
        try:
            ssh_hostkeys.load_into(
                client, policy_name, known, ssh_hostkeys.entry_name(target.address, target.port)
            )
            client.set_missing_host_key_policy(policy)
            client.connect(
                target.address,
                target.port,
                username=target.user,
                password=password,
                pkey=pkey,
                # Only a key the cache could not load: paramiko then says why.
                key_filename=target.key_files[0] if target.key_files and not pkey else None,
                allow_agent=True,
                look_for_keys=not target.key_files,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                sock=sock,
                transport_factory=ssh_transport.make_transport,
            )
        except (ssh_hostkeys.HostKeyRejected, paramiko.SSHException, EOFError, OSError) as exc:
            if self._handshake is None:  # interrupt() cut it: the operator's doing
                stopped = Aborted(f"{self.host.name}: connecting was interrupted")
                self._abandon(client, sock, "", stopped)
            reason = self._connect_failure(exc, client, target, known, password is not None)
            self._abandon(client, sock, reason)
        finally:
            self._handshake = None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE)
        return client

    def _connect_failure(
        self, exc: BaseException, client: Any, target: Target, known: Path, password: bool
    ) -> str:
        """Why the handshake or authentication failed, and what to do about it."""
        import paramiko

        from . import hostkeys as ssh_hostkeys

        if isinstance(exc, ssh_hostkeys.HostKeyRejected):
            return str(exc)
        if isinstance(exc, paramiko.BadHostKeyException):
            return ssh_hostkeys.changed_key_message(
                target.address, target.port, exc.key, exc.expected_key, known
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return "the key file is encrypted: load it into ssh-agent"
        if isinstance(exc, paramiko.AuthenticationException):
            return self._auth_failed(target, password)
        if isinstance(exc, paramiko.SSHException | EOFError):
            # paramiko raises a symptom ("No existing session") when it stops waiting
            # for the handshake, or when its transport thread failed: say the cause.
            transport = client.get_transport()
            cause = transport.get_exception() if transport is not None else None
            if cause is None and transport is not None and transport.is_active():
                cause = f"no SSH handshake within {self.host.connect_timeout:g}s (connect_timeout)"
            return f"SSH handshake with {_where(target)} failed: {cause or exc}"
        return f"connection to {_where(target)} failed: {_reason(exc)}"  # an OSError

    def target(self) -> Target:
        """Where to connect, as the host says: the inventory has already applied
        ~/.ssh/config (engine/inventory/sshconfig.py) to what it left unset."""
        host = self.host
        port = host.port or 22
        user = host.user or getpass.getuser()
        key_files = [os.path.expanduser(host.key_file)] if host.key_file else []
        return Target(host.address, port, user, key_files, host.jump)

    def _password(self) -> str | None:
        if not self.host.password:
            return None
        secrets = self._secrets or Secrets(Redactor())
        try:
            return secrets.password_for(self.host)
        except EngineError as exc:
            # SecretError / TemplateError name the secret, never its value.
            self._fail(f"cannot get the password: {exc}")
        except Exception as exc:  # jinja errors of any kind
            self._fail(f"cannot render the password template: {type(exc).__name__}")

    def _socket(self, target: Target) -> Any:
        if target.jump:
            return self._jump_channel(target)
        timeout = self.host.connect_timeout
        try:
            sock = socket.create_connection((target.address, target.port), timeout=timeout)
        except socket.gaierror as exc:
            self._fail(f"cannot resolve {target.address!r}: {exc.strerror}")
        except ConnectionRefusedError:
            self._fail(f"connection refused by {_where(target)} (is sshd running on that port?)")
        except TimeoutError:
            self._fail(f"no answer from {_where(target)} within {timeout:g}s (connect_timeout)")
        except OSError as exc:
            self._fail(f"cannot connect to {_where(target)}: {_reason(exc)}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _jump_channel(self, target: Target) -> Any:
        assert target.jump
        jump_host = self._jump_host(target.jump, target)
        if jump_host.name in self._via or jump_host.name == self.host.name:
            self._fail(f"jump loop: {' -> '.join([*self._via, self.host.name, jump_host.name])}")
        jump = SSHConnection(
            jump_host,
            self._secrets,
            self._resolve_host,
            kill_grace=self.kill_grace,
            _via=(*self._via, self.host.name),
        )
        try:
            transport = jump._transport()
            channel = transport.open_channel(
                "direct-tcpip",
                (target.address, target.port),
                ("127.0.0.1", 0),
                timeout=self.host.connect_timeout,
            )
        except HostUnreachable as exc:
            jump.close()
            self._fail(f"via jump host: {exc}")
        except Exception as exc:  # ChannelException, SSHException, OSError
            jump.close()
            reason = getattr(exc, "text", "") or str(exc) or type(exc).__name__
            self._fail(f"jump host {jump_host.name} cannot reach {_where(target)}: {reason}")
        self._jump = jump
        return channel

    def _jump_host(self, spec: str, target: Target) -> Host:
        try:
            return ssh_jump.jump_host(spec, self.host, target.user, self._resolve_host)
        except ssh_jump.JumpSpecError as exc:
            self._fail(str(exc))

    def _auth_failed(self, target: Target, with_password: bool) -> str:
        tried = [f"key file {k}" for k in target.key_files]
        if os.environ.get("SSH_AUTH_SOCK"):
            tried.append("ssh-agent keys")
        if not target.key_files:
            tried.append("default keys in ~/.ssh")
        if with_password:
            tried.append("password")
        return (
            f"authentication failed for user {target.user!r} at {_where(target)} "
            f"(tried: {', '.join(tried)})"
        )

    def _fail(self, message: str) -> NoReturn:
        raise HostUnreachable(self.host.name, message)

    def _abandon(
        self, client: Any, sock: Any, message: str, error: Exception | None = None
    ) -> NoReturn:
        client.close()
        try:
            sock.close()
        except (OSError, EOFError):
            pass
        if self._jump is not None:
            self._jump.close()
            self._jump = None
        raise (error or HostUnreachable(self.host.name, message)) from None

    # ------------------------------------------------------------ using

    def run(self, command: Command, timeout: float | None = None) -> ExecResult:
        import paramiko

        transport = self._transport()
        # One step at a time per session; a concurrent caller (rare: the same
        # host from two threads) takes the exec path instead of waiting.
        if (
            self.use_session
            and ssh_session.eligible(command)
            and self._session_lock.acquire(blocking=False)
        ):
            try:
                result = self._run_in_session(transport, command, timeout)
            finally:
                self._session_lock.release()
            if result is not None:
                return result
        try:
            return ssh_exec.execute(
                transport,
                command,
                timeout,
                self._register,
                self._unregister,
                self._kill,
                self.kill_grace,
            )
        except StepError:
            raise  # StepTimeout is also an OSError (TimeoutError): not a broken link
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if not transport.is_active():
                raise HostUnreachable(self.host.name, f"connection lost: {exc}") from None
            raise StepError(f"{self.host.name}: ssh exec failed: {exc}") from None

    def _run_in_session(
        self, transport: paramiko.Transport, command: Command, timeout: float | None
    ) -> ExecResult | None:
        """Run in the persistent shell; None when this host cannot have one."""
        for attempt in (1, 2):
            try:
                return self._session_run(transport, command, timeout)
            except ssh_session.SessionLost as exc:
                if exc.sent:
                    raise StepError(
                        f"{self.host.name}: {exc}; the step may have partly run (not retried)",
                        data={"rc": None},
                    ) from None
                if attempt == 2:
                    raise StepError(f"{self.host.name}: {exc}", data={"rc": None}) from None
                # Nothing was sent: the shell had died unnoticed; a new one runs the step.
        return None  # unreachable: the loop returns or raises

    def _session_run(
        self, transport: paramiko.Transport, command: Command, timeout: float | None
    ) -> ExecResult | None:
        session = self._session
        stale = session is not None and (
            not session.alive or session.channel.get_transport() is not transport
        )
        if session is not None and stale:
            session.close()  # died between steps, or the transport was replaced
            session = self._session = None
        if session is None:
            try:
                session = self._session = ssh_session.ShellSession(
                    transport, self._side, self.kill_grace
                )
            except ssh_session.SessionUnavailable:
                self.use_session = False  # not a POSIX login shell: exec from now on
                return None
            except (OSError, EOFError) as exc:
                message = f"cannot open a shell session: {exc}"
                raise HostUnreachable(self.host.name, message) from None
        try:
            return session.run(command, timeout)
        except ssh_session.SessionLost as exc:
            session.close()
            self._session = None
            if not transport.is_active():
                raise HostUnreachable(self.host.name, f"connection lost: {exc}") from None
            raise

    def put(self, source: Readable, path: str, mode: int | None = None) -> int:
        from .transfer import upload

        with self._sftp() as sftp:
            try:
                return upload(sftp, source, path, mode)
            except OSError as exc:
                raise StepError(f"{self.host.name}: cannot write {path}: {_reason(exc)}") from None

    @contextmanager
    def get(self, path: str) -> Iterator[Readable]:
        from .transfer import SFTPReader

        with self._sftp() as sftp:
            try:
                handle = sftp.open(path, "rb")
                size = handle.stat().st_size or 0
            except OSError as exc:
                raise StepError(f"{self.host.name}: cannot read {path}: {_reason(exc)}") from None
            with SFTPReader(handle, size) as reader:
                yield reader

    @contextmanager
    def _sftp(self) -> Iterator[paramiko.SFTPClient]:
        import paramiko

        transport = self._transport()
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise StepError(f"{self.host.name}: cannot start SFTP: {exc}") from None
        assert sftp is not None
        try:
            yield sftp
        finally:
            sftp.close()

    @contextmanager
    def tunnel(self, remote_host: str, remote_port: int) -> Iterator[tuple[str, int]]:
        from .transfer import Forwarder

        forwarder = Forwarder(self._transport(), (remote_host, int(remote_port)))
        forwarder.start()
        try:
            yield forwarder.address
        except StepError as exc:
            # The client only saw its connection closed ("server closed the
            # connection unexpectedly"); why it closed is the forwarder's to tell.
            if forwarder.errors:
                exc.args = (f"{exc} (tunnel via {self.host.name}: {forwarder.errors[-1]})",)
            raise
        finally:
            forwarder.stop()

    # ------------------------------------------------------------ stopping

    def _register(self, running: ssh_exec.Running) -> None:
        with self._running_lock:
            self._running.add(running)

    def _unregister(self, running: ssh_exec.Running) -> None:
        with self._running_lock:
            self._running.discard(running)

    def _kill(self, running: ssh_exec.Running) -> None:
        """TERM the command's process group, then KILL what is left of it."""
        running.killed = True
        # The pid line may still be on its way if the command just started.
        running.started.wait(self.kill_grace)
        if running.pgid is None:
            running.channel.close()
            return
        self._side(ssh_exec.kill_line(running.pgid, "TERM", running.become))
        running.channel.status_event.wait(self.kill_grace)
        # The login shell is gone; children that ignore TERM may not be.
        self._side(ssh_exec.kill_line(running.pgid, "KILL", running.become))

    def _side(self, line: str) -> int | None:
        """Run a short housekeeping command (a kill, a liveness check) on a channel
        of its own; its exit status, or None when it could not run or finish."""
        client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is None or not transport.is_active():
            return None
        try:
            channel = transport.open_session(timeout=10)
            try:
                channel.exec_command(line)
                if not channel.status_event.wait(10):
                    return None
                return channel.recv_exit_status()
            finally:
                channel.close()
        except Exception:  # best effort by design: a check that cannot run says nothing
            return None

    def interrupt(self) -> None:
        handshake, self._handshake = self._handshake, None
        if handshake is not None:  # still connecting: end the wait for the server now
            try:
                handshake.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        session = self._session
        if session is not None:
            session.interrupt()
        with self._running_lock:
            running = list(self._running)
        threads = [
            threading.Thread(target=self._kill, args=(r,), name="ssh-kill", daemon=True)
            for r in running
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=self.kill_grace + 25)

    def close(self) -> None:
        self.interrupt()
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    def __repr__(self) -> str:
        return f"SSHConnection({self.host.name!r})"


def _where(target: Target) -> str:
    return f"{target.address}:{target.port}"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
