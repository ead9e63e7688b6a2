"""runbooks/postgres-wal-archiving.yaml against a PostgreSQL of the test's own,
restarted by the runbook with the fixture's pg_ctl: a WAL segment reaches the
archive directory and postgres-integrity's `archiving` check is then ok.
Unconfirmed, nothing changes; a second run finds it already set. The shared
server on 5432 is never reconfigured."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from tests.fixtures.own_postgres import OwnPostgres
from tests.helpers import cli, run_json, steps_of

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
RUNBOOK = RUNBOOKS / "postgres-wal-archiving.yaml"
INTEGRITY = RUNBOOKS / "postgres-integrity.yaml"
WAL_NAME = 24  # a WAL segment file's name: 24 hex digits


def archive_dir(server: OwnPostgres) -> Path:
    """Beside the data directory: /tmp/pytest-of-root is closed to the server's
    user. A quote, a space and a % test the quoting of archive_command."""
    return server.data.parent / "wal it's 100%" / "archive"


def inventory(tmp_path: Path, server: OwnPostgres, **host_vars: Any) -> Path:
    path = tmp_path / "db.yaml"
    db = {"address": "127.0.0.1", "vars": {"pg_port": server.port, **host_vars}}
    doc = {"defaults": {"connection": "local"}, "groups": {"databases": {"hosts": {"db1": db}}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def run(
    path: Path, tmp_path: Path, server: OwnPostgres, *args: str, **host_vars: Any
) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(path, "-i", str(inventory(tmp_path, server, **host_vars)), *args)
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc, "db1").items()}


def restart_cmd(server: OwnPostgres) -> str:
    # -l: the restarted server's output goes to its log, not to the step's pipe.
    return server.ctl_line("-m", "fast", "-l", str(server.data / "log"), "-w", "restart")


def set_up(tmp_path: Path, server: OwnPostgres, *args: str) -> tuple[int, dict[str, Any]]:
    return run(
        RUNBOOK, tmp_path, server,
        "-p", "setup_archiving=true", "-p", f"restart_cmd={restart_cmd(server)}", "--yes", *args,
        wal_archive_dir=str(archive_dir(server)),
    )  # fmt: skip


def show(server: OwnPostgres, setting: str) -> str:
    with psycopg.connect(server.dsn) as conn:
        row = conn.execute("SELECT current_setting(%s)", [setting]).fetchone()
    assert row is not None
    return str(row[0])


def archiver(server: OwnPostgres) -> tuple[int, int]:
    with psycopg.connect(server.dsn) as conn:
        row = conn.execute("SELECT archived_count, failed_count FROM pg_stat_archiver").fetchone()
    assert row is not None
    return row[0], row[1]


def postmaster_pid(server: OwnPostgres) -> str:
    return (server.data / "postmaster.pid").read_text().splitlines()[0]


def test_archiving_is_set_up_and_a_segment_arrives(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    pid = postmaster_pid(own_postgres)
    code, steps = set_up(tmp_path, own_postgres)
    assert code == 0, steps
    assert steps["setup"]["state"] == "ok"
    assert steps["archive_dir"]["json"] == {"created": True, "owner": "postgres", "mode": "700"}
    assert steps["restart"]["state"] == "ok"
    assert postmaster_pid(own_postgres) != pid  # archive_mode needed the restart

    # The directory: 0700, the server's user's, and the switched segment in it.
    folder = archive_dir(own_postgres)
    info = folder.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == (own_postgres.data.stat()).st_uid
    walfile = steps["switch"]["rows"][0]["walfile"]
    files = os.listdir(folder)  # root reads it; the server wrote it
    assert walfile in files and all(len(f) == WAL_NAME for f in files)
    assert (folder / walfile).stat().st_size == 16 * 1024 * 1024

    # The server's settings, and its archiver's count.
    assert show(own_postgres, "archive_mode") == "on"
    quoted = "'/" + str(folder)[1:].replace("'", "'\"'\"'").replace("%", "%%") + "'"
    assert show(own_postgres, "archive_command") == (
        f"test ! -f {quoted}/%f && cp %p {quoted}/%f.tmp && mv {quoted}/%f.tmp {quoted}/%f"
    )
    assert show(own_postgres, "archive_timeout") == "1h"
    deadline = time.monotonic() + 30  # the archiver reports a moment after the copy
    while archiver(own_postgres)[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    archived, failed = archiver(own_postgres)
    assert archived > 0 and failed == 0
    assert "archived into" in steps["summary"]["message"]

    # The weekly check now finds archiving on, succeeding and recent.
    code, checks = run(INTEGRITY, tmp_path, own_postgres, "-p", "database=postgres")
    assert checks["archiving"]["state"] == "ok", checks["archiving"]
    assert checks["archiving"]["rows"][0]["archived_count"] > 0
    assert checks["archiving"]["metrics"]["wal_archiving_off"]["value"] == 0


def test_without_yes_nothing_changes(tmp_path: Path, own_postgres: OwnPostgres) -> None:
    auto_conf = (own_postgres.data / "postgresql.auto.conf").read_text()
    pid = postmaster_pid(own_postgres)
    code, steps = run(
        RUNBOOK, tmp_path, own_postgres,
        "-p", "setup_archiving=true", "-p", f"restart_cmd={restart_cmd(own_postgres)}",
        "-p", f"wal_archive_dir={archive_dir(own_postgres)}",
    )  # fmt: skip
    assert code == 4
    assert steps["setup"]["state"] == "aborted"
    # What it would have done was asked, and none of it happened.
    assert "ALTER SYSTEM SET archive_mode = on" in steps["settings"]["rows"][0]["changes"]
    assert show(own_postgres, "archive_mode") == "off"
    assert show(own_postgres, "archive_command") in ("", "(disabled)")
    assert (own_postgres.data / "postgresql.auto.conf").read_text() == auto_conf
    assert not archive_dir(own_postgres).parent.exists()
    assert postmaster_pid(own_postgres) == pid


def test_a_second_run_says_already_set_and_changes_nothing(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    code, _ = set_up(tmp_path, own_postgres)
    assert code == 0
    auto_conf = (own_postgres.data / "postgresql.auto.conf").read_text()
    pid = postmaster_pid(own_postgres)
    files = sorted(os.listdir(archive_dir(own_postgres)))
    # The first run's segment is in the directory; pg_stat_archiver counts it
    # when the archiver reports, a moment later on a busy machine.
    deadline = time.monotonic() + 30
    while (archived := archiver(own_postgres)[0]) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)

    code, steps = set_up(tmp_path, own_postgres)
    assert code == 0, steps
    assert steps["settings"]["rows"][0]["changes"] == []
    assert "already set" in steps["already"]["message"]
    assert steps["setup"]["state"] == "skipped"
    assert "already set, nothing changed" in steps["summary"]["message"]
    assert (own_postgres.data / "postgresql.auto.conf").read_text() == auto_conf
    assert postmaster_pid(own_postgres) == pid  # no restart
    assert sorted(os.listdir(archive_dir(own_postgres))) == files  # no WAL switch
    assert archiver(own_postgres)[0] == archived


def test_without_a_restart_command_a_person_is_given_the_command(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    path = inventory(tmp_path, own_postgres, wal_archive_dir=str(archive_dir(own_postgres)))
    args = ("run", str(RUNBOOK), "-i", str(path), "-p", "setup_archiving=true", "--yes")
    result = cli(*args, "--format", "json")
    assert result.exit_code == 4  # --yes never does a manual step's work
    steps = steps_of(json.loads(result.stdout), "db1")
    assert steps["alter_system"]["state"] == "ok"
    assert steps["restart_manual"]["state"] == "aborted"
    assert "live" not in steps  # nothing after the step a person did not do
    # The instructions (on stderr) name the command: the fixture's cluster has
    # no Debian name, so pg_ctl on its data directory, as its owner.
    command = f"sudo -u postgres pg_ctl restart -m fast -D {own_postgres.data}"
    assert command in result.stderr
    # Written and reloaded, and waiting for the restart.
    with psycopg.connect(own_postgres.dsn) as conn:
        row = conn.execute(
            "SELECT setting, pending_restart FROM pg_settings WHERE name = 'archive_mode'"
        ).fetchone()
    assert row == ("off", True)

    # The person restarts; the next run finds it set and changes nothing.
    own_postgres.ctl("-m", "fast", "-l", str(own_postgres.data / "log"), "-w", "restart")
    assert show(own_postgres, "archive_mode") == "on"
    result = cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stdout
    assert "already set" in steps_of(json.loads(result.stdout), "db1")["already"]["data"]["message"]


def test_setup_needs_an_absolute_directory(tmp_path: Path, own_postgres: OwnPostgres) -> None:
    code, steps = run(
        RUNBOOK, tmp_path, own_postgres, "-p", "setup_archiving=true", "--yes",
        "-p", "wal_archive_dir=relative/wal",
    )  # fmt: skip
    assert code == 3
    assert "absolute directory" in steps["dir_given"]["error"]
    assert "setup" not in steps  # the failed check stopped the host
    assert show(own_postgres, "archive_mode") == "off"


def test_a_wrong_command_is_replaced_with_a_reload_not_a_restart(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    """archive_mode already on, archive_command failing: the command is set and
    reloaded, the server keeps running, and the segments it could not archive go too."""
    with open(own_postgres.data / "postgresql.auto.conf", "a") as conf:
        conf.write("archive_mode = on\narchive_command = 'false'\n")
    own_postgres.ctl("-m", "fast", "-l", str(own_postgres.data / "log"), "-w", "restart")
    with psycopg.connect(own_postgres.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")  # a segment for 'false' to fail on
    deadline = time.monotonic() + 30
    while archiver(own_postgres)[1] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert archiver(own_postgres)[1] > 0
    pid = postmaster_pid(own_postgres)

    code, steps = set_up(tmp_path, own_postgres)
    assert code == 0, steps
    changes = steps["settings"]["rows"][0]["changes"]
    assert [c.split(" = ")[0] for c in changes] == [
        "ALTER SYSTEM SET archive_command",
        "ALTER SYSTEM SET archive_timeout",
    ]
    assert steps["restart"]["state"] == "skipped"
    assert postmaster_pid(own_postgres) == pid
    assert show(own_postgres, "archive_command").startswith("test ! -f ")
    # The earlier segment goes too; pg_stat_archiver counts it when the
    # archiver reports, which on a busy machine can come a little later.
    deadline = time.monotonic() + 30
    while (archived := archiver(own_postgres)[0]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    archived, failed = archiver(own_postgres)
    assert archived >= 2 and failed > 0  # the earlier segment as well as the switched one
    assert steps["arrived"]["rows"][0]["failing_now"] is False
    assert len(os.listdir(archive_dir(own_postgres))) >= 2
