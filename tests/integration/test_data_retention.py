"""runbooks/data-retention.yaml against a scratch database of its own: old
rows archived or deleted in batches (exactly the old ones), a hostile name
refused before anything moves, old logs archived, stale temporary files
deleted and a symlink left alone; nothing without confirmation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "data-retention.yaml"
LAB = ROOT / "inventories" / "lab.yaml"
DAY = 86400


@pytest.fixture
def db(scratch_db: PgDatabase) -> PgDatabase:
    """jobs: ids 1-10 a year old (odd ones completed), 11-20 a week old;
    page_visits: 30 rows 200 days old, 5 recent."""
    scratch = scratch_db
    scratch.query("CREATE TABLE jobs (id int primary key, status text, created_at timestamptz)")
    scratch.query(
        "INSERT INTO jobs SELECT g, CASE WHEN g % 2 = 1 THEN 'completed' ELSE 'failed' END,"
        " now() - interval '1 year' FROM generate_series(1, 10) g"
    )
    scratch.query(
        "INSERT INTO jobs SELECT g, 'completed', now() - interval '7 days' FROM generate_series(11, 20) g"
    )
    scratch.query("CREATE TABLE page_visits (id serial, visited_at timestamptz)")
    scratch.query(
        "INSERT INTO page_visits (visited_at) SELECT now() - interval '200 days' FROM generate_series(1, 30)"
    )
    scratch.query("INSERT INTO page_visits (visited_at) SELECT now() FROM generate_series(1, 5)")
    return scratch


RULES = [
    {"table": "jobs", "column": "created_at", "older_than": "3 months", "action": "archive",
     "archive_table": "jobs_archive"},
    {"table": "page_visits", "column": "visited_at", "older_than": "180 days", "action": "delete"},
]  # fmt: skip


def run(db: PgDatabase, rules: list[dict[str, str]], *args: str) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK,
        "-i",
        str(LAB),
        "-p",
        f"database={db.name}",
        "-p",
        f"rules={json.dumps(rules)}",
        *args,
    )
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc, "lab-db").items()}


def ids(db: PgDatabase, table: str) -> list[int]:
    return [r[0] for r in db.query(f"SELECT id FROM {table} ORDER BY id")]


def test_old_rows_are_archived_and_deleted_in_batches(db: PgDatabase) -> None:
    code, steps = run(db, RULES, "-p", "batch_size=7", "--yes")
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    assert [r["stdout"].strip() for r in steps["counts"]["results"]] == ["10", "30"]
    assert ids(db, "jobs") == list(range(11, 21))
    assert ids(db, "jobs_archive") == list(range(1, 11))  # moved, not lost
    assert db.scalar("SELECT count(*) FROM page_visits") == 5
    applied = [r["json"] for r in steps["apply"]["results"]]
    assert applied == [{"rows": 10, "batches": 2}, {"rows": 30, "batches": 5}]
    assert steps["vacuum"]["state"] == "ok"
    assert steps["summary"]["message"].startswith(
        "jobs: 10 rows (archive, 2 batches); page_visits: 30"
    )


def test_where_narrows_a_rule_to_the_rows_it_names(db: PgDatabase) -> None:
    rule = {"table": "jobs", "column": "created_at", "older_than": "6 months", "action": "delete",
            "where": "status = 'completed'"}  # fmt: skip
    code, steps = run(db, [rule], "--yes")
    assert code == 0, steps
    assert ids(db, "jobs") == [2, 4, 6, 8, 10, *range(11, 21)]  # old failed ones stay


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"table": "jobs; DROP TABLE jobs", "column": "created_at", "older_than": "1 day"},
         "not a plain table or column name"),
        ({"table": "jobs", "column": "created_at", "older_than": "soon"}, "invalid input syntax"),
        ({"table": "jobs", "column": "created_at", "older_than": "1 day", "action": "archive"},
         "archive needs archive_table"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_before_any_row_moves(
    db: PgDatabase, rule: dict[str, str], message: str
) -> None:
    code, steps = run(db, [RULES[1], rule], "--yes")
    assert code == 3
    assert message in steps["rules_ok"]["error"] + json.dumps(steps["rules_ok"]["results"])
    assert "apply" not in steps
    assert db.scalar("SELECT count(*) FROM jobs") == 20
    assert db.scalar("SELECT count(*) FROM page_visits") == 35


def test_logs_and_temporary_files(db: PgDatabase, tmp_path: Path) -> None:
    logs, tmp, outside = tmp_path / "logs", tmp_path / "tmp", tmp_path / "outside.txt"
    logs.mkdir()
    tmp.mkdir()
    old = time.time() - 40 * DAY
    for name in ("app.log", "app.log.1", "app.log.2.gz", "notes.txt"):
        (logs / name).write_text(name)
        os.utime(logs / name, (old, old))
    (logs / "app.log.3").write_text("recent")
    (tmp / "stale").write_text("x")
    os.utime(tmp / "stale", (old, old))
    (tmp / "fresh").write_text("x")
    outside.write_text("keep me")
    os.utime(outside, (old, old))
    (tmp / "link").symlink_to(outside)
    os.utime(tmp / "link", (old, old), follow_symlinks=False)
    args = ("-p", f"log_dir={logs}", "-p", f"tmp_dirs={json.dumps([str(tmp)])}")
    code, steps = run(db, [], *args, "--yes")
    assert code == 0, steps
    assert sorted(p.name for p in (logs / "archive").iterdir()) == ["app.log.1", "app.log.2.gz"]
    assert sorted(p.name for p in logs.iterdir()) == [
        "app.log",
        "app.log.3",
        "archive",
        "notes.txt",
    ]
    assert sorted(p.name for p in tmp.iterdir()) == ["fresh", "link"]
    assert outside.read_text() == "keep me"


def test_nothing_changes_without_confirmation_or_in_a_dry_run(
    db: PgDatabase, tmp_path: Path
) -> None:
    code, steps = run(db, RULES)
    assert code == 4 and steps["apply"]["state"] == "aborted"
    code, steps = run(db, RULES, "--dry-run")
    assert code in (0, 1, 2), steps
    assert [r["stdout"].strip() for r in steps["counts"]["results"]] == ["10", "30"]
    assert db.scalar("SELECT count(*) FROM jobs") == 20
    assert db.scalar("SELECT count(*) FROM page_visits") == 35
    assert db.scalar("SELECT to_regclass('jobs_archive') IS NULL")
