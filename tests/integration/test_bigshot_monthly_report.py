"""runbooks/bigshot-monthly-report.yaml on a database shaped as BigShot's
(domains, jobs) with rows this month and last month: the guide's usage and
job statistics, per month, with the failed share judged."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.services import PgDatabase
from tests.helpers import run_json

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "bigshot-monthly-report.yaml"
LAB = ROOT / "inventories" / "lab.yaml"

THIS = "date_trunc('month', now()) + interval '1 hour'"
LAST = "date_trunc('month', now()) - interval '10 days'"


def _bigshot(db: PgDatabase) -> None:
    db.query("CREATE TABLE domains (id serial, name text, status text, created_at timestamptz)")
    db.query(
        "CREATE TABLE jobs (id serial, job_type text, status text, created_at timestamptz, completed_at timestamptz)"
    )
    db.query(
        f"INSERT INTO domains (name, status, created_at) VALUES ('a', 'active', {LAST}), ('b', 'active', {THIS}), ('c', 'inactive', {THIS})"
    )
    # This month: scan 10 jobs, 3 failed, 60 s each; report 4 jobs, all completed, 10 s.
    for i in range(10):
        status = "failed" if i < 3 else "completed"
        db.query(
            f"INSERT INTO jobs (job_type, status, created_at, completed_at) VALUES ('scan', '{status}', {THIS}, {THIS} + interval '60 seconds')"
        )
    for _ in range(4):
        db.query(
            f"INSERT INTO jobs (job_type, status, created_at, completed_at) VALUES ('report', 'completed', {THIS}, {THIS} + interval '10 seconds')"
        )
    db.query(
        f"INSERT INTO jobs (job_type, status, created_at, completed_at) VALUES ('scan', 'completed', {LAST}, {LAST} + interval '5 seconds')"
    )


def _steps(doc: dict) -> dict:
    return {s["id"]: s for s in doc["hosts"]["lab-db"]["steps"]}


def test_this_months_usage_and_jobs_with_the_failed_share_judged(scratch_db: PgDatabase) -> None:
    _bigshot(scratch_db)
    code, doc = run_json(RUNBOOK, "-i", str(LAB), "-p", f"database={scratch_db.name}")
    s = _steps(doc)
    [usage] = s["usage"]["data"]["rows"]
    assert (usage["total_domains"], usage["domains_this_month"], usage["active_domains"]) == (
        3,
        2,
        2,
    )
    jobs = {r["job_type"]: r for r in s["jobs"]["data"]["rows"]}
    assert (jobs["scan"]["total_jobs"], jobs["scan"]["failed_jobs"]) == (10, 3)
    assert float(jobs["scan"]["avg_duration_seconds"]) == 60.0
    assert (jobs["report"]["completed_jobs"], float(jobs["report"]["failed_ratio"])) == (4, 0.0)
    ratio = s["jobs"]["metrics"]["bigshot_failed_job_ratio"]
    assert ratio["value"] == 0.3 and ratio["state"] == "critical"  # 30 % of scans failed
    assert s["jobs"]["metrics"]["bigshot_jobs_total"]["value"] == 14
    assert "scan 10 (7 completed, 3 failed, 60 s on average)" in s["report"]["data"]["message"]
    assert code == 2, doc


def test_the_previous_month_on_the_first(scratch_db: PgDatabase) -> None:
    _bigshot(scratch_db)
    code, doc = run_json(
        RUNBOOK,
        "-i",
        str(LAB),
        "-p",
        f"database={scratch_db.name}",
        "-p",
        "previous_month=true",
        "--dry-run",
    )
    s = _steps(doc)
    assert s["usage"]["data"]["rows"][0]["domains_this_month"] == 1
    assert [(r["job_type"], r["total_jobs"]) for r in s["jobs"]["data"]["rows"]] == [("scan", 1)]
    assert code == 0, doc
