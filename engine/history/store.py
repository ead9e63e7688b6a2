"""The history store: one protocol, two SQL back-ends (SQLite, PostgreSQL).

Both back-ends share every statement here; a dialect only says how to connect,
how to spell placeholders and DDL types, and how to run a transaction. Each
`record()` / `record_many()` is one short transaction that is committed before
it returns, so an event the engine has handed to the store survives a `kill -9`
of the engine.

Rows hold only what the event bus let through, i.e. already-redacted data.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from engine import exitcodes
from engine.errors import EngineError

from .gates import Gate, GateTables, Vote

T = TypeVar("T")

# Run states beyond the step states: the run row is written before the run ends.
RUNNING = "running"
CRASHED = "error"  # the engine itself raised; the run is resumable

RUN_COLUMNS = (
    "id",
    "runbook",
    "path",
    "runbook_digest",
    "step_ids",
    "params",
    "options",
    "hosts",
    "inventory",
    "inventory_digest",
    "operator",
    "dry_run",
    "state",
    "exit_code",
    "started_at",
    "finished_at",
    "resumed_from",
    "pid",
    "control_node",
    "incident",
)
JSON_RUN_COLUMNS = frozenset({"step_ids", "params", "options", "hosts"})
TABLES = ("runs", "events", "step_results", "metrics", "locks", "gates", "votes", "audit")


class HistoryError(EngineError):
    """The history store cannot be opened or written (exit 64: fix the environment)."""

    exit_code = exitcodes.USAGE


@dataclass
class EventRow:
    run_id: str
    seq: int
    at: str
    kind: str
    host: str | None
    step_id: str | None
    payload: dict[str, Any]


@dataclass
class StepRow:
    run_id: str
    host: str
    step_id: str
    seq: int
    name: str
    state: str
    started_at: str | None
    finished_at: str
    duration_ms: int
    error: str | None
    result: dict[str, Any]  # StepResult.to_dict() plus host/sensitive


@dataclass
class MetricRow:
    run_id: str
    host: str
    step_id: str
    name: str
    value: float | None
    state: str
    at: str
    unit: str | None = None


@dataclass
class LockHolder:
    runbook: str
    host: str
    run_id: str
    pid: int
    control_node: str
    started_at: str


@dataclass
class RunQuery:
    runbook: str | None = None
    state: str | None = None
    limit: int = 20
    incident: str | None = None


class HistoryStore(Protocol):
    """What the recorder, `runbook history` and `runbook resume` need from a store."""

    location: str

    def insert_run(self, row: dict[str, Any]) -> None: ...
    def update_run(self, run_id: str, **fields: Any) -> None: ...
    def record(
        self, event: EventRow, step: StepRow | None = None, metrics: list[MetricRow] | None = None
    ) -> None: ...
    def record_many(self, rows: list[tuple[EventRow, StepRow | None, list[MetricRow]]]) -> None: ...
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    def find_run_id(self, prefix: str) -> list[str]: ...
    def list_runs(self, query: RunQuery) -> list[dict[str, Any]]: ...
    def events(self, run_id: str) -> list[EventRow]: ...
    def step_rows(self, run_id: str) -> list[StepRow]: ...
    def metric_rows(self, name: str, runbook: str | None, limit: int) -> list[dict[str, Any]]: ...
    def try_lock(self, holder: LockHolder) -> LockHolder | None: ...
    def take_over_lock(self, stale: LockHolder, holder: LockHolder) -> bool: ...
    def release_locks(self, run_id: str) -> None: ...
    def dump(self) -> dict[str, list[dict[str, Any]]]: ...
    def close(self) -> None: ...
    # Gates answered by others, votes and the audit trail (engine/history/gates.py).
    def insert_gate(self, gate: Gate) -> None: ...
    def update_gate(self, gate: Gate) -> None: ...
    def gates(self, run_id: str | None = None, state: str | None = None) -> list[Gate]: ...
    def add_vote(self, vote: Vote) -> None: ...
    def votes(self, run_id: str, step_id: str | None = None) -> list[Vote]: ...
    def add_audit(
        self, user: str, action: str, run_id: str | None, detail: dict[str, Any]
    ) -> None: ...
    def audit(self, run_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]: ...


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)


def loads(value: Any) -> Any:
    """SQLite hands JSON back as text, PostgreSQL's jsonb as Python objects."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


