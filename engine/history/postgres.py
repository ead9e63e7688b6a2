"""A shared history in PostgreSQL, chosen with RUNBOOK_HISTORY=postgresql://...

The connection is in autocommit mode and every `record()` is its own short
transaction, committed before the engine goes on: what was recorded stays
recorded whatever happens to the engine afterwards.

A server that restarts (a failover, a maintenance restart) costs no event:
a write that finds the connection broken reconnects, for up to
`reconnect_for` seconds, and writes again. Rows have primary keys, so a
write whose commit did land before the break is not doubled: its second try
finds its own key and counts as done. Only when the server stays away does
the run fail closed (recorder.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.redaction import redact_dsn, scrub

from . import schema
from .store import HistoryError, SqlStore

T = TypeVar("T")

# Serializes schema creation when several engines start on an empty database.
_DDL_LOCK_KEY = 0x52554E424F4F4B  # "RUNBOOK"


@dataclass
class PostgresStore(SqlStore):
    dsn: str = ""
    # Seconds a restarting server is waited for: $RUNBOOK_HISTORY_RECONNECT or 15.
    reconnect_for: float = field(
        default_factory=lambda: _seconds("RUNBOOK_HISTORY_RECONNECT", 15.0)
    )
    # Once a server stayed away that long, later writes try once and fail fast:
    # a run stopping closed should not wait the window out again per event.
    gave_up: bool = False

    @classmethod
    def open(cls, dsn: str) -> PostgresStore:
        import psycopg

        shown = redact_dsn(dsn)
        try:
            conn = _connect(dsn)
        except psycopg.Error as exc:
            raise HistoryError(
                f"cannot connect to the run history {shown}: {_first_line(exc, dsn)}"
            ) from None
        store = cls(location=shown, conn=conn, placeholder="%s", dsn=dsn)
        try:
            with store._tx():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
                for table, column, kind in schema.ADDED_COLUMNS:
                    conn.execute(
                        f"ALTER TABLE IF EXISTS {table} ADD COLUMN IF NOT EXISTS {column} {kind}"
                    )
                for stmt in schema.statements(schema.POSTGRES):
                    conn.execute(stmt)
        except psycopg.Error as exc:
            conn.close()
            raise HistoryError(
                f"cannot create the history tables in {shown}: {_first_line(exc, dsn)}"
            ) from None
        return store

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self.conn.transaction():
            yield self.conn

    def _again(self, work: Callable[[], T], retry: Callable[[], T] | None = None) -> T:
        import psycopg

        try:
            return work()
        except psycopg.OperationalError:
            # Broken: the server went away. Closed: an earlier reconnect gave
            # up and left no connection. Else the server answered: a real error.
            if self.conn is None or not (self.conn.broken or self.conn.closed):
                raise
        self._reconnect()
        return (retry or work)()

    def _unless_recorded(self, insert: Callable[[], None]) -> Callable[[], None]:
        import psycopg

        def again() -> None:
            try:
                insert()
            except psycopg.errors.UniqueViolation:
                pass  # the first try had committed before the connection broke

        return again

    def _reconnect(self) -> None:
        """A new connection, tried until `reconnect_for` has passed."""
        import psycopg

        deadline = time.monotonic() + (0 if self.gave_up else self.reconnect_for)
        pause = 0.2
        while True:
            try:
                self.conn.close()
                self.conn = _connect(self.dsn)
                self.gave_up = False
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() + pause > deadline:
                    self.gave_up = True
                    raise psycopg.OperationalError(
                        f"the server went away and did not come back within "
                        f"{self.reconnect_for:g}s: {_first_line(exc, self.dsn)}"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 2.0)


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        return max(0.0, float(text)) if text else default
    except ValueError:
        raise HistoryError(f"{name}={text!r}: expected a number of seconds") from None


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


def _first_line(exc: Exception, dsn: str) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return scrub(text, dsn)
