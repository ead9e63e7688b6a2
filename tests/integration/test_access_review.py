"""runbooks/access-review.yaml against a real PostgreSQL: a scratch database per
test with a Django-like auth_user table, BigShot's login_attempts, an API token
table and a scratch superuser role of its own, plus an sshd-style auth log and an
authorized_keys file the test writes."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "access-review.yaml"
OLD_KEY = "sekret-" + uuid.uuid4().hex  # an API key: must never reach the output

SCHEMA = f"""
CREATE TABLE auth_user (
  id serial PRIMARY KEY, username text UNIQUE NOT NULL, last_login timestamptz,
  is_active boolean NOT NULL DEFAULT true, is_superuser boolean NOT NULL DEFAULT false,
  is_staff boolean NOT NULL DEFAULT false);
INSERT INTO auth_user (username, last_login, is_superuser, is_staff) VALUES
  ('recent', now() - interval '2 days', false, false),
  ('stale', now() - interval '200 days', false, true),
  ('newbie', null, false, false),
  ('oldadmin', now() - interval '200 days', true, true);
CREATE TABLE login_attempts (
  id serial, username text, login_time timestamptz, ip_address inet, success boolean);
INSERT INTO login_attempts (username, login_time, ip_address, success)
  SELECT 'recent', now() - interval '1 hour', '198.51.100.7', false FROM generate_series(1, 30);
INSERT INTO login_attempts (username, login_time, ip_address, success) VALUES
  ('recent', now() - interval '1 hour', '192.0.2.1', true),
  ('recent', now() - interval '3 days', '192.0.2.66', false);
CREATE TABLE authtoken_token (key text PRIMARY KEY, created timestamptz, user_id int);
INSERT INTO authtoken_token VALUES ('{OLD_KEY}', now() - interval '400 days', 2),
  ('sekret-fresh-{uuid.uuid4().hex}', now(), 1);
