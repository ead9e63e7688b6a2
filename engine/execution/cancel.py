"""Stopping work that a step waits on in another server, on the second Ctrl-C."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


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
