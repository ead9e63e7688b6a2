"""runbooks/emergency-celery-backlog.yaml against a real Celery worker on
Redis (scripts/lab/celery_lab.py): a backlog with no worker is measured, the
confirmed restart starts one and the queue drains; purge deletes only when
asked and confirmed. Each test has a queue of its own on Redis database 15."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.celery_lab import BROKER, Lab
from tests.helpers import run_json, steps_of

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "emergency-celery-backlog.yaml"

pytest.importorskip("celery", reason="celery is a dev dependency: pip install -e '.[dev]'")


@pytest.fixture
def lab(celery_lab: Lab) -> Lab:
    return celery_lab


def run(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK, "-p", f"broker_url={BROKER}", "-p", f"queues={json.dumps([lab.queue])}",
        "-p", f"celery_cmd={lab.celery}", "-p", f"worker_restart_cmd={lab.start_worker_cmd()}",
        "-p", "warn_depth=20", "-p", "critical_depth=500", "-p", "drain_delay=1s",
        "-p", "inspect_timeout=1", *args,
    )  # fmt: skip
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}


def test_a_backlog_without_workers_is_restarted_and_drains(lab: Lab) -> None:
    lab.send(50)
    code, steps = run(lab, "--yes")
    assert steps["depth"]["results"][0]["value"] == 50
    assert steps["depth"]["metrics"][f"celery_queue_depth[{lab.queue}]"]["state"] == "warn"
    assert steps["workers"]["metrics"]["celery_workers_alive"]["value"] == 0
    assert steps["workers"]["state"] == "critical"
    assert steps["broker"]["metrics"]["broker_used_memory_mb"]["value"] > 0
    assert steps["restart_workers"]["state"] == "ok"
    assert steps["workers_after"]["metrics"]["celery_workers_alive_after"]["value"] == 1
    assert steps["drain"]["state"] == "ok"
    assert steps["depth_now"]["results"][0]["value"] == 0 == lab.depth()
    assert steps["purge"]["state"] == "skipped"
    # What was found stays the verdict: no worker answered when the run began.
    assert code == 2, steps


def test_purge_needs_the_flag_and_the_confirmation(lab: Lab) -> None:
    lab.send(30)
    redis.Redis.from_url(BROKER).rpush(f"{lab.queue}\x06\x163", "a", "b")  # priority 3
    code, steps = run(lab, "-p", "worker_restart_cmd=true", "-p", "drain_checks=1")
    assert code == 4 and steps["restart_workers"]["state"] == "aborted"  # declined: no terminal
    assert lab.depth() == 30
    code, steps = run(lab, "-p", "worker_restart_cmd=true", "-p", "drain_checks=1", "--yes")
    assert steps["purge"]["state"] == "skipped" and lab.depth() == 30  # not asked for
    args = ("-p", "worker_restart_cmd=true", "-p", "drain_checks=1", "-p", "purge=true")
    code, steps = run(lab, *args, "--approve", "restart_workers", "--approve", "handover")
    assert code == 4 and steps["purge"]["state"] == "aborted"  # the purge itself not approved
    assert (
        "PURGE" in steps["purge"]["error"] and " 32 messages are deleted" in steps["purge"]["error"]
    )
    assert lab.depth() == 30
    code, steps = run(
        lab, "-p", "worker_restart_cmd=true", "-p", "drain_checks=1", "-p", "purge=true", "--yes"
    )
    assert steps["purge"]["state"] == "ok" and steps["purge"]["value"] == 32, steps["purge"]
    assert steps["purge"]["approved_by"].endswith("(--yes)")
    assert lab.depth() == 0 and steps["depth_now"]["results"][0]["value"] == 0


def test_a_dry_run_measures_and_restarts_nothing(lab: Lab) -> None:
    lab.send(25)
    code, steps = run(lab, "--dry-run", "-p", "purge=true")
    assert code in (0, 1, 2), steps
    assert steps["depth"]["results"][0]["value"] == 25
    assert steps["workers"]["metrics"]["celery_workers_alive"]["value"] == 0
    assert steps["restart_workers"]["state"] == steps["purge"]["state"] == "skipped"
    assert lab.depth() == 25 and not lab.pidfile.exists()


def test_a_live_worker_with_nothing_waiting_needs_nothing(lab: Lab) -> None:
    started = subprocess.run(lab.start_worker_cmd(), shell=True, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    lab.wait_ready()
    code, steps = run(lab)
    assert code == 0, [
        (k, v["state"], v.get("error"), v.get("data"))
        for k, v in steps.items()
        if v["state"] != "ok"
    ]
    assert steps["workers"]["metrics"]["celery_workers_alive"]["value"] == 1
    assert steps["tasks"]["metrics"]["celery_tasks_active"]["value"] == 0
    assert steps["restart_workers"]["state"] == "skipped"


def test_a_stale_beat_schedule_is_found_and_beat_restarted(lab: Lab, tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    schedule.write_bytes(b"")
    hour_ago = time.time() - 3600
    os.utime(schedule, (hour_ago, hour_ago))
    restarted = tmp_path / "beat-restarted"
    args = ("-p", f"beat_schedule_file={schedule}", "-p", f"beat_restart_cmd=touch {restarted}")
    _, steps = run(lab, *args, "-p", "worker_restart_cmd=true", "-p", "drain_checks=1", "--yes")
    assert 3590 <= steps["beat"]["metrics"]["celery_beat_age_s"]["value"] < 3700
    assert steps["beat"]["state"] == "warn"
    assert steps["restart_beat"]["state"] == "ok" and restarted.exists()
    schedule.touch()  # beat writes it again
    _, steps = run(lab, *args, "-p", "worker_restart_cmd=true", "-p", "drain_checks=1", "--yes")
    assert steps["beat"]["state"] == "ok" and steps["restart_beat"]["state"] == "skipped"
