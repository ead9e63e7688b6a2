"""runbooks/postgres-performance.yaml against real PostgreSQL servers.

pg_stat_statements must be preloaded, which the shared server (5432) is not:
its test runs on a PostgreSQL of the test's own, restarted with the library in
shared_preload_libraries. Everything else runs on the shared server, on tables
of the test's own, and checks what the server says: index sizes, relfilenodes,
rows that a rolled-back EXPLAIN ANALYZE did not change, indexes that
create_indexes built (pg_indexes, pg_index.indisvalid) or did not build.
"""

from __future__ import annotations

import json
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
    # Slow statements bring the manual `optimise` step: acknowledged in advance here.
    code, s = run(
        tmp_path, "postgres", "-p", "slow_mean_ms=100", "--approve", "optimise", port=port
    )
    assert s["pgss"]["rows"][0]["ready"] is True and s["pgss"]["state"] == "ok"
    assert s["pgss_howto"]["state"] == "skipped"
    [slow] = [r for r in s["slow_statements"]["rows"] if "pg_sleep" in r["query"]]
    assert slow["calls"] == 3 and 190 <= slow["mean_ms"] < 1000
    assert s["slow_statements"]["state"] == "warn"
    assert metric(s["slow_statements"], "slow_statements") >= 1
    assert any("pg_sleep" in r["query"] for r in s["top_statements"]["rows"])
    optimise = s["optimise"]
    assert optimise["state"] == "ok" and "--approve optimise" in optimise["acknowledged_by"]
    assert "pg_sleep" in optimise["instructions"] and "select_related" in optimise["instructions"]
    assert code == 1, s

    # Without -p the threshold comes from the host's slow_query_ms: 1 s here.
    code, s = run(tmp_path, "postgres", port=port, slow_query_ms=1000)
    assert s["slow_statements"]["state"] == "ok"
    assert s["optimise"]["state"] == "skipped"  # nothing slow: nothing to do
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


# create_indexes: on a database of the test's own, so the only indexes there
# are the ones the runbook builds.

ORDERS_ROWS = 20000


@pytest.fixture
def orders(scratch: PgDatabase) -> PgDatabase:
    """orders: 20,000 rows, no index, never analysed (autovacuum off, so only
    the runbook's ANALYZE can set last_analyze); 60 sequential scans counted.
    dup: a column with a repeated value, on which a UNIQUE build fails."""
    scratch.query(
        "CREATE TABLE orders (id int, customer_id int, note text) WITH (autovacuum_enabled = off)"
    )
    scratch.query(
        f"INSERT INTO orders SELECT g, g % 1000, 'x' FROM generate_series(1, {ORDERS_ROWS}) g"
    )
    scratch.query("CREATE TABLE dup (k int) WITH (autovacuum_enabled = off)")
    scratch.query("INSERT INTO dup VALUES (1), (1), (2)")
    with psycopg.connect(scratch.dsn, autocommit=True) as conn:
        for _ in range(60):
            conn.execute("SELECT count(*) FROM orders WHERE customer_id = 7")

    def counted() -> bool:
        row = scratch.query(
            "SELECT seq_scan, n_live_tup FROM pg_stat_user_tables WHERE relname = 'orders'"
        )
        return bool(row) and row[0][0] >= 60 and row[0][1] >= ORDERS_ROWS

    wait_until(counted, "60 sequential scans of orders")
    return scratch


def indexes(db: PgDatabase) -> dict[str, tuple[str, bool]]:
    """Every index of the database: name -> (definition, valid), from the catalogue."""
    rows = db.query(
        "SELECT x.indexname, x.indexdef, i.indisvalid FROM pg_indexes x"
        " JOIN pg_index i ON i.indexrelid = format('%I.%I', x.schemaname, x.indexname)::regclass"
        " WHERE x.schemaname = 'public'"
    )
    return {name: (definition, valid) for name, definition, valid in rows}


def last_analyze(db: PgDatabase, table: str) -> Any:
    return db.scalar("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = %s", (table,))


def create(items: list[Any]) -> tuple[str, str]:
    return ("-p", f"create_indexes={json.dumps(items)}")