@dataclass
class SqlStore(GateTables):
    """The statements both back-ends share. Subclasses provide the connection."""

    location: str
    conn: Any = None
    placeholder: str = "?"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ dialect

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        raise NotImplementedError

    def _again(self, work: Callable[[], T], retry: Callable[[], T] | None = None) -> T:
        """Do `work` (one statement or transaction). A back-end whose server can
        go away (PostgreSQL) reconnects and then does `retry` (default: `work`)."""
        return work()

    def _unless_recorded(self, insert: Callable[[], None]) -> Callable[[], None]:
        """`insert` done again after a lost connection: a duplicate key means
        the first try had committed (a back-end that retries says how to see it)."""
        return insert

    def _ts(self, value: Any) -> str | None:
        """A timestamp as read back: ISO text in both back-ends."""
        if value is None or isinstance(value, str):
            return value
        return str(value.isoformat(timespec="milliseconds"))  # a datetime from psycopg

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def _write(self, *statements: Any) -> None:
        """(sql, params) pairs, flattened, committed together."""
        pairs = list(zip(statements[::2], statements[1::2], strict=True))

        def write() -> None:
            with self._tx():
                for sql, params in pairs:
                    self._run(sql, params)

        with self._lock:
            self._again(write)

    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        def fetch() -> list[dict[str, Any]]:
            cur = self._run(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        with self._lock:
            return self._again(fetch)

    # --------------------------------------------------------------- runs

    def insert_run(self, row: dict[str, Any]) -> None:
        cols = [c for c in RUN_COLUMNS if c in row]
        values = tuple(dumps(row[c]) if c in JSON_RUN_COLUMNS else row[c] for c in cols)
        sql = f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

        def insert() -> None:
            self._run(sql, values)

        with self._lock:
            self._again(insert, self._unless_recorded(insert))

    def update_run(self, run_id: str, **fields: Any) -> None:
        cols = [c for c in fields if c in RUN_COLUMNS]
        values = [dumps(fields[c]) if c in JSON_RUN_COLUMNS else fields[c] for c in cols]
        sql = f"UPDATE runs SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?"
        with self._lock:
            self._again(lambda: self._run(sql, (*values, run_id)))

    def _run_row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for c in JSON_RUN_COLUMNS:
            out[c] = loads(out[c]) if out.get(c) is not None else None
        out["dry_run"] = bool(out.get("dry_run"))
        for c in ("started_at", "finished_at"):
            out[c] = self._ts(out.get(c))
        return out

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._fetch("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._run_row(rows[0]) if rows else None

    def find_run_id(self, prefix: str) -> list[str]:
        rows = self._fetch(
            "SELECT id FROM runs WHERE id LIKE ? ORDER BY started_at DESC LIMIT 5",
            (prefix.replace("%", "").replace("_", "") + "%",),
        )
        return [r["id"] for r in rows]

    def list_runs(self, query: RunQuery) -> list[dict[str, Any]]:
        where, params = [], []
        if query.runbook:
            where.append("runbook = ?")
            params.append(query.runbook)
        if query.state:
            where.append("state = ?")
            params.append(query.state)
        if query.incident:
            where.append("incident = ?")
            params.append(query.incident)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        return [self._run_row(r) for r in self._fetch(sql, (*params, query.limit))]

    # ------------------------------------------------------------- events

    def record(
        self, event: EventRow, step: StepRow | None = None, metrics: list[MetricRow] | None = None
    ) -> None:

        def insert() -> None:
            self._insert_event(event)

        if step is None and not metrics:
            # One statement is its own transaction in autocommit mode: no BEGIN/COMMIT.
            with self._lock:
                self._again(insert, self._unless_recorded(insert))
            return
        self.record_many([(event, step, metrics or [])])

    def record_many(self, rows: list[tuple[EventRow, StepRow | None, list[MetricRow]]]) -> None:
        """Several events' rows, committed together in one transaction."""

        def insert() -> None:
            with self._tx():
                for event, step, metrics in rows:
                    self._insert_rows(event, step, metrics)

        with self._lock:
            self._again(insert, self._unless_recorded(insert))

    def _insert_rows(self, event: EventRow, step: StepRow | None, metrics: list[MetricRow]) -> None:
        self._insert_event(event)
        if step is not None:
            self._run(
                "INSERT INTO step_results (run_id, host, step_id, seq, name, state, "
                "started_at, finished_at, duration_ms, error, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    step.run_id,
                    step.host,
                    step.step_id,
                    step.seq,
                    step.name,
                    step.state,
                    step.started_at,
                    step.finished_at,
                    step.duration_ms,
                    step.error,
                    dumps(step.result),
                ),
            )
        for m in metrics:
            self._run(
                "INSERT INTO metrics (run_id, host, step_id, name, value, state, unit, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (m.run_id, m.host, m.step_id, m.name, m.value, m.state, m.unit, m.at),
            )

    def _insert_event(self, event: EventRow) -> None:
        self._run(
            "INSERT INTO events (run_id, seq, at, kind, host, step_id, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.run_id,
                event.seq,
                event.at,
                event.kind,
                event.host,
                event.step_id,
                dumps(event.payload),
            ),
        )

    def events(self, run_id: str) -> list[EventRow]:
        rows = self._fetch("SELECT * FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [
            EventRow(
                r["run_id"],
                r["seq"],
                self._ts(r["at"]) or "",
                r["kind"],
                r["host"],
                r["step_id"],
                loads(r["payload"]) or {},
            )
            for r in rows
        ]

    def step_rows(self, run_id: str) -> list[StepRow]:
        rows = self._fetch("SELECT * FROM step_results WHERE run_id = ? ORDER BY seq", (run_id,))
        return [
            StepRow(
                r["run_id"],
                r["host"],
                r["step_id"],
                r["seq"],
                r["name"],
                r["state"],
                self._ts(r["started_at"]),
                self._ts(r["finished_at"]) or "",
                r["duration_ms"],
                r["error"],
                loads(r["result"]) or {},
            )
            for r in rows
        ]

    def metric_rows(self, name: str, runbook: str | None, limit: int) -> list[dict[str, Any]]:
        sql = (
            "SELECT m.run_id, m.host, m.step_id, m.name, m.value, m.state, m.unit, m.at, "
            "r.runbook FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.name = ?"
        )
        params: list[Any] = [name]
        if runbook:
            sql += " AND r.runbook = ?"
            params.append(runbook)
        # The newest `limit` values, returned oldest first, as a trend reads.
        sql += " ORDER BY m.at DESC LIMIT ?"
        rows = self._fetch(sql, (*params, limit))
        for r in rows:
            r["at"] = self._ts(r["at"])
        return list(reversed(rows))

    # -------------------------------------------------------------- locks

    def try_lock(self, holder: LockHolder) -> LockHolder | None:
        """Take the (runbook, host) lock, or return whoever holds it."""
        with self._lock, self._tx():
            cur = self._run(
                "INSERT INTO locks (runbook, host, run_id, pid, control_node, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (runbook, host) DO NOTHING",
                (
                    holder.runbook,
                    holder.host,
                    holder.run_id,
                    holder.pid,
                    holder.control_node,
                    holder.started_at,
                ),
            )
            if cur.rowcount == 1:
                return None
            cur = self._run(
                "SELECT runbook, host, run_id, pid, control_node, started_at FROM locks "
                "WHERE runbook = ? AND host = ?",
                (holder.runbook, holder.host),
            )
            row = cur.fetchone()
        if row is None:  # released between the two statements: try again
            return self.try_lock(holder)
        return LockHolder(row[0], row[1], row[2], row[3], row[4], self._ts(row[5]) or "")

    def take_over_lock(self, stale: LockHolder, holder: LockHolder) -> bool:
        """Replace a stale holder, only if it still holds the lock (compare-and-set)."""
        with self._lock, self._tx():
            cur = self._run(
                "UPDATE locks SET run_id = ?, pid = ?, control_node = ?, started_at = ? "
                "WHERE runbook = ? AND host = ? AND run_id = ? AND pid = ?",
                (
                    holder.run_id,
                    holder.pid,
                    holder.control_node,
                    holder.started_at,
                    stale.runbook,
                    stale.host,
                    stale.run_id,
                    stale.pid,
                ),
            )
            return bool(cur.rowcount == 1)

    def release_locks(self, run_id: str) -> None:
        with self._lock:
            self._again(lambda: self._run("DELETE FROM locks WHERE run_id = ?", (run_id,)))

    # --------------------------------------------------------------- misc

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table (for audits and for the secret-leak tests)."""
        return {t: self._fetch(f"SELECT * FROM {t}") for t in TABLES}

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
