"""runbooks/postgres-performance.yaml against real PostgreSQL servers.

pg_stat_statements must be preloaded, which the shared server (5432) is not:
its test runs on a PostgreSQL of the test's own, restarted with the library in
shared_preload_libraries. Everything else runs on the shared server, on tables
of the test's own, and checks what the server says: index sizes, relfilenodes,
rows that a rolled-back EXPLAIN ANALYZE did not change.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.fixtures.own_postgres import OwnPostgres
from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "postgres-performance.yaml"


def inventory(tmp_path: Path, port: int, **host_vars: Any) -> Path:
    path = tmp_path / f"db-{port}.yaml"
    db = {"address": "127.0.0.1", "vars": {"pg_port": port, **host_vars}}
    doc = {"defaults": {"connection": "local"}, "groups": {"databases": {"hosts": {"db1": db}}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def run(
    tmp_path: Path, database: str, *args: str, port: int = 5432, **host_vars: Any
) -> tuple[int, dict[str, Any]]:
    inv = inventory(tmp_path, port, **host_vars)
    code, doc = run_json(RUNBOOK, "-i", str(inv), "-p", f"database={database}", *args)
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc, "db1").items()}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """The cumulative statistics reach the pg_stat views when a backend flushes
    them (at exit, or after PGSTAT_MIN_INTERVAL): poll, bounded."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"the statistics never showed {what}"
        time.sleep(0.2)


def filenode(db: PgDatabase, index: str) -> int:
    return db.scalar("SELECT pg_relation_filenode(%s::regclass)", (index,))


def metric(step: dict[str, Any], name: str) -> Any:
    return step["metrics"][name]["value"]


