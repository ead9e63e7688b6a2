"""A PostgreSQL history that goes away mid-run: a restart costs no event and
no step; a server that stays away stops the run closed, and resume knows
which step may have run. The server is the test's own (own_postgres), never
the shared one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from engine.history.postgres import PostgresStore
from engine.history.store import EventRow
from tests.fixtures.own_postgres import OwnPostgres
from tests.helpers import cli, write


def runbook(tmp_path: Path, middle: str) -> Path:
    return write(
        tmp_path,
        f"""
        runbook: history-goes-away
        steps:
          - name: before
            shell: echo before
          - name: middle
            shell: {middle!r}
          - name: after
            shell: echo after
          - name: last
            shell: echo last
        """,
    )


def results(dsn: str, run_id: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT step_id, state, count(*) FROM step_results WHERE run_id = %s "
            "GROUP BY step_id, state ORDER BY min(seq)",
            (run_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def last_run(dsn: str) -> dict[str, object]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT id, state, exit_code FROM runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return {"id": row[0], "state": row[1], "exit_code": row[2]}


def test_a_restart_mid_run_loses_nothing(
    tmp_path: Path, own_postgres: OwnPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_HISTORY", own_postgres.dsn)
    # The middle step restarts the history's server while the run records.
    # -l: the new server writes to its log, not to the step's stdout pipe.
    log = str(own_postgres.data / "log")
    rb = runbook(tmp_path, own_postgres.ctl_line("-l", log, "-m", "fast", "-w", "restart"))
    result = cli("run", rb)
    assert result.exit_code == 0, result.output
    run = last_run(own_postgres.dsn)
    assert (run["state"], run["exit_code"]) == ("ok", 0)
    assert results(own_postgres.dsn, str(run["id"])) == [
        ("before", "ok", 1),
        ("middle", "ok", 1),
        ("after", "ok", 1),
        ("last", "ok", 1),
    ]


def test_a_server_that_stays_away_stops_the_run_closed(
    tmp_path: Path, own_postgres: OwnPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_HISTORY", own_postgres.dsn)
    rb = runbook(tmp_path, own_postgres.ctl_line("-m", "immediate", "-w", "stop"))
    # Its own process: resume must see the first run's engine gone.
    env = {**os.environ, "RUNBOOK_HISTORY_RECONNECT": "1"}
    first = subprocess.run(
        [sys.executable, "-m", "engine", "run", str(rb)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert first.returncode == 4, first.stdout + first.stderr
    assert "did not come back within 1s" in first.stderr
    assert "no step starts after this" in first.stderr

    own_postgres.start()
    run = last_run(own_postgres.dsn)
    assert results(own_postgres.dsn, str(run["id"])) == [("before", "ok", 1)]
    # Resume: `middle` started and its end was lost: it may have run, so it is
    # not run again (it would stop the server a second time); the rest runs.
    resumed = cli("resume", str(run["id"]), "--yes", "--format", "json")
    assert resumed.exit_code == 0, resumed.output
    again = last_run(own_postgres.dsn)
    states = {s: st for s, st, _ in results(own_postgres.dsn, str(again["id"]))}
    assert states["after"] == "ok" and states["last"] == "ok"
    assert states["middle"] == "skipped"


def test_a_write_that_had_committed_is_not_doubled(own_postgres: OwnPostgres) -> None:
    """The connection dies after a commit landed (here: the backend is killed
    between two writes of the same row): the second try finds its own key."""
    store = PostgresStore.open(own_postgres.dsn)
    try:
        store.insert_run({"id": "r1", "runbook": "x", "state": "running", "started_at": "now"})
        event = EventRow("r1", 1, "2026-12-03T00:00:00", "log", None, None, {"m": 1})
        store.record(event)
        with psycopg.connect(own_postgres.dsn, autocommit=True) as admin:
            pid = store.conn.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        store.record(event)  # broken connection → reconnect → duplicate key: done
        new = EventRow("r1", 2, "2026-12-03T00:00:01", "log", None, None, {"m": 2})
        store.record(new)
        assert [e.seq for e in store.events("r1")] == [1, 2]
        assert store.conn.info.backend_pid != pid
        # A duplicate without a lost connection is a real error, not swallowed.
        with pytest.raises(psycopg.errors.UniqueViolation):
            store.record(new)
    finally:
        store.close()


def test_a_store_that_gave_up_writes_again_once_the_server_is_back(
    own_postgres: OwnPostgres,
) -> None:
    """A server away longer than the window: the write fails at once; the
    first write after it came back finds a new connection (one try, no wait)."""
    store = PostgresStore.open(own_postgres.dsn)
    store.reconnect_for = 0.5
    try:
        store.insert_run({"id": "r2", "runbook": "x", "state": "running", "started_at": "now"})
        own_postgres.ctl("-m", "immediate", "-w", "stop")
        first = EventRow("r2", 1, "2026-12-03T00:00:00", "log", None, None, {"m": 1})
        with pytest.raises(psycopg.OperationalError, match=r"did not come back within 0\.5s"):
            store.record(first)
        assert store.gave_up and store.conn.closed
        own_postgres.start()
        store.record(first)
        assert not store.gave_up
        assert [e.seq for e in store.events("r2")] == [1]
    finally:
        store.close()
