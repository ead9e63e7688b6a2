"""runbooks/app-files-backup.yaml with real files, the moto S3 server and
PostgreSQL: the archive holds exactly the files, S3 holds the same bytes,
retention keeps the newest and never the new one, the audit reads ages from
the names, and an existing database backup in S3 is restored and counted."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

from tests.fixtures.s3server import S3Server
from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "app-files-backup.yaml"


def sources(tmp_path: Path) -> list[str]:
    uploads, config = tmp_path / "src" / "uploads", tmp_path / "src" / "config"
    (uploads / "2026").mkdir(parents=True)
    config.mkdir()
    (uploads / "2026" / "a.jpg").write_bytes(os.urandom(2000))
    (uploads / "b.pdf").write_bytes(os.urandom(500))
    (uploads / "skip.tmp").write_text("scratch")
    (config / "app.env").write_text("MODE=prod\n")
    return [str(uploads), str(config)]


def stamp(days_ago: float) -> str:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    return when.strftime("%Y%m%dT%H%M%S")


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK, "-p", f"paths={json.dumps(sources(tmp_path))}", "-p", "name=web1",
        "-p", f"backup_dir={tmp_path / 'backups'}", "-p", 'exclude=["*.tmp"]', *args, env=env,
    )  # fmt: skip
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}


def run_s3(tmp_path: Path, s3: S3Server, bucket: str, *args: str) -> tuple[int, dict[str, Any]]:
    """`run` with the test's bucket on the moto server."""
    s3_args = ("-p", f"bucket={bucket}", "-p", f"endpoint={s3.endpoint}")
    return run(tmp_path, *s3_args, *args, env=s3.env())


def test_the_archive_holds_the_files_and_s3_the_same_bytes(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    code, steps = run_s3(tmp_path, s3_server, s3_bucket)
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    archive = Path(steps["archive"]["json"]["file"])
    with tarfile.open(archive) as tar:
        files = sorted(m.name.split("src/", 1)[1] for m in tar.getmembers() if m.isfile())
    assert files == ["config/app.env", "uploads/2026/a.jpg", "uploads/b.pdf"]  # *.tmp left out
    assert steps["archive"]["json"]["files"] == 3
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert Path(f"{archive}.sha256").read_text().split() == [digest, archive.name]
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=f"files/{archive.name}")
    assert head["ContentLength"] == archive.stat().st_size
    # The checksum beside it in S3, for a restore from S3 alone.
    body = s3_server.client().get_object(Bucket=s3_bucket, Key=f"files/{archive.name}.sha256")
    assert body["Body"].read().decode().split() == [digest, archive.name]
    assert steps["audit"]["metrics"]["backup_newest_age_h"]["value"] < 1


def test_retention_keeps_the_newest_and_the_new_one(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    client = s3_server.client()
    names = [f"web1_{stamp(days)}.tar.gz" for days in (40, 45, 50, 60, 70, 80, 90, 100, 110, 120)]
    for name in names:  # all past keep_days
        (backups / name).write_bytes(b"old")
        client.put_object(Bucket=s3_bucket, Key=f"files/{name}", Body=b"old")
    for name in names[::2]:  # some have their checksum in S3 too (newer backups do)
        client.put_object(Bucket=s3_bucket, Key=f"files/{name}.sha256", Body=b"x  " + name.encode())
    other = f"files/other_{stamp(100)}.tar.gz"
    client.put_object(Bucket=s3_bucket, Key=other, Body=b"x")
    (backups / "notes.txt").write_text("not an archive")
    code, steps = run_s3(tmp_path, s3_server, s3_bucket, "-p", "keep_last=3")
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    kept = sorted(p.name for p in backups.glob("web1_*.tar.gz"))
    # The new archive and the two newest old ones make keep_last=3.
    assert kept == sorted([*names[:2], Path(steps["archive"]["json"]["file"]).name])
    assert (backups / "notes.txt").exists()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    archives = [k for k in keys if k.startswith("files/web1_") and k.endswith(".tar.gz")]
    assert len(archives) == 3
    # A checksum goes with its archive; the kept archives keep theirs.
    sums = {k.removesuffix(".sha256") for k in keys if k.endswith(".sha256")}
    assert sums <= set(archives) and f"files/{names[0]}" in sums
    assert other in keys  # another host's: untouched


def test_the_audit_finds_an_old_and_a_shrunken_backup(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    client = s3_server.client()
    older, newest = f"files/web1_{stamp(3)}.tar.gz", f"files/web1_{stamp(2.5)}.tar.gz"
    client.put_object(Bucket=s3_bucket, Key=older, Body=b"x" * 10_000)
    client.put_object(Bucket=s3_bucket, Key=newest, Body=b"x" * 1_000)  # a tenth of it
    code, steps = run_s3(tmp_path, s3_server, s3_bucket, "-p", "archive=false")
    audit = steps["audit"]
    assert [a["name"] for a in audit["json"]["archives"]] == [newest, older]
    assert 59 < audit["metrics"]["backup_newest_age_h"]["value"] < 61
    assert audit["metrics"]["backup_newest_age_h"]["state"] == "critical"  # over 2 x 26 h
    assert audit["metrics"]["backup_shrunk"]["state"] == "warn"
    assert steps["archive"]["state"] == "skipped" and code == 2


def test_an_existing_database_backup_is_restored_and_counted(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, pg_database: PgDatabase
) -> None:
    name = f"src_{uuid.uuid4().hex[:8]}"
    pg_database.query(f'CREATE DATABASE "{name}"')
    try:
        src = PgDatabase(name)
        src.query("CREATE TABLE orders (id int)")
        src.query("INSERT INTO orders SELECT generate_series(1, 42)")
        dump = subprocess.run(
            ["pg_dump", "-h", src.host, "-U", src.user, name], capture_output=True, check=True
        ).stdout
        key = f"postgres/{name}_{stamp(1)}.sql.gz"
        s3_server.client().put_object(Bucket=s3_bucket, Key=key, Body=gzip.compress(dump))
        args = (
            "-p", "verify_db_backup=true", "-p", f"database={name}", "-p", "verify_table=orders",
        )  # fmt: skip
        scratch = "SELECT datname FROM pg_database WHERE datname LIKE 'verify_%'"
        before = pg_database.query(scratch)
        code, steps = run_s3(tmp_path, s3_server, s3_bucket, *args)
        assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
        assert steps["db_rows"]["rows"][0]["n"] == 42
        assert steps["db_drop"]["state"] == "ok"
        assert pg_database.query(scratch) == before  # the scratch database is gone
    finally:
        pg_database.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_dry_run_writes_uploads_and_deletes_nothing(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    old = backups / f"web1_{stamp(400)}.tar.gz"
    old.write_bytes(b"old")
    code, steps = run_s3(tmp_path, s3_server, s3_bucket, "-p", "keep_last=0", "--dry-run")
    assert code in (0, 1, 2), steps
    assert sorted(p.name for p in backups.iterdir()) == [old.name]
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=s3_bucket)
