"""postgres-weekly's deadlock count against a real deadlock: two sessions
of a database of the test's own lock two rows in opposite order."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

ROOT = Path(__file__).resolve().parents[2]


def deadlock(db: PgDatabase) -> None:
    db.query("CREATE TABLE t (id int primary key, v int)")
    db.query("INSERT INTO t VALUES (1, 0), (2, 0)")
    both_hold = threading.Barrier(2)
    failures: list[str] = []

    def session(first: int, second: int) -> None:
        with psycopg.connect(db.dsn) as conn:
            conn.execute("UPDATE t SET v = v + 1 WHERE id = %s", (first,))
            both_hold.wait()
            try:
                conn.execute("UPDATE t SET v = v + 1 WHERE id = %s", (second,))
            except psycopg.errors.DeadlockDetected as exc:
                failures.append(str(exc))

    threads = [threading.Thread(target=session, args=pair) for pair in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(failures) == 1  # the server chose one victim


def test_a_deadlock_is_counted(scratch_db: PgDatabase) -> None:
    deadlock(scratch_db)
    deadline = time.monotonic() + 15  # statistics reach the view when a backend flushes them
    while (
        scratch_db.scalar(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
        < 1
    ):
        assert time.monotonic() < deadline, "the deadlock never reached pg_stat_database"
        time.sleep(0.2)
    _, doc = run_json(
        ROOT / "runbooks" / "postgres-weekly.yaml", "-i", str(ROOT / "inventories" / "lab.yaml"),
        "-p", f"database={scratch_db.name}",
    )  # fmt: skip
    step = steps_of(doc, "lab-db")["deadlocks"]
    assert step["data"]["rows"][0]["deadlocks"] == 1
    assert step["metrics"]["deadlocks_per_day"]["value"] > 0
