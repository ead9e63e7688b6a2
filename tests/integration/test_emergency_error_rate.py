"""runbooks/emergency-error-rate.yaml: exact counts from a written access log,
and the lab app (scripts/lab/app.py) under real traffic, where the access log
and the /metrics counter must tell the same story; the suspects (app log,
database, Redis, external services, a recent deploy); a restart only when
asked and confirmed, measured again after; a dry run that changes nothing."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.lab_app import LabApp
from tests.fixtures.services import PgDatabase
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "emergency-error-rate.yaml"


def line(status: int, path: str, seconds: float, client: str = "10.0.0.1", ago: int = 0) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(time.time() - ago))
    return (
        f'{client} - - [{stamp}] "GET {path}?page=2 HTTP/1.1" {status} 12 "-" "curl/8" {seconds}\n'
    )


def run(*args: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    code, doc = run_json(RUNBOOK, "-p", "sample_seconds=1", *args)
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}, doc


def value(steps: dict[str, Any], step: str, name: str) -> Any:
    return steps[step]["metrics"][name]["value"]


def get(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def pid(app: LabApp) -> str:
    status = app.run("status")
    assert status.returncode == 0, status.stdout
    return status.stdout.split()[-1]


def test_exact_counts_paths_p95_and_the_recent_deploy(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = [line(200, "/api/items", 0.05) for _ in range(145)]
    lines += [line(200, "/api/slow", 2.5) for _ in range(20)]  # the slowest 10 %
    lines += [line(404, "/nope", 0.01) for _ in range(20)]
    lines += [line(500, "/api/orders", 0.2, "10.0.0.9") for _ in range(12)]
    lines += [line(502, "/api/pay", 0.2) for _ in range(3)]
    log.write_text("".join(lines))
    app_dir = tmp_path / "app"
    for release in ("r1", "r2"):
        (app_dir / "releases" / release).mkdir(parents=True)
    (app_dir / "current").symlink_to(app_dir / "releases" / "r2")  # deployed just now

    code, steps, doc = run(
        "-p", f"access_log={log}", "-p", f"app_dir={app_dir}", "--approve", "handover"
    )
    assert steps["log_ratio"]["json"] == {"total": 200, "errors": 15, "client_errors": 20}
    assert value(steps, "log_ratio", "http_5xx_ratio_log") == pytest.approx(15 / 200)
    assert value(steps, "log_ratio", "http_4xx_ratio_log") == pytest.approx(20 / 200)
    assert steps["log_ratio"]["state"] == "critical"  # over TrailBlaze's 5 %
    top = steps["top_5xx"]["stdout_lines"]
    assert top[:3] == ["-- paths (count status path)", "12 500 /api/orders", "3 502 /api/pay"]
    assert top[3:] == ["-- clients (count address)", "12 10.0.0.9", "3 10.0.0.1"]
    assert steps["latency"]["json"] == {
        "samples": 200,
        "p50_ms": 50,
        "p95_ms": 2500,
        "max_ms": 2500,
    }
    assert steps["latency"]["state"] == "critical"  # p95 2.5 s > 2000 ms
    assert steps["deploy"]["stdout_lines"] == ["0", str(app_dir / "releases" / "r2"), "r1"]
    assert steps["deploy"]["state"] == "warn"
    assert "a deploy 0 minutes ago is the first suspect" in steps["suspect"]["message"]
    handover = steps["handover"]["instructions"]
    assert "-> ROLL BACK" in handover and "app-release-rollback.yaml" in handover
    assert "<the tarball of r1>" in handover and doc["run_id"] in handover
    assert code == 2


def test_a_window_in_minutes_counts_only_the_recent_requests(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = [line(500, "/old", 0.05, ago=7200) for _ in range(50)]  # an outage 2 h ago
    lines += [line(200, "/api/items", 0.05, ago=60) for _ in range(97)]
    lines += [line(503, "/api/items", 0.05, ago=30) for _ in range(3)]
    log.write_text("".join(lines))
    code, steps, _ = run(
        "-p", f"access_log={log}", "-p", "window_minutes=5", "--approve", "handover"
    )
    assert steps["log_ratio"]["json"] == {"total": 100, "errors": 3, "client_errors": 0}
    assert steps["log_ratio"]["state"] == "warn" and code == 1  # 3 % is between 1 and 5 %
    assert steps["top_5xx"]["stdout_lines"][1] == "3 503 /api/items"  # not /old
    code, steps, _ = run("-p", f"access_log={log}", "-p", "window=60", "--approve", "handover")
    assert steps["log_ratio"]["json"] == {"total": 60, "errors": 3, "client_errors": 0}
    code, steps, _ = run("-p", f"access_log={log}", "--approve", "handover")
    assert steps["log_ratio"]["json"]["errors"] == 53 and code == 2  # lines mode: all of it


def test_an_unreadable_log_fails_its_check_and_the_rest_still_runs(
    tmp_path: Path, pg_database: PgDatabase, redis_url: str, lab_app: LabApp
) -> None:
    app_log = tmp_path / "app.log"
    app_log.write_text(
        "INFO fine\nERROR boom: KeyError 'x'\nERROR psycopg.OperationalError: too many clients\n"
    )
    code, steps, _ = run(
        "-p", f"access_log={tmp_path / 'missing.log'}", "-p", f"app_log={app_log}",
        "-p", f"dsn={pg_database.dsn}", "-p", f"redis_url={redis_url}",
        "-p", f"external_urls={lab_app.url}/health,http://127.0.0.1:1/",
    )  # fmt: skip
    assert steps["log_ratio"]["state"] == "failed"  # never "0 % errors"
    assert "cannot read the access log" in steps["log_ratio"]["error"]
    assert steps["log_ratio"]["metrics"] == {}
    assert steps["top_5xx"]["state"] == steps["latency"]["state"] == "skipped"
    assert steps["app_errors"]["stdout_lines"] == [
        '{"error_lines": 2, "db_error_lines": 1}',
        "ERROR boom: KeyError 'x'",
        "ERROR psycopg.OperationalError: too many clients",
    ]
    assert steps["database"]["state"] == "ok" and steps["database"]["rows"][0]["sessions"] >= 1
    assert steps["redis"]["value"] in (True, "PONG")
    results = steps["external"]["results"]
    assert [r["state"] for r in results] == ["ok", "failed"]  # the lab app answers; :1 does not
    assert steps["handover"]["state"] == "skipped"  # nothing measured to hand over
    assert code == 3


def test_200_requests_the_log_and_the_counter_count_the_same(lab_app: LabApp) -> None:
    lab_app.set_error_ratio(0.2)
    errors = sum(get(f"{lab_app.url}/api/items") == 500 for _ in range(200))
    logged = lab_app.access_log.read_text().count("\n")  # with the fixture's start probe
    args = ("-p", f"access_log={lab_app.access_log}", "-p", f"metrics_url={lab_app.url}/metrics")
    code, steps, _ = run(*args, "--approve", "handover")
    assert steps["log_ratio"]["json"] == {"total": logged, "errors": errors, "client_errors": 0}
    assert steps["log_ratio"]["state"] == "critical" and 0.08 < errors / 200 < 0.35
    counted = steps["metrics_ratio"]["json"]
    assert (counted["total"], counted["errors"]) == (
        200,
        errors,
    )  # since start, scrapes not counted
    # No traffic between the two samples: the current ratio is not judged.
    assert counted["requests"] == 0 and value(steps, "metrics_ratio", "http_5xx_ratio_now") is None
    assert steps["metrics_ratio"]["state"] == "ok"
    assert code == 2


@contextmanager
def traffic(app: LabApp, ratio: float) -> Iterator[None]:
    """Requests to the app all along, as users would send them."""
    app.set_error_ratio(ratio)
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            try:
                get(f"{app.url}/api/items")
            except OSError:  # the app is restarting
                stop.wait(0.05)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + 10  # some history in the log before the runbook reads it
    while app.access_log.read_text().count("/api/items") < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield
    finally:
        stop.set()
        sender.join(timeout=10)


@pytest.mark.parametrize(("ratio", "state", "exit_code"), [(0.2, "critical", 2), (0.0, "ok", 0)])
def test_log_and_counter_agree_under_real_traffic(
    lab_app: LabApp, ratio: float, state: str, exit_code: int
) -> None:
    args = ("-p", f"access_log={lab_app.access_log}", "-p", f"metrics_url={lab_app.url}/metrics")
    with traffic(lab_app, ratio):
        code, steps, _ = run(*args, "--approve", "handover")
    now = value(steps, "metrics_ratio", "http_5xx_ratio_now")
    in_log = value(steps, "log_ratio", "http_5xx_ratio_log")
    assert value(steps, "metrics_ratio", "http_requests_per_s") > 20
    if ratio:
        assert 0.1 < now < 0.3 and 0.1 < in_log < 0.3 and abs(now - in_log) < 0.1, (now, in_log)
        assert steps["top_5xx"]["stdout_lines"][1].split()[1:] == ["500", "/api/items"]
    else:
        assert now == in_log == 0
        assert steps["handover"]["state"] == "skipped"
    assert steps["log_ratio"]["state"] == steps["metrics_ratio"]["state"] == state
    assert code == exit_code


def test_a_restart_only_when_asked_and_confirmed(lab_app: LabApp) -> None:
    before = pid(lab_app)
    args = (
        "-p", f"access_log={lab_app.access_log}", "-p", f"metrics_url={lab_app.url}/metrics",
        "-p", "restart=true", "-p", f"restart_cmd={lab_app.command('restart')}",
    )  # fmt: skip
    with traffic(lab_app, 0.3):
        code, steps, _ = run(*args)
        assert code == 4 and steps["restart"]["state"] == "aborted"  # no terminal, no --yes
        assert pid(lab_app) == before
        code, steps, _ = run(*args, "--yes", "--approve", "handover")
    assert steps["restart"]["state"] == "ok"
    assert pid(lab_app) != before  # a new process
    # Both samples after the restart are of the new process (no counter reset between).
    assert steps["ratio_after"]["json"]["reset"] is False
    # The restart does not cure this app (its error share is configured):
    # measured again, still critical, and the hand-over is reached.
    assert value(steps, "ratio_after", "http_5xx_ratio_after") > 0.05
    assert "After the restart:" in steps["handover"]["instructions"]
    assert code == 2


def test_a_dry_run_measures_and_restarts_nothing(lab_app: LabApp) -> None:
    before = pid(lab_app)
    with traffic(lab_app, 0.3):
        code, steps, _ = run(
            "-p", f"access_log={lab_app.access_log}", "-p", f"metrics_url={lab_app.url}/metrics",
            "-p", "restart=true", "-p", f"restart_cmd={lab_app.command('restart')}", "--dry-run",
        )  # fmt: skip
    assert code in (0, 1, 2), steps
    assert value(steps, "log_ratio", "http_5xx_ratio_log") > 0.05
    assert value(steps, "metrics_ratio", "http_5xx_ratio_now") > 0.05
    assert steps["restart"]["state"] == "skipped"
    assert steps["after_a"]["state"] == "skipped"
    assert pid(lab_app) == before