GRANT SELECT ON auth_user TO PUBLIC;
"""


@dataclass
class Scratch:
    db: PgDatabase
    role: str


@pytest.fixture
def scratch(pg_database: PgDatabase) -> Iterator[Scratch]:
    """A database of the test's own with the tables above, and a LOGIN SUPERUSER role."""
    db = PgDatabase(f"rb_access_{uuid.uuid4().hex[:8]}")
    role = f"rbtest_ar_{uuid.uuid4().hex[:8]}"
    pg_database.query(f'CREATE DATABASE "{db.name}"')
    try:
        db.query(SCHEMA)
        pg_database.query(f"CREATE ROLE {role} LOGIN SUPERUSER")
        yield Scratch(db, role)
    finally:
        pg_database.query(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
        pg_database.query(f"DROP ROLE IF EXISTS {role}")


def active(db: PgDatabase) -> dict[str, bool]:
    return {
        name: is_active for name, is_active in db.query("SELECT username, is_active FROM auth_user")
    }


ALL_ACTIVE = {"recent": True, "stale": True, "newbie": True, "oldadmin": True}


def review(s: Scratch, *args: str) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    code, doc = run_json(
        RUNBOOK,
        "-p", f"database={s.db.name}",
        "-p", "login_attempts_table=login_attempts",
        "-p", "api_keys_table=authtoken_token",
        "-p", "api_keys_label_column=user_id",
        *args,
    )  # fmt: skip
    return code, doc, steps_of(doc)


def names(step: dict[str, Any], field: str = "username") -> list[str]:
    return sorted(row[field] for row in step["data"]["rows"])


def auth_log(path: Path) -> Path:
    """12 recent `Failed password` lines from one address, 3 from another 3 days ago
    (outside the 24 h window), one from an IPv6 address, and a successful login."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    old = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 3 * 86400))
    line = "{} web1 sshd[42]: Failed password for root from {} port 2222 ssh2\n"
    text = line.format(now, "203.0.113.9") * 12 + line.format(old, "203.0.113.50") * 3
    text += line.format(time.strftime("%b %e %H:%M:%S"), "2001:db8::1")
    text += f"{now} web1 sshd[43]: Accepted password for bob from 203.0.113.9 port 22 ssh2\n"
    path.write_text(text)
    return path


def test_dry_run_reports_every_finding_and_changes_nothing(
    scratch: Scratch, tmp_path: Path
) -> None:
    missing_log = tmp_path / "no-such-auth.log"
    code, doc, s = review(
        scratch, "-p", "deactivate=true", "-p", f"auth_log={missing_log}", "--dry-run"
    )
    assert code == 1, doc  # warnings (stale accounts, failed logins, ...), nothing failed
    assert active(scratch.db) == ALL_ACTIVE
    assert s["deactivate"]["state"] == "skipped"

    # Database roles: the scratch role is a superuser, can log in, never expires,
    # and shows no sign of use; the exact revoke statement is generated for it.
    roles = {r["role"]: r for r in s["roles"]["data"]["rows"]}
    assert roles[scratch.role]["superuser"] and roles[scratch.role]["no_expiry"]
    assert s["roles"]["metrics"]["db_superusers"]["value"] >= 2  # postgres and ours
    unused = {r["role"]: r["revoke"] for r in s["unused_roles"]["data"]["rows"]}
    assert unused[scratch.role] == f"ALTER ROLE {scratch.role} NOLOGIN;"
    assert "postgres" not in unused  # the bootstrap superuser (and the engine's own role)
    assert {"object": "public.auth_user", "privilege": "SELECT"} in s["public_grants"]["data"][
        "rows"
    ]

    # Application accounts.
    assert names(s["stale"]) == ["oldadmin", "stale"]
    assert s["stale"]["metrics"]["stale_accounts"]["value"] == 2
    assert s["stale"]["state"] == "warn"
    assert {r["username"]: r["superuser"] for r in s["stale"]["data"]["rows"]} == {
        "oldadmin": True,
        "stale": False,
    }
    assert names(s["never"]) == ["newbie"]
    assert names(s["privileged"]) == ["oldadmin", "stale"]
    assert s["pick"]["data"]["to_deactivate"] == ["stale"]  # never the superuser by default

    # Old API keys, by label only; failed logins of the last 24 h per address.
    assert s["api_keys"]["data"]["rows"][0]["label"] == "2"
    assert s["api_keys"]["data"]["rowcount"] == 1
    failed = [(r["address"], r["failures"]) for r in s["failed_logins"]["data"]["rows"]]
    assert failed == [("198.51.100.7", 30)]  # not the success, not the 3-day-old failure
    assert s["failed_logins"]["metrics"]["failed_logins_max"]["state"] == "warn"

    # The missing auth log is reported as such, never as 0 failures.
    log = s["auth_log"]
    assert log["data"]["json"] == {"present": False, "reason": "missing"}
    assert log["metrics"]["auth_failed_max"]["value"] is None
    assert log["metrics"]["auth_log_missing"]["value"] == 1 and log["state"] == "warn"
    report = s["report"]["data"]["message"]
    assert f"auth log {missing_log} missing (not reviewed)" in report
    assert "stale accounts 2" in report and "deactivated 0" in report
    assert OLD_KEY not in str(doc)


def test_deactivation_with_yes_touches_exactly_the_stale_non_superusers(
    scratch: Scratch, tmp_path: Path
) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "review-test", "-f", str(key)],
        check=True,
    )
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{key}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    code, doc, s = review(
        scratch,
        "-p", "deactivate=true",
        "-p", f"auth_log={auth_log(tmp_path / 'auth.log')}",
        "-p", f"authorized_keys={key}.pub",
        "--yes", "--approve", "handover",
    )  # fmt: skip
    assert code == 1, doc
    assert active(scratch.db) == {**ALL_ACTIVE, "stale": False}
    assert names(s["deactivate"]) == ["stale"]
    assert s["verify"]["state"] == "ok"

    # Auth log: only the 24 h window, per address.
    log = s["auth_log"]["data"]["json"]
    assert log["present"] and log["failures"] == 13 and log["max"] == 12
    assert log["addresses"][0] == {"address": "203.0.113.9", "failures": 12}
    assert "203.0.113.50" not in str(log)
    assert s["auth_log"]["metrics"]["auth_failed_max"]["value"] == 12
    # The key file given is fingerprinted, with its owner.
    assert any(fingerprint in line for line in s["ssh_keys"]["data"]["stdout_lines"])
    assert s["ssh_keys"]["metrics"]["authorized_keys"]["value"] == 1

    handover = s["handover"]["data"]["instructions"]
    assert f"ALTER ROLE {scratch.role} NOLOGIN;" in handover
    assert "Deactivated by this run: stale." in handover
    assert "2: 400 days old" in handover  # the API key to rotate, by label
    assert "deactivated 1" in s["report"]["data"]["message"]
    assert OLD_KEY not in str(doc)


def test_without_yes_the_deactivation_is_declined_and_nothing_changes(
    scratch: Scratch,
) -> None:
    code, _, s = review(scratch, "-p", "deactivate=true", "-p", "auth_log=")
    assert code == 4
    assert s["deactivate"]["state"] == "aborted"
    assert "handover" not in s  # the host stopped at the declined gate
    assert s["report"]["state"] == "ok"  # the security report is still written
    assert active(scratch.db) == ALL_ACTIVE


def test_superusers_only_with_include_superusers(scratch: Scratch) -> None:
    code, _, s = review(
        scratch,
        "-p", "deactivate=true", "-p", "include_superusers=true", "-p", "auth_log=",
        "--yes", "--approve", "handover",
    )  # fmt: skip
    assert code == 1
    assert names(s["deactivate"]) == ["oldadmin", "stale"]
    assert active(scratch.db) == {**ALL_ACTIVE, "stale": False, "oldadmin": False}


def test_a_table_not_found_is_reported_not_read_as_no_findings(scratch: Scratch) -> None:
    code, _, s = review(scratch, "-p", "users_table=no_such_users", "-p", "auth_log=", "--dry-run")
    assert code == 1
    assert s["statements"]["data"]["rows"][0]["missing"] == "no_such_users"
    assert s["statements"]["metrics"]["app_tables_missing"]["value"] == 1
    assert s["stale"]["state"] == "skipped" and s["failed_logins"]["state"] == "warn"
    assert "NOT FOUND, not reviewed: no_such_users" in s["report"]["data"]["message"]
    assert "stale accounts n/a" in s["report"]["data"]["message"]


# Suspicious lines in the app log (BigShot Evening Checklist 3). ----------------

TOKEN = "tok-" + uuid.uuid4().hex  # a secret a request line carries: masked in the output

ATTACKS = [
    '"GET /products?id=1%20UNION%20SELECT%20password%20FROM%20users HTTP/1.1" 200 512',
    '"GET /login?user=admin\' OR 1=1-- HTTP/1.1" 200 12',
    '"GET /static/../../etc/hosts HTTP/1.1" 404 0',
    '"GET /download?file=/etc/passwd HTTP/1.1" 404 0',
    '"POST /comment?text=<script>alert(1)</script> HTTP/1.1" 201 0',
    '"GET /wp-admin/install.php HTTP/1.1" 404 0',
    f'"GET /phpMyAdmin/index.php?token={TOKEN} HTTP/1.1" 404 0',
]
CLEAN = [
    '"GET /api/v1/health HTTP/1.1" 200 17',
    '"GET /blog/the-union-selected-its-board HTTP/1.1" 200 900',  # words, not SQL
    '"POST /api/v1/passwd-reset HTTP/1.1" 200 3',
    '"GET /scripts/app.js HTTP/1.1" 200 4000',
]


def app_log(path: Path, attacks: int, denied: int) -> Path:
    """An nginx-style access log: `attacks` attack lines (ATTACKS in turn), the
    clean lines around them, and `denied` 401 answers to a password guesser."""
    line = '203.0.113.{} - - [04/Dec/2026:10:00:00 +0000] {} "-" "curl/8.0"\n'
    text = "".join(line.format(1, c) for c in CLEAN)
    text += "".join(line.format(9, ATTACKS[i % len(ATTACKS)]) for i in range(attacks))
    text += line.format(7, '"POST /login HTTP/1.1" 401 0') * denied
    text += "".join(line.format(1, c) for c in CLEAN)
    path.write_text(text)
    return path


def test_suspicious_lines_are_counted_and_the_first_20_shown(
    scratch: Scratch, tmp_path: Path
) -> None:
    log = app_log(tmp_path / "access.log", attacks=25, denied=60)
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"APP_TOKEN: {TOKEN}\n")
    secrets.chmod(0o600)
    code, doc, s = review(
        scratch, "-p", f"app_log={log}", "-p", "auth_log=", "--secrets", str(secrets), "--dry-run"
    )
    assert code == 1, doc
    step = s["suspicious_lines"]
    found = step["data"]["json"]
    assert found["searched"] == len(log.read_text().splitlines())
    assert found["suspicious"] == 25  # every attack line, none of the clean ones
    assert found["signs"] == {
        "sql_injection": 8, "path_traversal": 4, "etc_passwd": 4, "script": 3, "admin_probe": 6,
    }  # fmt: skip
    assert found["denied"] == 60
    assert len(found["first"]) == 20
    lines = log.read_text().splitlines()
    attack_lines = [line for line in lines if any(a in line for a in ATTACKS)]
    assert found["first"] == [line.replace(TOKEN, "***") for line in attack_lines[:20]]
    assert TOKEN not in str(doc)
    assert step["metrics"]["suspicious_log_lines"]["state"] == "warn"
    assert step["metrics"]["denied_log_lines"]["state"] == "warn"  # 60 > 50
    assert step["state"] == "warn"
    assert (
        f"app log {log}: suspicious lines 25, 401/403 answers 60." in s["report"]["data"]["message"]
    )

    # A clean log: nothing found, and nothing to warn about.
    log.write_text("".join(f"198.51.100.1 - - [04/Dec/2026:10:00:00 +0000] {c}\n" for c in CLEAN))
    code, _, s = review(scratch, "-p", f"app_log={log}", "-p", "auth_log=", "--dry-run")
    found = s["suspicious_lines"]["data"]["json"]
    assert (found["suspicious"], found["denied"], found["first"]) == (0, 0, [])
    assert s["suspicious_lines"]["state"] == "ok"


def test_a_missing_app_log_is_not_reviewed_never_zero_found(
    scratch: Scratch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-app.log"
    # The host var names it: an inventory whose one host is this machine.
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        f"hosts:\n  localhost:\n    connection: local\n    vars: {{app_log: '{missing}'}}\n"
    )
    code, _, s = review(scratch, "-i", str(inventory), "-p", "auth_log=", "--dry-run")
    assert code == 3  # a failed check
    step = s["suspicious_lines"]
    assert (
        step["state"] == "failed" and f"app log {missing}: missing, not reviewed" in step["error"]
    )
    assert step["metrics"] == {}  # no count at all
    assert s["handover"]["state"] == "skipped"  # the review went on (manual: dry run)
    assert f"app log {missing}: missing, not reviewed." in s["report"]["data"]["message"]

    code, _, s = review(scratch, "-p", "auth_log=", "--dry-run")
    assert code == 1 and s["suspicious_lines"]["state"] == "skipped"
    assert "no app log configured (not reviewed)." in s["report"]["data"]["message"]
