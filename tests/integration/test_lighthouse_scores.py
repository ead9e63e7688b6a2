"""runbooks/lighthouse-scores.yaml against a real table of nightly audits in a
database of the test's own, shaped as the Django site's `LighthouseResult`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.services import PgDatabase
from tests.helpers import run_json

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "lighthouse-scores.yaml"
LAB = ROOT / "inventories" / "lab.yaml"

TABLE = """
CREATE TABLE utils_lighthouseresult (
  id serial PRIMARY KEY, url text NOT NULL,
  performance_score float, accessibility_score int, best_practices_score float,
  seo_score float, created_at timestamptz NOT NULL)
"""


def _audits(db: PgDatabase, latest_hours_ago: float, blog_now: float) -> None:
    """Eight nights for two pages; performance is stored 0-1, accessibility 0-100.
    The blog's latest performance is `blog_now`; everything else is steady."""
    db.query(TABLE)
    for night in range(8):
        hours = latest_hours_ago + 24 * night
        for url, perf in (("/", 0.95), ("/blog/", blog_now if night == 0 else 0.92)):
            db.query(
                "INSERT INTO utils_lighthouseresult (url, performance_score, accessibility_score,"
                " best_practices_score, seo_score, created_at)"
                " VALUES (%s, %s, 97, 1.0, 0.9, now() - %s * interval '1 hour')",
                (url, perf, hours),
            )


def _run(db: PgDatabase, *args: str) -> tuple[int, dict]:
    return run_json(RUNBOOK, "-i", str(LAB), "-p", f"database={db.name}", *args)


def test_a_page_that_lost_points_is_named_with_its_drop(scratch_db: PgDatabase) -> None:
    _audits(scratch_db, latest_hours_ago=3, blog_now=0.80)
    code, doc = _run(scratch_db, "--approve", "review")
    steps = {s["id"]: s for s in doc["hosts"]["lab-db"]["steps"]}
    assert steps["latest"]["metrics"]["lighthouse_age_h"]["state"] == "ok"
    assert steps["latest"]["data"]["json"]["audits"] == 16
    results = {r["score"]: r["json"] for r in steps["drops"]["data"]["results"]}
    perf = results["performance_score"]
    assert perf["pages"][0] == {"url": "/blog/", "latest": 80.0, "baseline": 92.0, "drop": 12.0}
    assert perf["max_drop"] == 12.0
    assert results["accessibility_score"]["max_drop"] == 0  # 97 every night
    metrics = steps["drops"]["metrics"]
    assert metrics["lighthouse_score_drop[performance_score]"]["state"] == "critical"  # > 2 x 5
    assert metrics["lighthouse_score_drop[seo_score]"]["state"] == "ok"
    review = steps["review"]
    assert review["state"] == "ok"
    assert "performance_score of /blog/: 80.0 now, 92.0 on average (-12.0)" in json.dumps(review)
    assert code == 2, doc


def test_an_audit_that_did_not_run_last_night_is_said(scratch_db: PgDatabase) -> None:
    _audits(scratch_db, latest_hours_ago=60, blog_now=0.92)
    code, doc = _run(scratch_db, "--dry-run", "-p", "drop=3")
    steps = {s["id"]: s for s in doc["hosts"]["lab-db"]["steps"]}
    assert steps["latest"]["metrics"]["lighthouse_age_h"]["state"] == "critical"  # > 2 x 26 h
    assert steps["drops"]["state"] == "ok"  # measured in the dry run: nothing lost
    assert code == 2


def test_a_missing_table_fails_the_check_never_reads_as_fine(scratch_db: PgDatabase) -> None:
    code, doc = _run(scratch_db)
    steps = {s["id"]: s for s in doc["hosts"]["lab-db"]["steps"]}
    assert steps["latest"]["state"] == "failed"
    assert "utils_lighthouseresult" in steps["latest"]["data"]["stderr"]
    assert code == 3