CUSTOMER_IDX = {"table": "orders", "columns": ["customer_id"]}
UNIQUE_IDX = {"table": "orders", "columns": ["id", "customer_id"], "name": "orders_id_uq", "unique": True}  # fmt: skip
EXPLAIN = ("-p", "explain_query=SELECT * FROM orders WHERE customer_id = 7")
HEURISTIC = ("-p", "min_table_rows=1000", "-p", "min_seq_scans=50")


def test_a_candidate_index_is_created_valid_and_its_table_analysed(
    tmp_path: Path, orders: PgDatabase
) -> None:
    assert indexes(orders) == {} and last_analyze(orders, "orders") is None
    args = (*create([CUSTOMER_IDX, UNIQUE_IDX]), *EXPLAIN, *HEURISTIC)
    code, s = run(tmp_path, orders.name, *args, "--yes", "--approve", "optimise")

    # The review found the table: a candidate, and a sequential scan in the plan.
    [cand] = s["missing_indexes"]["rows"]
    assert cand["table_name"] == "public.orders" and cand["seq_scan"] >= 60
    [scan] = s["explain_seq_scans"]["rows"]
    assert scan["table_name"] == "public.orders" and scan["big"] is True
    assert scan["table_rows"] == ORDERS_ROWS and scan["actual_rows"] == 20
    assert metric(s["explain_seq_scans"], "explain_big_seq_scans") == 1
    instructions = s["optimise"]["instructions"]
    assert "reads all of public.orders" in instructions
    assert '"table": "orders"' in instructions and "prefetch_related" in instructions

    # The requests as checked, then built.
    planned = [(r["name"], r["columns"], r["unique"]) for r in s["check_index_requests"]["rows"]]
    assert planned == [
        ("orders_customer_id_idx", ["customer_id"], False),
        ("orders_id_uq", ["id", "customer_id"], True),
    ]
    assert s["create_indexes"]["state"] == "ok", s["create_indexes"]
    built = [r["json"] for r in s["create_indexes"]["results"]]
    assert [b["index"] for b in built] == ["public.orders_customer_id_idx", "public.orders_id_uq"]
    assert all(b["created"] is True for b in built)
    assert indexes(orders) == {
        "orders_customer_id_idx": (
            "CREATE INDEX orders_customer_id_idx ON public.orders USING btree (customer_id)",
            True,
        ),
        "orders_id_uq": (
            "CREATE UNIQUE INDEX orders_id_uq ON public.orders USING btree (id, customer_id)",
            True,
        ),
    }
    wait_until(lambda: last_analyze(orders, "orders") is not None, "an ANALYZE of orders")

    # The check after: both there and valid, with their real sizes.
    after = {r["index"]: r for r in s["new_indexes"]["rows"]}
    assert s["new_indexes"]["state"] == "ok"
    for name in ("orders_customer_id_idx", "orders_id_uq"):
        row = after[f"public.{name}"]
        size = orders.scalar("SELECT pg_relation_size(%s::regclass)", (name,))
        assert row["valid"] is True and row["bytes"] == size > 0
    assert metric(s["new_indexes"], "new_index_mb") > 0
    assert s["invalid_indexes"]["rows"] == []
    assert code in (1, 2), s  # warnings of the review (no pg_stat_statements, the candidate)

    # Again, the same requests: already there, nothing to build or ask; the
    # plan now uses the index, so there is nothing to optimise either.
    code, s = run(tmp_path, orders.name, *create([CUSTOMER_IDX, UNIQUE_IDX]), *EXPLAIN)
    assert all(r["exists"] for r in s["check_index_requests"]["rows"])
    assert s["create_indexes"]["state"] == "skipped"
    assert s["new_indexes"]["state"] == "ok"
    plan = "\n".join(r["QUERY PLAN"] for r in s["explain"]["rows"])
    assert "orders_customer_id_idx" in plan and "Seq Scan" not in plan
    assert s["explain_seq_scans"]["rows"] == [] and s["optimise"]["state"] == "skipped"
    assert code in (0, 1, 2), s


