"""runbooks/dr-drill.yaml end to end: real backups in the moto S3 server (a
pg_dump of a database with rows, gzipped, and a tar.gz of a directory with
its .sha256), restored into a scratch database and directory, the lab web app
started from the restored copy and checked, then everything removed. The
checks read PostgreSQL, the filesystem and the app's port, not only exit codes."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import os
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.lab_app import APP
from tests.fixtures.s3server import S3Server
from tests.fixtures.services import PgDatabase
from tests.fixtures.sshd import free_port
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "dr-drill.yaml"


def stamp(hours_ago: float) -> str:
    """The time in a backup's name, as the backup runbooks write it."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
    return when.strftime("%Y%m%dT%H%M%S")


def dump(db: PgDatabase) -> bytes:
    """A plain pg_dump of the database, gzipped: what postgres-backup-s3 uploads."""
    out = subprocess.run(
        ["pg_dump", "-h", db.host, "-U", db.user, db.name], capture_output=True, check=True
    ).stdout
    return gzip.compress(out)


@dataclass
class Backups:
    database: str
    db_key: str
    archive_key: str
    archive: bytes
    rows: int
    files: int


def put_backups(
    s3: S3Server, bucket: str, source: PgDatabase, tmp_path: Path, db_age_h: float = 2
) -> Backups:
    """An older and a newer database backup (the newer uploaded first, so only
    the name says which is newest) and a files archive with its .sha256."""
    client = s3.client()
    source.query("CREATE TABLE orders (id int PRIMARY KEY, item text)")
    source.query("INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 5) g")
    older = dump(source)
    source.query("INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(6, 42) g")
    db_key = f"postgres/{source.name}_{stamp(db_age_h)}.sql.gz"
    client.put_object(Bucket=bucket, Key=db_key, Body=dump(source))
    old_key = f"postgres/{source.name}_{stamp(db_age_h + 24)}.sql.gz"
    client.put_object(Bucket=bucket, Key=old_key, Body=older)

    src = tmp_path / "src"
    (src / "app" / "uploads" / "2026").mkdir(parents=True)
    (src / "app" / "config").mkdir()
    (src / "app" / "uploads" / "2026" / "a.jpg").write_bytes(b"\xff\xd8" + b"x" * 3000)
    (src / "app" / "uploads" / "b.pdf").write_bytes(b"%PDF-1.4" + b"y" * 500)
    (src / "app" / "config" / "app.env").write_text("MODE=prod\n")
    name = f"web1_{stamp(3)}.tar.gz"
    path = tmp_path / name
    subprocess.run(["tar", "-czf", str(path), "-C", str(src), "app"], check=True)
    archive = path.read_bytes()
    path.unlink()
    sha = f"{hashlib.sha256(archive).hexdigest()}  {name}\n"
    client.put_object(Bucket=bucket, Key=f"files/{name}", Body=archive)
    client.put_object(Bucket=bucket, Key=f"files/{name}.sha256", Body=sha.encode())
    return Backups(source.name, db_key, f"files/{name}", archive, rows=42, files=3)


