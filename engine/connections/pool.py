"""Each host's connection, opened on first use and kept within a bound.

The executor holds a host's connection through a ConnectionHolder; the run's
ConnectionLimit closes idle ones when more than `--max-connections` are open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.inventory.host import Host

from .base import Connection


class ConnectionLimit:
    """At most `limit` host connections open at once, or `forks` if that is more.

    An SSH connection is a socket and a paramiko thread for as long as it is
    open. Without a bound, 1,000 hosts hold 1,000 threads and sockets until the
    run ends (the linear strategy keeps every host's connection for its next
    step). Opening one more than the limit closes an idle one: the most recently
    used, since a linear round visits the hosts in the same order each time and
    the host that just finished is the one needed furthest ahead. A host whose
    connection was closed reconnects (a new session) at its next step.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[ConnectionHolder, None] = {}  # least recently used first

    def opened(self, holder: ConnectionHolder) -> None:
        with self._lock:
            self._open[holder] = None
            over = len(self._open) > self.limit
            candidates = [h for h in reversed(self._open) if h is not holder] if over else []
        for candidate in candidates:  # busy ones refuse; then the next
            if candidate.close_if_idle():
                break

    def used(self, holder: ConnectionHolder) -> None:
        with self._lock:
            if holder in self._open:
                del self._open[holder]
                self._open[holder] = None

    def closed(self, holder: ConnectionHolder) -> None:
        with self._lock:
            self._open.pop(holder, None)


class ConnectionHolder:
    """Opens the host's connection on first use (Fabric's habit), and keeps it
    for the next steps unless the run's ConnectionLimit closes it while idle."""

    def __init__(
        self,
        host: Host,
        connect: Callable[[Host], Connection],
        limit: ConnectionLimit | None = None,
    ) -> None:
        self.host = host
        self._connect = connect
        self._limit = limit
        self._conn: Connection | None = None
        self._opening: Connection | None = None  # being opened now: interruptible too
        self._lock = threading.Lock()
        self._busy = False  # a step of this host is running: never closed under it
        self._ever_opened = False

    def get(self) -> Connection:
        with self._lock:
            conn, opened = self._conn, False
            if conn is None:
                conn = self._opening = self._connect(self.host)
                try:
                    conn.open()
                finally:
                    self._opening = None
                self._conn, self._ever_opened, opened = conn, True, True
        if opened and self._limit is not None:
            self._limit.opened(self)
        return conn

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Around each step of the host: the limit closes only idle connections."""
        with self._lock:
            self._busy = True
        try:
            yield
        finally:
            with self._lock:
                self._busy = False
            if self._limit is not None:
                self._limit.used(self)

    def close_if_idle(self) -> bool:
        with self._lock:
            if self._busy or self._conn is None:
                return False
            conn = self._detach()
        assert conn is not None  # checked above, under the same lock
        try:
            conn.close()
        except Exception:
            pass  # closing is best effort: the host reconnects at its next step
        return True

    @property
    def opened(self) -> bool:
        """Whether the connection was ever established (run_once hand-over asks)."""
        return self._ever_opened

    def interrupt(self) -> None:
        # The connection may be closed meanwhile (the limit, the walk's end), or
        # still opening: an SSH handshake stops at once instead of at its timeout.
        conn = self._conn or self._opening
        if conn is not None:
            conn.interrupt()

    def close(self) -> None:
        with self._lock:
            conn = self._detach()
        if conn is not None:
            conn.close()

    def _detach(self) -> Connection | None:
        """Take the connection out (under our lock: a reconnect is counted after)."""
        conn, self._conn = self._conn, None
        if self._limit is not None:
            self._limit.closed(self)
        return conn
