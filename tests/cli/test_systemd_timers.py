"""`runbook cron --systemd DIR`: a schedule as a systemd timer, checked against
systemd's own calendar parser (systemd-analyze) and croniter: the next runs
are the same instants."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from croniter import croniter

from engine.format.schedule import ScheduleError, on_calendar
from tests.helpers import cli, write

SCHEDULES = [
    "*/15 * * * *",
    "0 8 * * 1-5",
    "30 2 * * *",
    "0 3 1 * *",
    "0 4 * * 0",
    "5,35 */6 * * *",
    "0 0 1-10/3 * *",
    "0 12 * jan,jul *",
    "0 9 * * sat,sun",
]


BASE = datetime(2026, 12, 4, 7, 23, 45, tzinfo=UTC)  # both count from the same instant


def _systemd_next(expression: str, count: int) -> list[datetime]:
    base = BASE.strftime("%Y-%m-%d %H:%M:%S UTC")
    done = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", f"--base-time={base}", expression],
        capture_output=True, text=True, check=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", done.stdout)
    return [datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) for s in stamps]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("cron", SCHEDULES)
def test_the_timer_runs_when_cron_would(cron: str) -> None:
    expression = on_calendar(cron)
    got = _systemd_next(expression, 6)
    it = croniter(cron, BASE)
    want = [it.get_next(datetime) for _ in range(6)]
    assert got == want, (cron, expression)


def test_what_systemd_cannot_say_is_refused_with_the_reason() -> None:
    with pytest.raises(ScheduleError, match="OR the weekday"):
        on_calendar("0 0 1 * 1")
    with pytest.raises(ScheduleError, match="stepped weekday"):
        on_calendar("0 0 * * 1-5/2")


def test_units_are_written_for_every_runbook_that_can_run(tmp_path: Path) -> None:
    rbs = tmp_path / "rbs"
    rbs.mkdir()
    write(
        rbs,
        'runbook: report\ndescription: Monthly report\nschedule: "0 7 1 * *"\n'
        "params:\n  label: {type: str, required: true}\n"
        "steps:\n  - {name: a, log: '{{ params.label }}'}\n",
        "report.yaml",
    )
    write(rbs, 'runbook: nightly\nschedule: "0 0 1 * 1"\nsteps:\n  - {name: a, log: x}\n', "n.yaml")
    out = tmp_path / "units"
    res = cli("cron", str(rbs), "--systemd", str(out), "-p", "label=50% done $HOME")
    assert res.exit_code == 0, res.output
    assert "skipped nightly:" in res.stderr and "OR the weekday" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "runbook-report.service",
        "runbook-report.timer",
    ]
    timer = (out / "runbook-report.timer").read_text()
    assert "OnCalendar=*-*-01 07:00:00\n" in timer and "Persistent=true" in timer
    service = (out / "runbook-report.service").read_text()
    [exec_start] = [ln for ln in service.splitlines() if ln.startswith("ExecStart=")]
    assert exec_start.split("=", 1)[1].startswith("/")  # the installed runbook, absolute
    # systemd would expand % and $: both doubled, so the param arrives as typed.
    assert "'label=50%% done $$HOME'" in exec_start
    if shutil.which("systemd-analyze"):
        check = subprocess.run(
            ["systemd-analyze", "verify", str(out / "runbook-report.timer")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert "OnCalendar" not in check.stderr, check.stderr  # systemd parses the timer
