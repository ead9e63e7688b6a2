"""runbooks/monthly-audit.yaml on a two-host lab (a database and cache host, a
web host, both this machine): each included check runs on the hosts of its
group, a part that finds something does not stop the others, the report names
every part, and nothing is changed."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.lab_app import LabApp
from tests.fixtures.services import PgDatabase
from tests.helpers import cli, run_json, write

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "monthly-audit.yaml"
HANDOVERS = ("access.handover", "updates.handover", "performance.optimise")


def _inventory(tmp_path: Path, app: LabApp) -> Path:
    backups = tmp_path / "backups"
    backups.mkdir()
    with gzip.open(backups / "app_20261201T020000.sql.gz", "wt") as f:
        f.write("-- a dump\n")
    return write(
        tmp_path,
        f"""
        defaults: {{connection: local}}
        vars:
          pg_user: postgres
          pg_port: 5432
          redis_port: 6379
          health_url: {app.url}/health
          app_log: {app.app_log}
          backup_dir: {backups}
        groups:
          databases:
            hosts:
              db1: {{address: 127.0.0.1}}
          caches:
            hosts:
              db1: {{}}
          web:
            hosts:
              web1: {{address: 127.0.0.1}}
        """,
        "inventory.yaml",
    )


def _steps(doc: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in doc["hosts"][host]["steps"]}


@pytest.mark.timeout(300)
def test_every_part_runs_where_it_belongs_and_nothing_changes(
    lab_app: LabApp, scratch_db: PgDatabase, tmp_path: Path
) -> None:
    scratch_db.query("CREATE TABLE t (id int)")
    scratch_db.query("INSERT INTO t SELECT generate_series(1, 2000)")
    scratch_db.query("DELETE FROM t WHERE id % 2 = 0")  # bloat the weekly run would vacuum
    inv = _inventory(tmp_path, lab_app)
    approvals = [a for h in HANDOVERS for a in ("--approve", h)]
    report = tmp_path / "audit.html"
    code, doc = run_json(
        RUNBOOK,
        "-i",
        str(inv),
        "-p",
        f"database={scratch_db.name}",
        "--report",
        str(report),
        *approvals,
    )
    db, web = _steps(doc, "db1"), _steps(doc, "web1")
    # Each part where it belongs.
    for part in ("integrity", "performance", "cache"):
        assert db[part]["state"] != "skipped", db[part]
        assert web[part]["state"] == "skipped"
    for part in ("health", "access", "updates"):
        assert db[part]["state"] != "skipped" and web[part]["state"] != "skipped"
    assert db["containers"]["state"] == "skipped"  # no container runtime configured
    # The included steps are there, under the include's id.
    assert db["health.disk"]["state"] in ("ok", "warn", "critical")
    assert db["integrity.amcheck"]["state"] != "skipped"
    assert db["health.health"]["state"] == "ok"  # the lab app answered
    # One line per host says how every part ended.
    message = db["report"]["data"]["message"]
    for part in ("health", "integrity", "performance", "cache", "access", "updates", "containers"):
        assert f"{part} {db[part]['state']}" in message
    assert code in (1, 2), doc  # findings on this machine, no failure
    # The report page holds both hosts and the included steps.
    page = report.read_text()
    assert "monthly-audit" in page and "integrity.amcheck" in page and "web1" in page
    # Read-only: the bloated table was not vacuumed.
    assert (
        scratch_db.scalar("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 't'") is None
    )
    assert cli("history", "--metric", "disk_used_pct").exit_code == 0


def test_without_a_person_for_the_handovers_it_stops_at_them(
    lab_app: LabApp, scratch_db: PgDatabase, tmp_path: Path
) -> None:
    inv = _inventory(tmp_path, lab_app)
    code, doc = run_json(
        RUNBOOK, "-i", str(inv), "-p", f"database={scratch_db.name}", "--limit", "web1"
    )
    web = _steps(doc, "web1")
    assert web["access.handover"]["state"] == "aborted"
    assert "--approve access.handover" in web["access.handover"]["error"]
    assert code == 4