@dataclass
class Copy:
    """How the runbook starts and stops the lab app from the restored files."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def cmd(self, action: str) -> str:
        # $DRILL_DIR comes from the runbook's environment: the restored files.
        words = shlex.join([sys.executable, str(APP), action])
        port = f" --port {self.port}" if action == "start" else ""
        return f'{words} --dir "$DRILL_DIR/app"{port}'

    def answering(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def drill(
    s3: S3Server, bucket: str, backups: Backups, work: Path, copy: Copy, *args: str
) -> tuple[int, str, dict[str, dict[str, Any]]]:
    work.mkdir(exist_ok=True)
    code, doc = run_json(
        RUNBOOK,
        "-p", f"bucket={bucket}", "-p", f"endpoint={s3.endpoint}",
        "-p", f"database={backups.database}", "-p", "verify_table=orders",
        "-p", f"work_dir={work}",
        "-p", f"start_cmd={copy.cmd('start')}", "-p", f"stop_cmd={copy.cmd('stop')}",
        "-p", f"health_url={copy.url}", "-p", "health_tries=10",
        # The critical tests: the copy that answered logs into the restored
        # directory, and PG* point at the restored database.
        "-p", 'test_cmd=grep -q "GET /health" "$DRILL_DIR/app/access.log"'
        ' && psql -XAtc "select count(*) from orders"',
        "--approve", "record",
        *args,
        env=s3.env(),
    )  # fmt: skip
    steps = {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}
    return code, doc["run_id"], steps


def drill_databases(pg: PgDatabase, run_id: str) -> list[tuple[Any, ...]]:
    return pg.query(
        "SELECT datname FROM pg_database WHERE datname = %s", (f"drill_{run_id.replace('-', '_')}",)
    )


def stop_left_over(steps: dict[str, dict[str, Any]]) -> None:
    """Should the runbook have failed to stop the copy, the test does."""
    started = steps.get("app_start", {}).get("stdout", "")
    if started.startswith("started pid "):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(started.split()[2]), signal.SIGTERM)


def states(steps: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    return {k: (v["state"], v.get("error")) for k, v in steps.items()}


def test_the_stack_comes_back_from_the_backups_and_nothing_stays(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, scratch_db: PgDatabase
) -> None:
    backups = put_backups(s3_server, s3_bucket, scratch_db, tmp_path)
    copy, work = Copy(free_port("127.0.0.1")), tmp_path / "work"
    code, run_id, steps = drill(s3_server, s3_bucket, backups, work, copy)
    try:
        assert code == 0, states(steps)
        # RPO: the newest by the name's time, not the last upload.
        newest = steps["newest"]["json"]
        assert newest["db"]["key"] == backups.db_key
        assert newest["files"]["key"] == backups.archive_key
        assert newest["files"]["sha256_key"] == backups.archive_key + ".sha256"
        assert 1.9 < steps["newest"]["metrics"]["drill_db_backup_age_h"]["value"] < 2.1
        assert steps["newest"]["metrics"]["drill_files_backup_age_h"]["state"] == "ok"
        # The newest dump was restored (42 rows, the older one had 5).
        assert steps["db_rows"]["rows"][0]["n"] == backups.rows
        assert steps["db_rows"]["metrics"]["drill_restored_rows"]["value"] == backups.rows
        verified = steps["files_verify"]["json"]
        assert verified["checked"] is True
        assert verified["sha256"] == hashlib.sha256(backups.archive).hexdigest()
        assert steps["files_extract"]["json"]["files"] == backups.files
        assert Path(steps["files_extract"]["json"]["dir"]).parent.parent == work
        # The app came up from the restored copy and saw the restored database.
        assert steps["app_health"]["status"] == 200
        assert steps["app_health"]["json"]["status"] == "ok"
        assert steps["app_tests"]["stdout"].strip() == str(backups.rows)
        rto = steps["rto"]["metrics"]["drill_rto_s"]
        assert 0 < rto["value"] < 120 and rto["state"] == "ok"
        assert steps["record"]["acknowledged_by"]
        assert "passed" in steps["record"]["instructions"]
        assert "pg_ctl" in steps["record"]["instructions"]
        # Then nothing of it stays: app stopped, database dropped, directory gone.
        assert steps["app_stop"]["state"] == "ok" and not copy.answering()
        assert drill_databases(scratch_db, run_id) == []
        assert list(work.iterdir()) == []
    finally:
        stop_left_over(steps)
        scratch_db.query(f'DROP DATABASE IF EXISTS "drill_{run_id.replace("-", "_")}"')


def test_a_corrupted_archive_fails_the_drill_and_still_cleans_up(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, scratch_db: PgDatabase
) -> None:
    backups = put_backups(s3_server, s3_bucket, scratch_db, tmp_path)
    damaged = bytearray(backups.archive)
    damaged[len(damaged) // 2] ^= 0xFF  # the .sha256 still describes the original
    s3_server.client().put_object(Bucket=s3_bucket, Key=backups.archive_key, Body=bytes(damaged))
    copy, work = Copy(free_port("127.0.0.1")), tmp_path / "work"
    code, run_id, steps = drill(s3_server, s3_bucket, backups, work, copy)
    try:
        assert code == 3, states(steps)
        assert steps["db_rows"]["rows"][0]["n"] == backups.rows  # the database had come back
        assert steps["files_verify"]["state"] == "failed"
        assert "sha256 mismatch" in steps["files_verify"]["error"]
        assert "files_extract" not in steps and "app_start" not in steps
        assert steps["app_stop"]["state"] == "skipped"  # never started
        assert steps["db_drop"]["state"] == "ok" and drill_databases(scratch_db, run_id) == []
        assert steps["dir_remove"]["state"] == "ok" and list(work.iterdir()) == []
        assert "FAILED" in steps["record"]["instructions"]
        assert "files_verify (" in steps["record"]["instructions"]
        assert not copy.answering()
    finally:
        scratch_db.query(f'DROP DATABASE IF EXISTS "drill_{run_id.replace("-", "_")}"')


def test_a_dry_run_downloads_nothing_and_creates_nothing(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, scratch_db: PgDatabase
) -> None:
    backups = put_backups(s3_server, s3_bucket, scratch_db, tmp_path)
    copy, work = Copy(free_port("127.0.0.1")), tmp_path / "work"
    keys = sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    )
    code, run_id, steps = drill(s3_server, s3_bucket, backups, work, copy, "--dry-run")
    assert code == 0, states(steps)
    # The read-only part ran and measured the RPO.
    assert steps["newest"]["json"]["db"]["key"] == backups.db_key
    assert steps["newest"]["metrics"]["drill_db_backup_age_h"]["value"] > 0
    for step in ("scratch", "db_download", "db_create", "files_download", "app_start"):
        assert steps[step]["state"] == "skipped", step
    assert list(work.iterdir()) == []
    assert drill_databases(scratch_db, run_id) == []
    assert not copy.answering()
    after = sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    )
    assert after == keys


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_missing_backup_fails_before_anything_is_made(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, scratch_db: PgDatabase, dry_run: bool
) -> None:
    """Only a database backup, and an old one: its age is critical, and with no
    files archive the drill stops before the restore (a dry run reports it critical)."""
    client = s3_server.client()
    scratch_db.query("CREATE TABLE orders (id int)")
    client.put_object(
        Bucket=s3_bucket,
        Key=f"postgres/{scratch_db.name}_{stamp(60)}.sql.gz",
        Body=dump(scratch_db),
    )
    backups = Backups(scratch_db.name, "", "", b"", 0, 0)
    copy, work = Copy(free_port("127.0.0.1")), tmp_path / "work"
    extra = ("--dry-run",) if dry_run else ()
    code, run_id, steps = drill(s3_server, s3_bucket, backups, work, copy, *extra)
    metrics = steps["newest"]["metrics"]
    assert metrics["drill_db_backup_age_h"]["state"] == "critical"  # 60 h > 2 x 26 h
    assert metrics["drill_backups_missing"]["value"] == 1
    if dry_run:
        assert code == 2, states(steps)
        assert steps["newest"]["state"] == "critical"
    else:
        assert code == 3, states(steps)
        assert "no files backup" in steps["found"]["error"]
        assert "clock" not in steps and "db_create" not in steps
        assert steps["db_drop"]["state"] == "skipped"
        assert "none found" in steps["record"]["instructions"]
    assert list(work.iterdir()) == []
    assert drill_databases(scratch_db, run_id) == []


def test_a_copy_without_a_stop_command_is_refused_before_anything(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """It would outlive the scratch directory it runs from."""
    work = tmp_path / "work"
    work.mkdir()
    code, doc = run_json(
        RUNBOOK, "-p", f"bucket={s3_bucket}", "-p", f"endpoint={s3_server.endpoint}",
        "-p", f"work_dir={work}", "-p", "start_cmd=true", "-p", "health_url=http://127.0.0.1:9/",
        "--approve", "record", env=s3_server.env(),
    )  # fmt: skip
    steps = steps_of(doc)
    assert code == 3, steps
    assert "start_cmd needs stop_cmd" in steps["params_ok"]["error"]
    assert "db_backups" not in steps and "scratch" not in steps
    assert list(work.iterdir()) == []