@pytest.fixture
def scratch(pg_database: PgDatabase) -> Iterator[PgDatabase]:
    """A database of this test's own on the shared server, dropped afterwards."""
    name = f"rb_perf_{uuid.uuid4().hex[:8]}"
    pg_database.query(f'CREATE DATABASE "{name}"')
    try:
        yield PgDatabase(name)
    finally:
        pg_database.query(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def bloated_index(pg_database: PgDatabase) -> Iterator[str]:
    """An index 8x the size of its packed self: 50,000 keys, 90 % deleted, analysed."""
    table = f"bloat_{uuid.uuid4().hex[:8]}"
    pg_database.query(f"CREATE TABLE {table} (id int) WITH (autovacuum_enabled = off)")
    pg_database.query(f"INSERT INTO {table} SELECT generate_series(1, 50000)")
    pg_database.query(f"CREATE INDEX {table}_id ON {table} (id)")
    pg_database.query(f"DELETE FROM {table} WHERE id % 10 <> 0")
    pg_database.query(f"ANALYZE {table}")
    try:
        yield f"public.{table}_id"
    finally:
        pg_database.query(f"DROP TABLE IF EXISTS {table}")


def test_slow_statements_are_listed_when_pg_stat_statements_is_loaded(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    with psycopg.connect(own_postgres.dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    own_postgres.stop()
    own_postgres.start()  # the library is loaded at server start only
    with psycopg.connect(own_postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.2)")

    port = own_postgres.port
    code, s = run(tmp_path, "postgres", "-p", "slow_mean_ms=100", port=port)
    assert s["pgss"]["rows"][0]["ready"] is True and s["pgss"]["state"] == "ok"
    assert s["pgss_howto"]["state"] == "skipped"
    [slow] = [r for r in s["slow_statements"]["rows"] if "pg_sleep" in r["query"]]
    assert slow["calls"] == 3 and 190 <= slow["mean_ms"] < 1000
    assert s["slow_statements"]["state"] == "warn"
    assert metric(s["slow_statements"], "slow_statements") >= 1
    assert any("pg_sleep" in r["query"] for r in s["top_statements"]["rows"])
    assert code == 1, s

    # Without -p the threshold comes from the host's slow_query_ms: 1 s here.
    code, s = run(tmp_path, "postgres", port=port, slow_query_ms=1000)
    assert s["slow_statements"]["state"] == "ok"
    assert not any("pg_sleep" in r["query"] for r in s["slow_statements"]["rows"])


def test_without_pg_stat_statements_it_says_how_to_enable_it(
    tmp_path: Path, scratch: PgDatabase
) -> None:
    # Neither created nor loaded (the shared server does not preload it).
    code, s = run(tmp_path, scratch.name)
    howto = s["pgss_howto"]["message"]
    assert s["pgss"]["state"] == "warn"
    assert "shared_preload_libraries" in howto and "restart PostgreSQL" in howto
    assert f"in database {scratch.name}: CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in howto
    assert s["top_statements"]["state"] == s["slow_statements"]["state"] == "skipped"
    assert code in (1, 2), s  # a warning, never a failed run

    # Created but not loaded: reading the view would error; the probe does not read it.
    scratch.query("CREATE EXTENSION pg_stat_statements")
    code, s = run(tmp_path, scratch.name)
    howto = s["pgss_howto"]["message"]
    assert s["pgss"]["rows"][0]["installed_version"] and not s["pgss"]["rows"][0]["loaded"]
    assert "ALTER SYSTEM SET shared_preload_libraries" in howto
    assert "CREATE EXTENSION" not in howto
    assert s["slow_statements"]["state"] == "skipped"
    assert code in (1, 2), s


def test_unused_index_and_missing_index_candidate(tmp_path: Path, pg_database: PgDatabase) -> None:
    tag = uuid.uuid4().hex[:8]
    unused, scanned = f"unused_{tag}", f"scanned_{tag}"
    pg_database.query(f"CREATE TABLE {unused} (id int, k int)")
    pg_database.query(f"INSERT INTO {unused} SELECT g, g % 100 FROM generate_series(1, 5000) g")
    pg_database.query(f"CREATE INDEX {unused}_k ON {unused} (k)")  # never used below
    pg_database.query(f"CREATE TABLE {scanned} (id int, k int)")  # no index at all
    pg_database.query(f"INSERT INTO {scanned} SELECT g, g % 100 FROM generate_series(1, 5000) g")
    try:
        with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
            for _ in range(60):
                conn.execute(f"SELECT count(*) FROM {scanned} WHERE k = 7")

        def counted() -> bool:
            row = pg_database.query(
                "SELECT seq_scan, n_live_tup FROM pg_stat_user_tables WHERE relname = %s",
                (scanned,),
            )
            return bool(row) and row[0][0] >= 60 and row[0][1] >= 5000

        wait_until(counted, f"60 sequential scans of {scanned}")
        args = ("-p", "top=100", "-p", "unused_index_mb=0.01", "-p", "min_table_rows=1000")
        code, s = run(tmp_path, pg_database.name, *args, "-p", "min_seq_scans=50")
    finally:
        pg_database.query(f"DROP TABLE IF EXISTS {unused}, {scanned}")

    [idx] = [r for r in s["unused_indexes"]["rows"] if r["index"] == f"public.{unused}_k"]
    assert idx["bytes"] > 0 and idx["table_name"] == f"public.{unused}"
    assert idx["total_bytes"] >= idx["bytes"]
    assert s["unused_indexes"]["state"] == "warn"  # > 0.01 MiB never scanned
    [cand] = [r for r in s["missing_indexes"]["rows"] if r["table_name"] == f"public.{scanned}"]
    assert cand["seq_scan"] >= 60 and cand["idx_scan"] == 0 and cand["indexes"] == 0
    assert cand["live_rows"] >= 5000
    assert not any(r["table_name"] == f"public.{unused}" for r in s["missing_indexes"]["rows"])
    assert s["missing_indexes"]["state"] == "warn"
    busiest = {r["table_name"]: r for r in s["busiest_tables"]["rows"]}
    assert busiest[f"public.{unused}"]["inserted"] == 5000  # where the writes went
    assert code in (1, 2), s


def test_reindex_needs_approval_then_rebuilds_the_index(
    tmp_path: Path, pg_database: PgDatabase, bloated_index: str
) -> None:
    before = filenode(pg_database, bloated_index)
    size_before = pg_database.scalar("SELECT pg_relation_size(%s::regclass)", (bloated_index,))

    # Named, but reindex=false: no question asked, nothing rebuilt.
    code, s = run(tmp_path, pg_database.name, "-p", f"indexes={bloated_index}")
    assert s["reindex_targets"]["rows"][0]["index"] == bloated_index
    assert s["reindex"]["state"] == "skipped" and code != 4

    # The estimate picks the bloated index; without --yes the gate is declined.
    code, s = run(tmp_path, pg_database.name, "-p", "reindex=true", "-p", "index_min_mb=0")
    [est] = [r for r in s["index_bloat"]["rows"] if r["index"] == bloated_index]
    assert est["bloated"] is True and est["ratio"] > 4
    assert bloated_index in [r["index"] for r in s["reindex_targets"]["rows"]]
    assert s["reindex"]["state"] == "aborted" and bloated_index in s["reindex"]["error"]
    assert code == 4
    assert filenode(pg_database, bloated_index) == before  # nothing rebuilt

    # Approved, for the named index only.
    args = ("-p", "reindex=true", "-p", f"indexes={bloated_index}", "-p", "index_min_mb=0")
    code, s = run(tmp_path, pg_database.name, *args, "--yes")
    assert s["reindex"]["state"] == "ok", s["reindex"]
    assert filenode(pg_database, bloated_index) != before
    [after] = s["reindex_after"]["rows"]
    size_now = pg_database.scalar("SELECT pg_relation_size(%s::regclass)", (bloated_index,))
    assert after["bytes_before"] == size_before and after["bytes_after"] == size_now
    assert size_now < size_before / 4 and after["rebuilt"] is True
    assert metric(s["reindex_after"], "reindex_saved_mb") > 0
    assert not any(r["index"] == bloated_index for r in s["bloat_now"]["rows"] if r["bloated"])
    assert s["invalid_indexes"]["rows"] == []
    assert code in (0, 1, 2), s


def test_reindex_refuses_a_name_that_is_not_an_index(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    code, s = run(tmp_path, pg_database.name, "-p", "reindex=true", "-p", "indexes=no_such_idx")
    assert s["reindex_targets"]["state"] == "failed"
    assert "no_such_idx" in s["reindex_targets"]["error"]
    assert s["reindex"]["state"] == "skipped"
    assert code == 3


def test_explain_query_shows_the_plan_and_rolls_back(
    tmp_path: Path, pg_database: PgDatabase, pg_table: str
) -> None:
    pg_database.query(f"INSERT INTO {pg_table} (v) SELECT 'x' FROM generate_series(1, 10)")
    query = f"DELETE FROM {pg_table} WHERE id <= 5"
    code, s = run(tmp_path, pg_database.name, "-p", f"explain_query={query}")
    plan = "\n".join(r["QUERY PLAN"] for r in s["explain"]["rows"])
    assert s["explain"]["state"] == "ok"
    assert f"Delete on {pg_table}" in plan and "actual time=" in plan and "Buffers:" in plan
    assert "Execution Time" in s["explain_plan"]["message"]
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 10  # rolled back
    assert code in (0, 1, 2), s


def test_dry_run_changes_nothing(
    tmp_path: Path, pg_database: PgDatabase, bloated_index: str, pg_table: str
) -> None:
    pg_database.query(f"INSERT INTO {pg_table} (v) SELECT 'x' FROM generate_series(1, 10)")
    before = filenode(pg_database, bloated_index)
    args = ("-p", "reindex=true", "-p", f"indexes={bloated_index}")
    query = f"DELETE FROM {pg_table}"
    code, s = run(tmp_path, pg_database.name, *args, "-p", f"explain_query={query}", "--dry-run")
    assert code in (0, 1, 2), s
    assert s["reindex_targets"]["rows"][0]["index"] == bloated_index  # shown, read-only
    assert s["reindex"]["state"] == "skipped"
    assert s["explain"]["state"] == "skipped" and s["explain"]["would_write"] is True
    assert s["unused_indexes"]["state"] != "skipped"  # the review itself runs
    assert filenode(pg_database, bloated_index) == before
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 10
