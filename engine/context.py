"""What one run shares across its hosts: options, the event bus, the operator,
the stop flag (Ctrl-C, max_fail), run_once results, and per-host connections.

Kept apart from executor.py so the runner and the step walk share one small
vocabulary without either reaching into the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from engine.connections.base import Connection
from engine.inventory.host import Host

from .approvals import Operator
from .errors import Aborted, HostUnreachable
from .events import EventBus
from .results import StepResult
from .secrets import Redactor, Secrets


class Interrupted(Aborted):
    """Ctrl-C: stop now, run no cleanup steps, leave the run resumable."""


@dataclass
class RunOptions:
    dry_run: bool = False
    forks: int = 10
    max_connections: int = 256  # open at once (threads, sockets): see ConnectionLimit
    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    start_at: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    # step ids (per host) that already succeeded in the run being resumed, with their results
    resume_results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class RunOnce:
    """Runs a `run_once` step on the first host that reaches it; others share the result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, tuple[threading.Event, list[StepResult]]] = {}

    def get_or_run(
        self,
        key: str,
        fn: Callable[[], StepResult],
        may_hand_over: Callable[[], bool] = lambda: False,
    ) -> tuple[StepResult, bool]:
        """The step's result and whether this host ran it.

        An owner whose host turns out unreachable before anything ran there
        (`may_hand_over()`: it never connected) hands the step to the next host
        that reaches it, as Ansible runs run_once on the first available host;
        otherwise every waiting host would be aborted by one dead host.
        """
        while True:
            with self._lock:
                entry = self._results.get(key)
                owner = entry is None
                if owner:
                    entry = self._results[key] = (threading.Event(), [])
            assert entry is not None
            done, box = entry
            if owner:
                try:
                    box.append(fn())
                except HostUnreachable:
                    if may_hand_over():
                        with self._lock:  # before done.set(): waiters find it gone
                            del self._results[key]
                    raise
                finally:
                    done.set()
                return box[0], True
            done.wait()
            if box:
                return box[0], False
            with self._lock:
                handed_over = self._results.get(key) is not entry
            if not handed_over:
                raise Aborted(f"run_once step {key} did not complete on its first host")


class Cancellers:
    """How to stop what running steps wait on in another server, for the second Ctrl-C.

    A shell step's processes are killed through its host connection. A query runs
    in the database server: closing our end would leave it running, holding its
    locks, until it next writes to us, so only a cancel request sent to the server
    stops it. Step types register one for as long as they wait (`scope`).

    Once fired, a cancel is sent again every `RETRY` seconds until its step stops
    waiting: a cancel that reaches the server before the query does (the step
    registered just before, or after, the Ctrl-C) finds nothing to cancel.

    `scope` yields an Event set before the first cancel is sent: the step type
    tells by it an error the cancel caused from one of its own (a timeout, a
    DBA's pg_cancel_backend).
    """

    RETRY = 1.0

    def __init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: cancel_all runs in the SIGINT handler
        self._active: dict[int, tuple[Callable[[], None], threading.Event, threading.Event]] = {}
        self._next = 0
        self.fired = False

    @contextmanager
    def scope(self, cancel: Callable[[], None]) -> Iterator[threading.Event]:
        requested, done = threading.Event(), threading.Event()
        key = -1
        try:
            with self._lock:
                key, self._next = self._next, self._next + 1
                self._active[key] = (cancel, requested, done)
                fired = self.fired
            if fired:  # the second Ctrl-C came first: `requested` is set before the wait
                self._keep_cancelling(cancel, requested, done)
            yield requested
        finally:
            done.set()
            with self._lock:
                self._active.pop(key, None)

    def cancel_all(self) -> None:
        """Start cancelling every registered wait, each from a thread of its own.

        Called from the SIGINT handler: a cancel is a network round trip (psycopg
        opens a connection to the server to send it) that must not hold up the
        main thread, nor deadlock with a `scope` the main thread is inside.
        """
        with self._lock:
            first, self.fired = not self.fired, True
            pending = list(self._active.values()) if first else []
        for cancel, requested, done in pending:
            self._keep_cancelling(cancel, requested, done)

    def _keep_cancelling(
        self, cancel: Callable[[], None], requested: threading.Event, done: threading.Event
    ) -> None:
        requested.set()

        def run() -> None:
            while not done.is_set():
                _safely(cancel)
                done.wait(self.RETRY)

        threading.Thread(target=run, name="cancel", daemon=True).start()


def _safely(cancel: Callable[[], None]) -> None:
    try:
        cancel()
    except Exception:
        pass  # best effort: it is sent again, and the step ends when the server answers


@dataclass
class RunContext:
    """What every host of one run shares."""

    run_id: str
    options: RunOptions
    bus: EventBus
    redactor: Redactor
    secrets: Secrets
    operator: Operator
    run_info: dict[str, Any]
    connect: Callable[[Host], Connection]
    connection_limit: ConnectionLimit | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # no new steps
    stop_reason: str = ""
    interrupted: bool = False
    run_once: RunOnce = field(default_factory=RunOnce)
    cancellers: Cancellers = field(default_factory=Cancellers)

    def request_stop(self, reason: str, interrupt: bool = False) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
        self.interrupted = self.interrupted or interrupt
        self.stop.set()

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the run is interrupted; True when it was."""
        return self.stop.wait(seconds) and self.interrupted


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
        self._lock = threading.Lock()
        self._busy = False  # a step of this host is running: never closed under it
        self._ever_opened = False

    def get(self) -> Connection:
        with self._lock:
            conn, opened = self._conn, False
            if conn is None:
                conn = self._connect(self.host)
                conn.open()
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
        conn = self._conn  # may be closed meanwhile: the limit, the walk's end
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
