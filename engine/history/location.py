"""Where the history is: $RUNBOOK_HISTORY (a PostgreSQL DSN, a SQLite path, or
off) or SQLite at $RUNBOOK_HOME/history.db. Back-ends are imported lazily:
psycopg only when the DSN asks for it."""

from __future__ import annotations

import os
from pathlib import Path

from .store import HistoryError, HistoryStore

DISABLED = ("off", "none", "disabled")


def runbook_home() -> Path:
    """$RUNBOOK_HOME, or ~/.local/state/runbook: the default history, kept output."""
    return Path(os.environ.get("RUNBOOK_HOME") or "~/.local/state/runbook").expanduser()


def history_location() -> str | None:
    """Where history goes: a DSN, a SQLite path, or None when RUNBOOK_HISTORY=off."""
    target = os.environ.get("RUNBOOK_HISTORY", "").strip()
    if target.lower() in DISABLED:
        return None
    if target:
        return target
    return str(runbook_home() / "history.db")


def open_store(location: str | None = None) -> HistoryStore:
    """Open (and create if needed) the history store at `location` or the default."""
    target = location or history_location()
    if target is None:
        raise HistoryError("run history is disabled (RUNBOOK_HISTORY=off)")
    if target.startswith(("postgresql://", "postgres://")) or "dbname=" in target:
        from .postgres import PostgresStore

        return PostgresStore.open(target)
    from .sqlite import SQLiteStore

    path = target.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SQLiteStore.open(path)


def open_history() -> HistoryStore:
    """The store, for commands that read it (`history`, `resume`)."""
    location = history_location()
    if location is None:
        raise HistoryError("run history is disabled (RUNBOOK_HISTORY=off): nothing to show")
    return open_store(location)
