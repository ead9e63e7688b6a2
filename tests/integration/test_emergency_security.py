"""runbooks/emergency-security-incident.yaml against real services: a PostgreSQL
of the test's own that checks the scratch role's password (scram-sha-256 in
pg_hba), Redis keys under the test's prefix, and temp files for the logs, the
env file and the app directory, read through a one-host inventory's vars."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.fixtures.history import engine_env
from tests.fixtures.own_postgres import OwnPostgres
from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "emergency-security-incident.yaml"
ATTACKER = "203.0.113.66"
ENV_TEXT = "DEBUG=false\nexport SECRET_KEY='old-secret-key-0123456789'\nDATABASE_URL=postgresql://app@db/app\n"


def make_scene(tmp_path: Path, dsn: str, redis_url: str) -> dict[str, Path]:
    """Logs, env file, app dir and an inventory whose host vars point at them."""
    p = {
        n: tmp_path / n for n in ("access.log", "app.log", "auth.log", "app.env", "app", "inv.yaml")
    }
    lines = [
        f'198.51.100.{i % 4 + 1} - - [03/Dec/2026:10:00:{i:02d} +0000] "GET /p/{i} HTTP/1.1" 200 512 "-" "ua"'
        for i in range(40)
    ]
    lines += [
        f'{ATTACKER} - - [03/Dec/2026:10:01:{i:02d} +0000] "POST /admin/login/ HTTP/1.1" 401 9 "-" "curl"'
        for i in range(45)
    ]
    # The monitoring probe gets 401s too, but it is in never_block.
    lines += [
        '127.0.0.1 - - [03/Dec/2026:10:02:00 +0000] "GET /health HTTP/1.1" 401 2 "-" "probe"'
    ] * 30
    p["access.log"].write_text("\n".join(lines) + "\n")
    p["app.log"].write_text(f"INFO up\nWARNING Unauthorized access to /admin from {ATTACKER}\n")
    p["auth.log"].write_text(
        f"Dec  3 10:00:00 web sshd[9]: Failed password for root from {ATTACKER} port 2 ssh2\n"
    )
    p["app.env"].write_text(ENV_TEXT)
    p["app.env"].chmod(0o640)
    p["app"].mkdir()
    (p["app"] / "settings.py").write_text("DEBUG = False\n")
    host_vars = {
        "access_log": str(p["access.log"]),
        "app_log": str(p["app.log"]),
        "env_file": str(p["app.env"]),
        "app_dir": str(p["app"]),
        "pg_dsn": dsn,
        "redis_url": redis_url,
    }
    inventory = {
        "defaults": {"connection": "local"},
        "groups": {"web": {"vars": host_vars, "hosts": {"web1": {"address": "127.0.0.1"}}}},
    }
    p["inv.yaml"].write_text(json.dumps(inventory))  # JSON is YAML
    return p


def base_args(tmp_path: Path, p: dict[str, Path], role: str, prefix: str) -> list[str]:
    return [
        "-i", str(p["inv.yaml"]),
        "-p", f"evidence_dir={tmp_path / 'evidence'}",
        "-p", f"auth_log={p['auth.log']}",
        "-p", f"db_role={role}",
        "-p", f"new_secrets_file={tmp_path / 'new.secrets'}",
        "-p", f"block_cmd=echo {{addr}} >> {tmp_path / 'blocked'}",
        "-p", f"restart_cmd=touch {tmp_path / 'restarted'}",
        "-p", f"session_pattern={prefix}session:*",
        "-p", "session_table=app_session",
    ]  # fmt: skip


def seed_sessions(redis_url: str, prefix: str, query: Callable[[str], object]) -> None:
    client = redis.Redis.from_url(redis_url)
    for i in range(3):
        client.set(f"{prefix}session:{i}", "user")
    client.set(f"{prefix}cache:page", "html")
    client.close()
    query("CREATE TABLE app_session (session_key text PRIMARY KEY, data text)")
    query("INSERT INTO app_session VALUES ('a', 'x'), ('b', 'y')")


def redis_keys(redis_url: str, prefix: str) -> set[str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return set(client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()


def new_secrets(tmp_path: Path, role: str) -> tuple[str, str]:
    """The last rotated DB password (the secrets file) and the SECRET_KEY now."""
    pw = (tmp_path / "new.secrets").read_text().splitlines()[-1].removeprefix(f"{role}=")
    key = re.search(r"SECRET_KEY='([^']*)'", (tmp_path / "app.env").read_text())
    assert key is not None
    return pw, key[1]


def history_json(run_id: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "history", run_id, "--format", "json"],
        env=engine_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def password_pg(own_postgres: OwnPostgres) -> tuple[OwnPostgres, str]:
    """own_postgres with a role that must log in with its password (scram-sha-256)."""
    role = f"rb_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(own_postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'old-password'")
    hba = own_postgres.data / "pg_hba.conf"
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    own_postgres.ctl("reload")
    return own_postgres, role


def can_login(server: OwnPostgres, role: str, password: str) -> bool:
    try:
        psycopg.connect(
            host="127.0.0.1", port=server.port, user=role, password=password, dbname="postgres"
        ).close()
        return True
    except psycopg.OperationalError:
        return False


def test_it_contains_rotates_and_revokes_without_printing_secrets(
    tmp_path: Path, password_pg: tuple[OwnPostgres, str], redis_url: str, redis_prefix: str
) -> None:
    server, role = password_pg
    assert can_login(server, role, "old-password")
    p = make_scene(tmp_path, server.dsn, redis_url)

    def query(sql: str) -> None:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql)

    seed_sessions(redis_url, redis_prefix, query)
    args = [*base_args(tmp_path, p, role, redis_prefix), "-p", "block_suspicious=true"]
    approvals = ["--yes", "--approve", "declare", "--approve", "handover"]
    code, doc = run_json(RUNBOOK, *args, *approvals)
    s = steps_of(doc, "web1")
    assert code in (1, 2), doc  # the attacker is a finding

    # Evidence: logs in the tarball, whose printed sha256 is the real one.
    archive = tmp_path / "evidence.tar.gz"
    printed = s["evidence"]["data"]["stdout_lines"][-1].split()
    assert printed == [hashlib.sha256(archive.read_bytes()).hexdigest(), str(archive)]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        member = tar.extractfile("evidence/access.log")
        assert member is not None and member.read() == p["access.log"].read_bytes()
    assert {"evidence/app.log", "evidence/auth.log", "evidence/SHA256SUMS"} <= names
    assert (tmp_path / "evidence").stat().st_mode & 0o777 == 0o700
    assert archive.stat().st_mode & 0o777 == 0o600

    # The attacker, and only the attacker (not the probe in never_block), is blocked.
    found = s["suspicious"]["data"]["json"]["suspicious"]
    assert [a["addr"] for a in found] == [ATTACKER] and found[0]["denied"] == 45
    assert s["suspicious"]["metrics"]["denied_max_per_address"]["value"] == 45
    assert (tmp_path / "blocked").read_text().split() == [ATTACKER]

    # The DB password: the new one from the file logs in, the old one no more.
    password, secret_key = new_secrets(tmp_path, role)
    assert len(password) >= 40 and (tmp_path / "new.secrets").stat().st_mode & 0o777 == 0o600
    assert can_login(server, role, password)
    assert not can_login(server, role, "old-password")
    assert s["db_password_works"]["state"] == "ok"

    # SECRET_KEY replaced in place; every other line and the mode kept; backup 0600.
    old, new = ENV_TEXT.splitlines(), p["app.env"].read_text().splitlines()
    assert new[0] == old[0] and new[2] == old[2] and new[1] != old[1]
    assert new[1] == f"export SECRET_KEY='{secret_key}'" and len(secret_key) >= 40
    assert p["app.env"].stat().st_mode & 0o777 == 0o640
    backup = next(tmp_path.glob("app.env.pre-incident-*"))
    assert backup.read_text() == ENV_TEXT and backup.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "restarted").exists()

    # Sessions revoked: Redis session keys gone, the cache key kept; table empty.
    assert redis_keys(redis_url, redis_prefix) == {f"{redis_prefix}cache:page"}
    assert s["redis_session_count"]["metrics"]["redis_sessions_before"]["value"] == 3
    assert s["db_sessions_after"]["metrics"]["db_sessions_after"]["value"] == 0
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM app_session").fetchone() == (0,)

    # Neither secret in the JSON output or the run's history.
    assert s["db_password"]["data"]["stdout"] == "***"
    for text in (json.dumps(doc), history_json(doc["run_id"])):
        assert password not in text and secret_key not in text

    # Again, on the console (-v shows every output): new secrets, none printed.
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}session:new", "user")  # a login since
    client.close()
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", str(RUNBOOK), *args, *approvals, "-v"],
        env=engine_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    console = done.stdout + done.stderr
    assert done.returncode in (1, 2), console
    password2, secret_key2 = new_secrets(tmp_path, role)
    assert password2 != password and secret_key2 != secret_key
    assert can_login(server, role, password2) and not can_login(server, role, password)
    assert redis_keys(redis_url, redis_prefix) == {f"{redis_prefix}cache:page"}
    run_id = re.search(r"run (\d{8}-\d{6}-[0-9a-f]+)", console)
    assert run_id is not None
    for text in (console, history_json(run_id[1])):
        for secret in (password, secret_key, password2, secret_key2):
            assert secret not in text


@pytest.fixture
def scratch_role(pg_database: PgDatabase) -> Iterator[str]:
    role = f"rb_app_{uuid.uuid4().hex[:8]}"
    pg_database.query(f"CREATE ROLE {role} LOGIN PASSWORD 'old-password'")
    try:
        yield role
    finally:
        pg_database.query(f"DROP ROLE IF EXISTS {role}")


def untouched_state(pg_database: PgDatabase, role: str, p: dict[str, Path]) -> tuple[Any, ...]:
    verifier = pg_database.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
    sessions = pg_database.scalar("SELECT count(*) FROM app_session")
    return verifier, sessions, p["app.env"].read_bytes(), p["app.env"].stat().st_mode


@pytest.mark.parametrize("mode", ["no_yes", "dry_run"])
def test_without_approval_or_in_a_dry_run_nothing_is_rotated(
    mode: str,
    tmp_path: Path,
    pg_database: PgDatabase,
    scratch_role: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    p = make_scene(tmp_path, pg_database.dsn, redis_url)
    pg_database.query("DROP TABLE IF EXISTS app_session")
    seed_sessions(redis_url, redis_prefix, pg_database.query)
    before = untouched_state(pg_database, scratch_role, p)
    args = base_args(tmp_path, p, scratch_role, redis_prefix)
    extra = ["--dry-run", "-p", "block_suspicious=true"] if mode == "dry_run" else []
    code, doc = run_json(RUNBOOK, *args, "--approve", "declare", *extra)
    s = steps_of(doc, "web1")
    try:
        assert untouched_state(pg_database, scratch_role, p) == before
        assert len(redis_keys(redis_url, redis_prefix)) == 4
        for name in ("new.secrets", "blocked", "restarted"):
            assert not (tmp_path / name).exists(), name
        assert not list(tmp_path.glob("app.env.pre-incident-*"))
        # The read-only analysis ran all the same.
        assert [a["addr"] for a in s["suspicious"]["data"]["json"]["suspicious"]] == [ATTACKER]
        if mode == "dry_run":
            assert code in (0, 1, 2), doc
            assert not (tmp_path / "evidence").exists()  # it writes: not in a dry run
            assert s["redis_session_count"]["metrics"]["redis_sessions_before"]["value"] == 3
            assert s["db_password"]["state"] == "skipped"
        else:
            assert code == 4, doc
            assert s["db_password"]["state"] == "aborted"  # no terminal, no --yes
            assert (tmp_path / "evidence.tar.gz").exists()  # evidence needs no approval
            assert "secret_key" not in s and "revoke_db_sessions" not in s
    finally:
        pg_database.query("DROP TABLE IF EXISTS app_session")
