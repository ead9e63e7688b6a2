"""runbooks/postgres-restore.yaml against the shared PostgreSQL (a live
database of the test's own) and the moto S3 server: a damaged database is
restored from the newest S3 backup or a local archive, the live copy is kept,
the writers are stopped and started around the swap, and a bad backup leaves
the live database as it was."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.s3server import S3Server
from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "postgres-restore.yaml"
LAB = ROOT / "inventories" / "lab.yaml"
APPROVE = ("--approve", "declare", "--approve", "handover")


@pytest.fixture
def live(scratch_db: PgDatabase) -> PgDatabase:
    """A live database with 100 orders and 5 customers (scratch_db drops it
    and every database the runbook makes beside it)."""
    db = scratch_db
    db.query("CREATE TABLE orders (id int primary key, total numeric)")
    db.query("INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 100) g")
    db.query("CREATE TABLE customers (id int primary key, name text)")
    db.query("INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 5) g")
    return db


def dump(db: PgDatabase, *args: str) -> bytes:
    done = subprocess.run(
        ["pg_dump", "-h", db.host, "-p", str(db.port), "-U", db.user, *args, db.name],
        capture_output=True,
        check=True,
    )
    return done.stdout


def run(
    db: PgDatabase, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK, "-i", str(LAB), "-p", f"database={db.name}",
        "-p", f"safety_dir={tmp_path / 'safety'}", *args, env=env,
    )  # fmt: skip
    steps = {k: {**v.get("data", {}), **v} for k, v in steps_of(doc, "lab-db").items()}
    return code, steps


def databases(db: PgDatabase) -> list[str]:
    rows = db.query("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{db.name}%",))
    return sorted(r[0] for r in rows)


def test_restore_from_the_newest_s3_backup_keeps_the_live_copy(
    live: PgDatabase, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key=f"postgres/{live.name}_20260101T000000.sql.gz",
                      Body=gzip.compress(b"SELECT 1;\n"))  # fmt: skip
    newest = f"postgres/{live.name}_20261201T020000.sql.gz"
    client.put_object(Bucket=s3_bucket, Key=newest, Body=gzip.compress(dump(live)))
    live.query("DELETE FROM orders WHERE id > 10")  # the incident: 90 orders gone
    order = tmp_path / "order"
    code, steps = run(
        live, tmp_path,
        "-p", f"bucket={s3_bucket}", "-p", f"endpoint={s3_server.endpoint}",
        "-p", "verify_table=orders",
        "-p", f"stop_cmd=echo stop >> {order}", "-p", f"start_cmd=echo start >> {order}",
        "--yes", *APPROVE, env=s3_server.env(),
    )  # fmt: skip
    assert code == 0, [
        (k, v["state"], v.get("error"))
        for k, v in steps.items()
        if v["state"] not in ("ok", "skipped")
    ]
    assert steps["chosen"]["data"]["key"] == newest
    assert live.scalar("SELECT count(*) FROM orders") == 100  # restored
    assert steps["live_rows"]["rows"][0]["n"] == 100
    assert order.read_text().split() == ["stop", "start"]
    # The damaged database is kept whole under another name, closed to sessions.
    aside = [d for d in databases(live) if "_before_" in d]
    assert len(aside) == 1 and not [d for d in databases(live) if "_restored_" in d]
    allowed = live.scalar("SELECT datallowconn FROM pg_database WHERE datname = %s", (aside[0],))
    assert allowed is False
    assert live.scalar("SELECT datallowconn FROM pg_database WHERE datname = %s", (live.name,))
    # And dumped before the swap: the file holds the 10 orders of the damage.
    safety = sorted((tmp_path / "safety").iterdir())
    assert len(safety) == 1
    listing = subprocess.run(["pg_restore", "-l", str(safety[0])], capture_output=True, text=True)
    assert "TABLE DATA public orders" in listing.stdout
    assert "ALTER DATABASE" in steps["handover"]["data"]["instructions"]


def test_one_table_from_a_local_archive_leaves_the_others(live: PgDatabase, tmp_path: Path) -> None:
    archive = tmp_path / "shop.dump"
    archive.write_bytes(dump(live, "-Fc"))
    live.query("DELETE FROM orders")
    live.query("INSERT INTO customers VALUES (6, 'new since the backup')")
    code, steps = run(
        live, tmp_path, "-p", f"file={archive}", "-p", "table=orders", "--yes", *APPROVE
    )
    assert code == 0, [
        (k, v["state"], v.get("error"))
        for k, v in steps.items()
        if v["state"] not in ("ok", "skipped")
    ]
    assert steps["check_file"]["stdout"].strip() == "custom"
    assert live.scalar("SELECT count(*) FROM orders") == 100
    assert live.scalar("SELECT count(*) FROM customers") == 6  # untouched
    assert databases(live) == [live.name]  # the work database is dropped


def test_without_approval_the_live_database_is_untouched(live: PgDatabase, tmp_path: Path) -> None:
    archive = tmp_path / "shop.sql"
    archive.write_bytes(dump(live))
    live.query("DELETE FROM orders WHERE id > 50")
    code, steps = run(live, tmp_path, "-p", f"file={archive}", "--approve", "declare")
    assert code == 4 and steps["swap"]["state"] == "aborted"
    assert steps["check_file"]["stdout"].strip() == "plain"
    assert live.scalar("SELECT count(*) FROM orders") == 50
    assert databases(live) == [live.name]


def test_a_corrupt_backup_fails_before_the_live_database_is_touched(
    live: PgDatabase, tmp_path: Path
) -> None:
    archive = tmp_path / "shop.sql.gz"
    archive.write_bytes(gzip.compress(b"CREATE TABLE half (id int);\nTHIS IS NOT SQL;\n"))
    order = tmp_path / "order"
    code, steps = run(
        live, tmp_path, "-p", f"file={archive}",
        "-p", f"stop_cmd=echo stop >> {order}", "-p", f"start_cmd=echo start >> {order}",
        "--yes", *APPROVE,
    )  # fmt: skip
    assert code == 3
    assert steps["restore_failed"]["state"] == "failed"
    assert "live database was not touched" in steps["restore_failed"]["error"]
    assert live.scalar("SELECT count(*) FROM orders") == 100
    assert databases(live) == [live.name]
    assert not order.exists()  # the writers were never stopped


def test_a_dry_run_assesses_and_changes_nothing(live: PgDatabase, tmp_path: Path) -> None:
    archive = tmp_path / "shop.dump"
    archive.write_bytes(dump(live, "-Fc"))
    code, steps = run(live, tmp_path, "-p", f"file={archive}", "--dry-run")
    assert code in (0, 1, 2), steps
    assert {r["table"] for r in steps["assess"]["rows"]} == {"orders", "customers"}
    assert databases(live) == [live.name]
    assert not (tmp_path / "safety").exists()
