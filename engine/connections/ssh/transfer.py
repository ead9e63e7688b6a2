"""File streams over SFTP and port forwarding over direct-tcpip channels.

Both move data of any size without holding it: uploads go in 1 MiB chunks
(SFTP writes pipelined), downloads are read ahead in bounded windows (paramiko's
own prefetch would buffer the whole file if the consumer is slower than the
network), and a tunnel pumps each accepted connection through its own channel.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.connections.base import Readable, iter_chunks

if TYPE_CHECKING:
    import paramiko

CHUNK = 1 << 20
# Read-ahead per download: this much is requested at once and at most this
# much is held in memory.
WINDOW = 8 << 20


def upload(sftp: paramiko.SFTPClient, source: Readable, path: str, mode: int | None) -> int:
    written = 0
    with sftp.open(path, "wb") as out:
        # Pipelined: paramiko does not wait for an ack after each 32 KiB write;
        # errors still surface, at the latest when the file is closed.
        out.set_pipelined(True)
        for chunk in iter_chunks(source, CHUNK):
            out.write(chunk)
            written += len(chunk)
    if mode is not None:
        sftp.chmod(path, mode)
    return written


class SFTPReader(io.RawIOBase):
    """A readable stream of a remote file, read ahead one window at a time."""

    def __init__(self, handle: paramiko.SFTPFile, size: int) -> None:
        super().__init__()
        self._file = handle
        self._size = size
        self._offset = 0  # where the next window starts
        self._blocks: Iterator[bytes] | None = None
        self._buf = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if not self._buf and not self._fill():
            return b""
        data = bytes(self._buf[:size])
        self._buf = self._buf[size:]
        return data

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _fill(self) -> bool:
        while not self._eof:
            if self._blocks is not None:
                block = next(self._blocks, None)
                if block:
                    self._buf = memoryview(block)
                    return True
                self._blocks = None
                if block is not None:  # an empty block: the file shrank
                    self._eof = True
                    break
            if self._offset < self._size:
                end = min(self._offset + WINDOW, self._size)
                chunks = [(o, min(CHUNK, end - o)) for o in range(self._offset, end, CHUNK)]
                self._offset = end
                self._blocks = iter(self._file.readv(chunks))
                continue
            # Past the size seen at open: the file may have grown since.
            self._file.seek(self._offset)
            block = self._file.read(CHUNK)
            if not block:
                self._eof = True
                break
            self._offset += len(block)
            self._buf = memoryview(block)
            return True
        return False

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class Forwarder:
    """Accepts on a local port; each connection gets a channel to the target."""

    def __init__(self, transport: paramiko.Transport, target: tuple[str, int]) -> None:
        self._transport = transport
        self._target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address: tuple[str, int] = self._listener.getsockname()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._open: list[Any] = []  # sockets and channels to close on stop
        self.errors: list[str] = []

    def start(self) -> None:
        self._spawn(self._accept_loop, "ssh-tunnel-accept")

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, peer = self._listener.accept()
            except OSError:
                return  # the listener was shut down
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                channel = self._transport.open_channel(
                    "direct-tcpip", self._target, peer, timeout=30
                )
            except Exception as exc:  # any failure closes just this client
                reason = getattr(exc, "text", "") or str(exc) or type(exc).__name__
                self.errors.append(f"cannot reach {self._target[0]}:{self._target[1]}: {reason}")
                client.close()
                continue
            with self._lock:
                self._open += [client, channel]
            # One thread per direction: a sendall() waiting for the peer's window
            # in one direction must not stop the other from draining (one loop
            # doing both deadlocks once both windows fill), and an EOF is passed
            # on as a half-close while the other direction still flows.
            link = _Link(client, channel)
            self._spawn(
                self._copy,
                "ssh-tunnel-up",
                link,
                client.recv,
                channel.sendall,
                channel.shutdown_write,
            )
            self._spawn(
                self._copy,
                "ssh-tunnel-down",
                link,
                channel.recv,
                client.sendall,
                partial(client.shutdown, socket.SHUT_WR),
            )

    def _copy(
        self,
        link: _Link,
        recv: Callable[[int], bytes],
        send: Callable[[bytes], Any],
        eof: Callable[[], Any],
    ) -> None:
        try:
            while data := recv(CHUNK):
                send(data)
            eof()
        except (OSError, EOFError, ValueError):  # ValueError: closed by stop()
            link.close()  # the other direction must not wait for a dead peer
        finally:
            link.finished()

    def stop(self) -> None:
        self._stop.set()
        try:
            # shutdown() wakes a thread blocked in accept(); close() alone may not.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            endpoints, self._open = self._open, []
            threads, self._threads = self._threads, []
        for endpoint in endpoints:
            _close(endpoint)
        for thread in threads:
            thread.join(timeout=2)


class _Link:
    """One tunnelled connection: closed once both directions ended, or either failed."""

    def __init__(self, client: socket.socket, channel: paramiko.Channel) -> None:
        self._client = client
        self._channel = channel
        self._lock = threading.Lock()
        self._running = 2

    def finished(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self.close()

    def close(self) -> None:
        _close(self._channel)
        _close(self._client)


def _close(endpoint: Any) -> None:
    """Close a socket or channel, waking a thread blocked on it."""
    try:
        if isinstance(endpoint, socket.socket):
            # close() alone does not wake a recv() blocked in another thread.
            endpoint.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    try:
        endpoint.close()
    except (OSError, EOFError):
        pass
