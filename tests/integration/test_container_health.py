"""runbooks/container-health.yaml against real containers (podman, through the
lab's `docker` script): one compose-like project with a healthy container, one
that crash-loops until its configuration appears, one failing its health check,
and one killed by the OOM killer inside a 16 MiB limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.containers import ContainerLab
from tests.fixtures.s3server import S3Server
from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

LIBRARY = Path(__file__).resolve().parents[2] / "runbooks"
RUNBOOK = LIBRARY / "container-health.yaml"

# The worker needs /flag/ok (its "configuration") and exits 3 without it.
WORKER = 'test -f /flag/ok || { echo "worker: /flag/ok missing" >&2; exit 3; }; exec sleep 600'
HOG = "x=aaaaaaaa; while :; do x=$x$x; done"


def _wait(lab: ContainerLab, name: str, template: str, want: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (got := lab.inspect(name, template)) != want:
        assert time.monotonic() < deadline, f"{name}: {template} is {got!r}, want {want!r}"
        time.sleep(0.2)


def _outage(lab: ContainerLab, flag: Path) -> dict[str, str]:
    names = {
        "web": lab.run("web", "--memory", "64m"),
        "worker": lab.run(
            "worker", "--restart", "on-failure:2", "-v", f"{flag}:/flag", command=WORKER
        ),
        "api": lab.run("api", "--health-cmd", "test -f /tmp/ready", "--health-retries", "1"),
        "cache": lab.run("cache", "--memory", "16m", "--memory-swap", "16m", command=HOG),
    }
    _wait(lab, names["worker"], "{{.RestartCount}} {{.State.Status}}", "2 exited")
    _wait(lab, names["cache"], "{{.State.Status}}", "exited")
    # No systemd timer runs health checks here: run the failing one by hand.
    lab.docker("healthcheck", "run", names["api"], check=False)
    _wait(lab, names["api"], "{{.State.Health.Status}}", "unhealthy")
    return names


def _args(lab: ContainerLab, names: dict[str, str]) -> list[str]:
    return [
        "-p", f"container_cli={lab.cli}",
        "-p", f"filter={lab.filter}",
        "-p", "containers=" + ",".join(names[n] for n in ("web", "worker", "api")),
        "-p", "max_restarts=1",
    ]  # fmt: skip


@pytest.mark.timeout(240)
def test_it_finds_what_is_down_and_brings_it_back(containers: ContainerLab, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.mkdir()
    names = _outage(containers, flag)
    (flag / "ok").write_text("fixed\n")  # the operator fixed the worker's cause
    code, doc = run_json(RUNBOOK, *_args(containers, names), "--yes", "--approve", "handover")
    s = steps_of(doc)

    status = s["status"]["data"]["json"]
    assert status["down"] == [names["worker"]]
    assert status["unhealthy"] == [names["api"]]
    assert status["killed"] == [names["cache"]]  # exit 137 in its 16 MiB
    assert status["max_restarts"] == 2
    by_name = {c["name"]: c for c in status["containers"]}
    assert by_name[names["worker"]]["exit_code"] == 3
    assert by_name[names["web"]]["state"] == "running"
    assert s["status"]["state"] == "critical"
    assert s["status"]["metrics"]["container_restarts_max"]["state"] == "warn"

    stats = {c["name"]: c for c in s["stats"]["data"]["json"]["containers"]}
    assert stats[names["web"]]["mem_pct"] > 0  # a share of its 64 MiB limit
    assert names["worker"] not in stats  # only running containers have stats

    logs = {r["name"]: r["stdout"] for r in s["logs"]["data"]["results"]}
    assert set(logs) == {names["worker"], names["api"]}
    assert "worker: /flag/ok missing" in logs[names["worker"]]

    assert s["restart"]["state"] == "ok"
    assert s["after"]["state"] == "ok"
    assert s["after"]["metrics"]["containers_down_after"]["value"] == 0
    # The effect, seen outside the engine: both are running again.
    assert containers.inspect(names["worker"], "{{.State.Status}}") == "running"
    assert containers.inspect(names["api"], "{{.State.Status}}") == "running"
    assert s["handover"]["state"] == "ok"  # a container was OOM-killed: a person looks
    assert code == 2, doc


@pytest.mark.timeout(240)
def test_a_dry_run_reports_and_touches_nothing(containers: ContainerLab, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.mkdir()
    names = _outage(containers, flag)
    started = containers.inspect(names["api"], "{{.State.StartedAt}}")
    code, doc = run_json(RUNBOOK, *_args(containers, names), "--dry-run")
    s = steps_of(doc)
    assert code in (0, 1, 2), doc
    assert s["status"]["data"]["json"]["down"] == [names["worker"]]  # measured
    assert s["restart"]["state"] == "skipped" and s["restart"]["dry_run"] is True
    assert containers.inspect(names["worker"], "{{.State.Status}}") == "exited"
    assert containers.inspect(names["api"], "{{.State.StartedAt}}") == started


def test_a_cli_that_fails_is_a_failed_check_not_an_empty_fleet(tmp_path: Path) -> None:
    cli = tmp_path / "docker"
    cli.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    cli.chmod(0o755)
    code, doc = run_json(RUNBOOK, "-p", f"container_cli={cli}")
    s = steps_of(doc)
    assert s["status"]["state"] == "failed"
    assert "Cannot connect to the Docker daemon" in s["status"]["data"]["stderr"]
    assert code == 3


def test_the_backup_runs_pg_dump_inside_the_database_container(
    containers: ContainerLab,
    pg_client_image: str,
    pg_database: PgDatabase,
    pg_table: str,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    """PromptForge's manual backup: `docker exec postgres pg_dump ... > backup.sql`.
    The dump runs in the container, the file lands on the host, then S3."""
    pg_database.query(
        f"INSERT INTO {pg_table} (v) SELECT 'row ' || g FROM generate_series(1, 20) g"
    )
    name = containers.run("postgres", "--network", "host", image=pg_client_image)
    code, doc = run_json(
        LIBRARY / "postgres-backup-s3.yaml",
        "-p", f"database={pg_database.name}", "-p", f"bucket={s3_bucket}",
        "-p", f"endpoint={s3_server.endpoint}", "-p", f"verify_table={pg_table}",
        "-p", f"pg_dump={containers.cli} exec {name} pg_dump",
        env=s3_server.env(),
    )  # fmt: skip
    s = steps_of(doc)
    assert s["dump"]["state"] == "ok", s["dump"]
    assert s["dump"]["metrics"]["backup_bytes"]["value"] > 100
    assert s["count_rows"]["data"]["rows"][0]["n"] == 20, s["count_rows"]  # restored elsewhere
    assert code == 0, doc
