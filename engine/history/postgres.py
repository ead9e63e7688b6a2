"""A shared history in PostgreSQL, chosen with RUNBOOK_HISTORY=postgresql://...

The connection is in autocommit mode and every `record()` is its own short
transaction, committed before the engine goes on: what was recorded stays
recorded whatever happens to the engine afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine.redaction import redact_dsn, scrub

from . import schema
from .store import HistoryError, SqlStore

# Serializes schema creation when several engines start on an empty database.
_DDL_LOCK_KEY = 0x52554E424F4F4B  # "RUNBOOK"


@dataclass
class PostgresStore(SqlStore):
    @classmethod
    def open(cls, dsn: str) -> PostgresStore:
        import psycopg

        shown = redact_dsn(dsn)
        try:
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise HistoryError(
                f"cannot connect to the run history {shown}: {_first_line(exc, dsn)}"
            ) from None
        store = cls(location=shown, conn=conn, placeholder="%s")
        try:
            with store._tx():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
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


def _first_line(exc: Exception, dsn: str) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return scrub(text, dsn)
