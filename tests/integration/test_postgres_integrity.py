"""runbooks/postgres-integrity.yaml against a PostgreSQL of the test's own:
an index whose file the test corrupts is found by pg_amcheck, an orphan row
behind a NOT VALID foreign key is counted, and WAL archiving that fails is
critical. The shared server is only read, never broken."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from tests.fixtures.own_postgres import OwnPostgres
from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "postgres-integrity.yaml"


def inventory(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "db.yaml"
    db = {"address": "127.0.0.1", "vars": {"pg_port": port}}
    doc = {"defaults": {"connection": "local"}, "groups": {"databases": {"hosts": {"db1": db}}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def run(tmp_path: Path, port: int, database: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK, "-i", str(inventory(tmp_path, port)), "-p", f"database={database}", *args
    )
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc, "db1").items()}


def shop(server: OwnPostgres) -> str:
    """A database `shop` with orders, an index, and a customer-less order."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    dsn = server.dsn.rsplit("/", 1)[0] + "/shop"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int primary key)")
        conn.execute("CREATE TABLE orders (id int, customer int)")
        conn.execute("INSERT INTO customers SELECT generate_series(1, 10)")
        conn.execute("INSERT INTO orders SELECT g, g % 10 + 1 FROM generate_series(1, 5000) g")
        conn.execute("INSERT INTO orders VALUES (5001, 404)")  # its customer never existed
        conn.execute(
            "ALTER TABLE orders ADD CONSTRAINT orders_customer FOREIGN KEY (customer)"
            " REFERENCES customers (id) NOT VALID"
        )
        conn.execute("CREATE INDEX orders_id ON orders (id)")
    return dsn


def test_a_clean_database_passes_and_orphans_are_counted(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    shop(own_postgres)
    code, steps = run(tmp_path, own_postgres.port, "shop")
    assert steps["amcheck"]["state"] == "ok"
    assert steps["amcheck"]["stdout"].strip().endswith("no corruption found")
    assert [r["constraint"] for r in steps["unvalidated"]["rows"]] == ["orders_customer"]
    assert steps["orphans"]["rows"] == [
        {"constraint": "orders_customer", "table": "orders", "orphans": 1}
    ]
    assert steps["orphans"]["state"] == "critical"
    assert steps["archiving"]["rows"][0]["archive_mode"] == "off"
    assert steps["archiving"]["state"] == "warn"
    assert code == 2


def test_a_corrupt_index_and_failing_archiving_are_found(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    dsn = shop(own_postgres)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_relation_filepath('orders_id')").fetchone()
        assert row is not None
        conn.execute("CHECKPOINT")
    own_postgres.stop()
    index = own_postgres.data / str(row[0])
    with open(index, "r+b") as f:  # page 1 of the index: garbage over its items
        f.seek(8192 + 64)
        f.write(b"\xde\xad\xbe\xef" * 512)
    with open(own_postgres.data / "postgresql.auto.conf", "a") as conf:
        conf.write("archive_mode = on\narchive_command = 'false'\n")
    own_postgres.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()
            if failed and failed[0] > 0:
                break
            time.sleep(0.2)
    code, steps = run(tmp_path, own_postgres.port, "shop")
    assert steps["amcheck"]["state"] == "failed"
    assert "orders_id" in steps["amcheck"]["stdout"]  # pg_amcheck names the index
    assert steps["archiving"]["rows"][0]["failing_now"] is True
    assert steps["archiving"]["metrics"]["wal_archive_failing"]["state"] == "critical"
    assert steps["summary"]["state"] == "ok"  # every check ran, one failing or not
    assert code == 3


def test_a_dry_run_checks_everything_and_creates_nothing(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    had = pg_database.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'")
    code, steps = run(tmp_path, 5432, pg_database.name, "--dry-run")
    assert code in (0, 1, 2), steps
    assert steps["extension"]["state"] == "skipped"
    assert steps["invalid_indexes"]["state"] == "ok"
    assert pg_database.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'") == had