def test_without_yes_no_index_is_created(tmp_path: Path, orders: PgDatabase) -> None:
    code, s = run(tmp_path, orders.name, *create([CUSTOMER_IDX]))
    assert s["check_index_requests"]["state"] == "ok"
    assert s["create_indexes"]["state"] == "aborted"
    assert "orders_customer_id_idx ON public.orders (customer_id)" in s["create_indexes"]["error"]
    assert code == 4
    assert indexes(orders) == {} and last_analyze(orders, "orders") is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"table": "orders", "columns": ["no_such_column"]},
         "no column no_such_column in table orders"),
        ({"table": "orders; DROP TABLE orders", "columns": ["id"]},
         "table: not a plain name: orders; DROP TABLE orders"),
        ({"table": "orders", "columns": ["id"], "name": 'x" ON dup (k); --'},
         "name: not a plain name"),
        ({"table": "no_such_table", "columns": ["id"]}, "no table no_such_table in database"),
        ({"table": "orders", "columns": ["id"], "unique": "yes"}, "unique: true or false"),
        ({"table": "orders", "column": ["id"]}, "unknown key column"),
        ("orders", "not a mapping"),
    ],
)  # fmt: skip
def test_a_bad_item_fails_before_any_index_is_made(
    tmp_path: Path, orders: PgDatabase, bad: Any, message: str
) -> None:
    code, s = run(tmp_path, orders.name, *create([CUSTOMER_IDX, bad]), "--yes")
    check = s["check_index_requests"]
    assert check["state"] == "failed"
    assert "nothing was created: item 2 " in check["error"] and message in check["error"]
    assert "item 1" not in check["error"]  # the good item is not blamed
    assert "create_indexes" not in s and "reindex" not in s  # the host stopped there
    assert code == 3
    assert indexes(orders) == {}
    assert orders.scalar("SELECT count(*) FROM orders") == ORDERS_ROWS


def test_a_failed_concurrent_build_leaves_no_invalid_index(
    tmp_path: Path, orders: PgDatabase
) -> None:
    bad = {"table": "dup", "columns": ["k"], "unique": True}  # k = 1 twice
    code, s = run(tmp_path, orders.name, *create([bad, CUSTOMER_IDX]), "--yes")
    failed, ok = s["create_indexes"]["results"]
    assert failed["state"] == "failed"
    assert 'could not create unique index "dup_k_idx"' in failed["error"]
    assert "Key (k)=(1) is duplicated" in failed["error"]
    assert "the INVALID index it left was dropped" in failed["error"]
    assert ok["state"] == "ok" and ok["json"]["index"] == "public.orders_customer_id_idx"
    # The catalogue: no dup_k_idx at all (neither valid nor invalid), the other one valid.
    assert orders.scalar("SELECT to_regclass('dup_k_idx') IS NULL")
    assert indexes(orders) == {
        "orders_customer_id_idx": (
            "CREATE INDEX orders_customer_id_idx ON public.orders USING btree (customer_id)",
            True,
        )
    }
    assert last_analyze(orders, "dup") is None  # not analysed: its item failed first
    rows = {r["index"]: r for r in s["new_indexes"]["rows"]}
    assert s["new_indexes"]["state"] == "failed" and "public.dup_k_idx" in s["new_indexes"]["error"]
    assert rows["public.dup_k_idx"]["present"] is False
    assert rows["public.orders_customer_id_idx"]["valid"] is True
    assert s["invalid_indexes"]["rows"] == []  # the review went on (keep_going)
    assert code == 3


def test_dry_run_creates_no_index(tmp_path: Path, orders: PgDatabase) -> None:
    args = (*create([CUSTOMER_IDX, UNIQUE_IDX]), *EXPLAIN, *HEURISTIC)
    code, s = run(tmp_path, orders.name, *args, "--dry-run")
    assert code in (0, 1, 2), s
    names = [r["name"] for r in s["check_index_requests"]["rows"]]  # checked, read-only
    assert names == ["orders_customer_id_idx", "orders_id_uq"]
    assert s["create_indexes"]["state"] == "skipped"
    assert s["new_indexes"]["state"] == "skipped"
    assert s["optimise"]["state"] == "skipped"  # a manual step is not asked in a dry run
    assert indexes(orders) == {} and last_analyze(orders, "orders") is None
