"""runbooks/emergency-high-cpu.yaml against a real CPU hog of the test's own (a
Python busy loop under a unique name), a real long query in PostgreSQL and an
access log whose last minutes hold a traffic spike."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures.celery_lab import Lab
from tests.fixtures.services import PgDatabase
from tests.helpers import named_python, run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "emergency-high-cpu.yaml"


@pytest.fixture
def hog(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with named_python(
        tmp_path, "rbcpu", "print('ready', flush=True)\nwhile True: pass\n"
    ) as started:
        yield started


def _access_log(path: Path) -> None:
    """60 requests spread over the hour before, 50 in the last two minutes."""
    now = datetime.now().astimezone()
    lines = []
    for minutes_ago, count in [(m, 1) for m in range(6, 66)] + [(0, 25), (1, 25)]:
        stamp = (now - timedelta(minutes=minutes_ago)).strftime("%d/%b/%Y:%H:%M:%S %z")
        line = f'10.0.0.1 - - [{stamp}] "GET /api/x HTTP/1.1" 200 12 "-" "curl"\n'
        lines += [line] * count
    path.write_text("".join(lines))


def test_it_names_the_hog_the_long_query_and_the_spike_then_restarts(
    hog: tuple[str, subprocess.Popen[bytes]], pg_database: PgDatabase, tmp_path: Path
) -> None:
    name, proc = hog
    log = tmp_path / "access.log"
    _access_log(log)
    sleeper = threading.Thread(target=pg_database.query, args=("SELECT pg_sleep(8)",))
    sleeper.start()
    time.sleep(1.5)  # the query has run for more than long_query_s
    code, doc = run_json(
        RUNBOOK,
        "-p", "warn_pct=20", "-p", "sample_seconds=2", "-p", "long_query_s=1",
        "-p", f"dsn={pg_database.dsn}", "-p", f"access_log={log}",
        "-p", f"restart_cmd=pkill -x {name}", "-p", "settle_seconds=1",
        "--yes", "--approve", "handover",
    )  # fmt: skip
    sleeper.join()
    s = steps_of(doc)
    cpu = s["cpu"]["data"]["json"]
    # The hog is among the top ten, near a whole CPU (as top shows a share);
    # on a busy test machine another process may burn as much.
    [mine] = [row for row in cpu["top"] if row["pid"] == proc.pid]
    assert mine["cpu_pct"] > 20, cpu
    assert s["cpu"]["metrics"]["cpu_busy_pct_before"]["state"] in ("warn", "critical")
    lines = [r["stdout"] for r in s["top"]["data"]["results"]]
    assert any(ln.startswith(f"{proc.pid} ") and name in ln for ln in lines)  # top -c
    assert any("pg_sleep" in r["query"] for r in s["queries"]["data"]["rows"])
    assert s["queries"]["metrics"]["long_queries"]["state"] == "warn"
    traffic = s["traffic"]["data"]["json"]
    assert traffic == {"per_min_now": 10.0, "per_min_before": 1.0}
    assert s["traffic"]["metrics"]["traffic_ratio"]["state"] == "critical"
    assert s["containers"]["state"] == "skipped" and s["celery_tasks"]["state"] == "skipped"
    assert s["restart"]["state"] == "ok"
    assert proc.wait(timeout=10) is not None  # the restart (here: the stop) reached it
    assert s["cpu_after"]["metrics"]["cpu_busy_pct"]["value"] is not None
    assert code in (1, 2), doc


def test_without_approval_it_only_gathers_evidence(
    hog: tuple[str, subprocess.Popen[bytes]],
) -> None:
    name, proc = hog
    code, doc = run_json(
        RUNBOOK, "-p", "warn_pct=20", "-p", "sample_seconds=1", "-p", f"restart_cmd=pkill -x {name}"
    )
    s = steps_of(doc)
    assert proc.pid in [row["pid"] for row in s["cpu"]["data"]["json"]["top"]]
    assert s["restart"]["state"] == "aborted"  # no terminal, no --yes: declined
    assert proc.poll() is None  # untouched
    assert code == 4


def test_an_unreadable_access_log_fails_the_traffic_view(tmp_path: Path) -> None:
    # The CPU bounds out of reach, the hand-over acknowledged: a busy test
    # machine (load per CPU) must not change what this test looks at.
    code, doc = run_json(
        RUNBOOK, "-p", "sample_seconds=1", "-p", f"access_log={tmp_path / 'missing.log'}",
        "-p", "warn_pct=100", "-p", "critical_pct=100", "--approve", "handover",
    )  # fmt: skip
    s = steps_of(doc)
    assert s["traffic"]["state"] == "failed"
    assert "cannot read" in s["traffic"]["data"]["stderr"]
    assert s["cpu"]["state"] != "failed"  # the other checks still ran
    assert code == 3


def test_a_long_celery_task_is_named(celery_lab: Lab) -> None:
    """A real worker running lab.sleep for longer than long_task_s."""
    lab = celery_lab
    lab.send(1, task="lab.sleep", args=(10,))  # queued first: the worker takes it at start
    subprocess.run(lab.start_worker_cmd(pool="threads"), shell=True, check=True, timeout=60)
    deadline = time.monotonic() + 30
    while lab.depth() > 0:  # the worker took it
        assert time.monotonic() < deadline, "the worker did not take the task"
        time.sleep(0.2)
    time.sleep(2)  # it has now run for longer than long_task_s
    code, doc = run_json(
        RUNBOOK, "-p", "sample_seconds=1", "-p", f"celery_cmd={lab.celery}", "-p", "long_task_s=1",
        "-p", "warn_pct=100", "-p", "critical_pct=100", "--approve", "handover",
    )  # fmt: skip
    s = steps_of(doc)
    active = s["celery_tasks"]["data"]["json"]["active"]
    [tasks] = active.values()
    assert [t["name"] for t in tasks] == ["lab.sleep"]
    assert s["celery_tasks"]["metrics"]["celery_long_tasks"]["value"] == 1
    assert s["celery_tasks"]["metrics"]["celery_long_tasks"]["state"] == "warn"
    assert code in (1, 2), doc
