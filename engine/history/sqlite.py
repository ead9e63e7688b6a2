"""The default history store: one SQLite file under $RUNBOOK_HOME.

WAL mode with `synchronous=NORMAL`: every committed transaction is in the WAL
file before `commit()` returns, so killing the engine (even `kill -9`) loses
nothing it recorded; only a power loss could drop the last commits, which is the
price of not calling fsync per event. Several engines may share the file:
writers queue on SQLite's lock (busy timeout) for the few microseconds a commit takes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema
from .store import HistoryError, SqlStore


@dataclass
class SQLiteStore(SqlStore):
    @classmethod
    def open(cls, path: str | Path) -> SQLiteStore:
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                # The history holds hostnames, commands and (redacted) output: owner only.
                path.touch(mode=0o600)
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            # Checkpoint (the only fsync in this mode) every ~40 MB of WAL rather than 4 MB:
            # a long run's commits then stay a write() each.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            store = cls(location=str(path), conn=conn)
            with store._tx():
                for table, column, kind in schema.ADDED_COLUMNS:
                    names = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                    if names and column not in names:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                for stmt in schema.statements(schema.SQLITE):
                    conn.execute(stmt)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open run history {path}: {exc}") from None
        return store

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        # IMMEDIATE: take the write lock at BEGIN, so check-then-insert (locks) is atomic.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # a failed COMMIT leaves it open, too
                self.conn.execute("ROLLBACK")
            raise
