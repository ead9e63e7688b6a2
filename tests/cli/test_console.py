"""The live console: plain lines off a terminal, styled ones on it, user text verbatim."""

from __future__ import annotations

import io
import subprocess
import sys

from engine.events import RunStarted, StepFinished
from engine.reports.console import ConsoleReport
from engine.results import State, StepResult


def _events(name: str) -> list:
    started = RunStarted(
        "r1", runbook="rb", path="rb.yaml", hosts=["web1", "db1"], params={},
        operator="alice", dry_run=False,
    )  # fmt: skip
    result = StepResult(
        step_id="s", name=name, host="web1", state=State.FAILED, duration_ms=1500,
        error="exit 3 [bold]not markup[/]",
    )  # fmt: skip
    done = StepFinished("r1", host="web1", result=result)
    return [started, done]


def test_plain_lines_keep_brackets_and_name_the_host() -> None:
    out = io.StringIO()
    report = ConsoleReport(out)
    for event in _events("restart [red]api[/]"):
        report.handle(event)
    text = out.getvalue()
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert lines[0].startswith("▶ rb  run r1 on 2 host(s): web1, db1  by alice")
    assert lines[1] == "web1 ✗ failed    restart [red]api[/]  1.5s"
    assert lines[2] == "web1     exit 3 [bold]not markup[/]"


def test_styled_lines_draw_colours_without_reading_user_text_as_markup() -> None:
    out = io.StringIO()
    report = ConsoleReport(out, color=True)
    for event in _events("restart [red]api[/]"):
        report.handle(event)
    text = out.getvalue()
    assert "\x1b[31m✗ failed" in text  # the state in red
    assert "restart [red]api[/]" in text
    assert "exit 3 [bold]not markup[/]" in text


def test_a_plain_console_does_not_import_rich() -> None:
    code = (
        "import io, sys\n"
        "from engine.reports.console import ConsoleReport\n"
        "ConsoleReport(io.StringIO())\n"
        "print('rich' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
