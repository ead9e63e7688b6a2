"""runbooks/db-migrate.yaml against the shared PostgreSQL, a scratch database per
test, with plain psql scripts as the migration "framework" (alembic is not
installed here): migrate_cmd runs migrations/0002*.sql with psql, status_cmd
reads the schema_version table. The bad migration is not wrapped in a
transaction, so it leaves a new column, a new table, a view, changed rows and a
bumped version behind when its last statement fails."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "db-migrate.yaml"

GOOD = """
ALTER TABLE users ADD COLUMN email text;
UPDATE schema_version SET version = 2;
"""
BAD = """
ALTER TABLE users ADD COLUMN email text;
CREATE TABLE audit (id serial PRIMARY KEY, user_id int REFERENCES users (id));
CREATE VIEW user_names AS SELECT name FROM users;
UPDATE users SET name = upper(name);
UPDATE schema_version SET version = 2;
INSERT INTO no_such_table VALUES (1);
"""
DOWN = """
DROP TABLE IF EXISTS audit;
DROP VIEW IF EXISTS user_names;
ALTER TABLE users DROP COLUMN IF EXISTS email;
UPDATE users SET name = lower(name);
UPDATE schema_version SET version = 1;
"""


@dataclass
class App:
    db: PgDatabase
    app_dir: Path
    backup_dir: Path

    def psql(self, *args: str) -> str:
        return f"psql -X -q -v ON_ERROR_STOP=1 -h {self.db.host} -U {self.db.user} -d {self.db.name} {' '.join(args)}"


@pytest.fixture
def app(pg_database: PgDatabase, tmp_path: Path) -> Iterator[App]:
    """A database at schema version 1 (users with 3 rows) and an app dir with its migrations."""
    name = f"mig_{uuid.uuid4().hex[:8]}"
    pg_database.query(f'CREATE DATABASE "{name}"')
    db = PgDatabase(name)
    db.query("CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)")
    db.query("INSERT INTO users (name) VALUES ('ada'), ('bob'), ('cyd')")
    db.query("CREATE TABLE schema_version (version int NOT NULL)")
    db.query("INSERT INTO schema_version VALUES (1)")
    migrations = tmp_path / "app" / "migrations"
    migrations.mkdir(parents=True)
    for file, text in {"0002.sql": GOOD, "0002_bad.sql": BAD, "0002_down.sql": DOWN}.items():
        (migrations / file).write_text(text)
    try:
        yield App(db, tmp_path / "app", tmp_path / "backups")
    finally:
        pg_database.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def snapshot(db: PgDatabase) -> dict[str, Any]:
    """The schema (relations, columns) and every row: what "exactly as before" means."""
    return {
        "relations": db.query(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
        ),
        "columns": db.query(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, ordinal_position"
        ),
        "users": db.query("SELECT * FROM users ORDER BY id"),
        "version": db.query("SELECT * FROM schema_version"),
    }


def run(app: App, *args: str, migration: str = "0002.sql") -> tuple[int, dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK,
        "-p", f"database={app.db.name}",
        "-p", f"app_dir={app.app_dir}",
        "-p", f"backup_dir={app.backup_dir}",
        "-p", f"migrate_cmd={app.psql('-f', f'migrations/{migration}')}",
        "-p", f"status_cmd={app.psql('-At', '-c', repr('select version from schema_version'))}",
        "-p", "expect_after=^2$",
        *args,
    )  # fmt: skip
    steps = {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}
    return code, steps


def dumps(app: App) -> list[Path]:
    return sorted(app.backup_dir.glob("*.dump")) if app.backup_dir.exists() else []


def test_a_good_migration_applies_after_a_verified_backup(app: App) -> None:
    code, s = run(app, "--yes", "--approve", "handover")
    assert code == 0, s
    columns = app.db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY 1"
    )
    assert [c[0] for c in columns] == ["email", "id", "name"]
    assert app.db.scalar("SELECT version FROM schema_version") == 2
    assert s["status_before"]["stdout_lines"][0] == "1"
    assert s["status_after"]["stdout_lines"][0] == "2"
    # The dump is there, reported, and lists the table.
    [dump] = dumps(app)
    assert s["backup"]["json"]["path"] == str(dump)
    assert s["backup"]["json"]["bytes"] == dump.stat().st_size > 100
    toc = subprocess.run(
        ["pg_restore", "-l", str(dump)], capture_output=True, text=True, check=True
    )
    assert "TABLE public users" in toc.stdout
    assert "table public.users" in s["backup_check"]["stdout_lines"]
    assert "restore" not in s and "downgrade" not in s  # no rescue ran
    assert str(dump) in s["handover"]["instructions"]
    assert "pg_restore --clean --if-exists --single-transaction" in s["handover"]["instructions"]


def test_a_failed_migration_is_rolled_back_by_restoring_the_dump(app: App) -> None:
    before = snapshot(app.db)
    log = app.app_dir / "writers.log"
    code, s = run(
        app, "--yes", "--approve", "handover",
        "-p", f"stop_cmd=echo stop >> {log}", "-p", f"start_cmd=echo start >> {log}",
        migration="0002_bad.sql",
    )  # fmt: skip
    assert code == 3, s
    assert s["migrate"]["state"] == "failed"
    assert "no_such_table" in s["migrate"]["stderr"]
    assert s["restore"]["state"] == "ok"
    assert s["schema_restored"]["state"] == "ok"
    assert s["status_rolled_back"]["state"] == "ok"
    assert "migration failed" in s["rolled_back"]["error"]
    assert "the restore ran" in s["rolled_back"]["error"]
    # The partial changes (column, table, view, rows, version) are gone: exactly as before.
    assert snapshot(app.db) == before
    # Writers stopped once for the migration, started once after the restore.
    assert log.read_text().split() == ["stop", "start"]
    [dump] = dumps(app)
    assert str(dump) in s["handover"]["instructions"]
    assert "FAILED" in s["handover"]["instructions"]


def test_with_a_downgrade_command_the_downgrade_is_used_instead_of_the_restore(app: App) -> None:
    before = snapshot(app.db)
    users_oid = app.db.scalar("SELECT 'users'::regclass::oid")
    # STATUS_BEFORE (status_cmd's output before the migration) reaches the command.
    downgrade = f'test "$STATUS_BEFORE" = 1 && {app.psql("-f", "migrations/0002_down.sql")}'
    code, s = run(
        app, "--yes", "--approve", "handover", "-p", f"downgrade_cmd={downgrade}",
        migration="0002_bad.sql",
    )  # fmt: skip
    assert code == 3, s
    assert s["downgrade"]["state"] == "ok"
    assert s["restore"]["state"] == "skipped"
    assert "rolled back by the downgrade" in s["rolled_back"]["error"]
    assert snapshot(app.db) == before
    # A restore would have recreated the table: the same OID proves it did not run.
    assert app.db.scalar("SELECT 'users'::regclass::oid") == users_oid


def test_a_failed_downgrade_falls_back_to_the_restore(app: App) -> None:
    before = snapshot(app.db)
    code, s = run(
        app, "--yes", "--approve", "handover", "-p", "downgrade_cmd=false",
        migration="0002_bad.sql",
    )  # fmt: skip
    assert code == 3, s
    assert s["downgrade"]["state"] == "failed"
    assert s["restore"]["state"] == "ok"
    assert snapshot(app.db) == before


def test_without_yes_nothing_changes(app: App) -> None:
    before = snapshot(app.db)
    code, s = run(app, "--approve", "handover")
    assert code == 4, s
    assert s["migration"]["state"] == "aborted"
    assert "migrate" not in s
    assert snapshot(app.db) == before
    # The backup is taken before the question so that the question can quote its
    # path and size: a file, not a change to the database.
    assert len(dumps(app)) == 1
    assert "did not run (declined)" in s["handover"]["instructions"]


def test_dry_run_measures_and_changes_nothing(app: App) -> None:
    before = snapshot(app.db)
    code, s = run(app, "--dry-run")
    assert code in (0, 1, 2), s
    assert s["status_before"]["state"] == "ok"
    assert s["status_before"]["stdout_lines"][0] == "1"
    assert s["disk"]["state"] == "ok"
    assert s["backup"]["state"] == "skipped"
    assert snapshot(app.db) == before
    assert not app.backup_dir.exists()  # not even the dump


def test_not_enough_disk_for_the_dump_stops_before_anything(app: App, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        before = snapshot(app.db)
        app.backup_dir = tiny / "dumps"
        code, s = run(app, "--yes", "--approve", "handover")
        assert code == 3, s
        assert s["disk"]["state"] == "failed"
        assert "needs more than" in s["disk"]["error"]
        assert s["go"]["state"] == "failed"
        assert "backup" not in s and "migrate" not in s
        assert snapshot(app.db) == before
        assert list(tiny.iterdir()) == []
        assert "was not changed" in s["handover"]["instructions"]
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_an_announced_window_waits_for_the_person_who_told_the_users(app: App) -> None:
    """With downtime (announce=true): nothing is dumped or migrated until the
    announcement step is acknowledged; acknowledged, it is recorded and goes on."""
    code, s = run(app, "-p", "announce=true", "--yes", "--approve", "handover")
    assert s["announce"]["state"] == "aborted", s["announce"]  # not acknowledged
    assert dumps(app) == [] and app.db.scalar("SELECT version FROM schema_version") == 1
    assert code == 4
    code, s = run(
        app, "-p", "announce=true", "--yes", "--approve", "announce", "--approve", "handover"
    )
    assert s["announce"]["state"] == "ok"
    assert "Tell the users of" in s["announce"]["instructions"]
    assert app.db.scalar("SELECT version FROM schema_version") == 2
    assert code == 0, s
