"""`runbook test`: prove a runbook's branches against stand-in step results.

Exit 0 when every case passes, 1 when one fails, 65 for an invalid cases file
or runbook (nothing runs then), 64 for a file that is not there.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from . import helptext

if TYPE_CHECKING:
    from engine.testing.case_run import CaseResult

# (cases file, runbook name, its cases' results)
Report = list[tuple[str, str, list["CaseResult"]]]


@click.command("test", epilog=helptext.TEST)
@click.argument("runbook", type=click.Path(dir_okay=False))
@click.argument("cases", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def test_command(runbook: str, cases: tuple[str, ...], fmt: str) -> None:
    """Run RUNBOOK's test cases (default: tests/NAME.yaml beside it) with stand-in
    results for its steps: nothing real is touched. CASES may name the files."""
    from engine.testing.case_run import run_case
    from engine.testing.suite import plan

    suites = plan(runbook, cases)
    report: Report = []
    for suite in suites:
        results = [run_case(suite.runbook, case) for case in suite.cases.cases]
        report.append((suite.cases.path, suite.runbook.name, results))
    failed = sum(not r.passed for _, _, results in report for r in results)
    if fmt == "json":
        _json(report)
    else:
        _text(report, failed)
    sys.exit(1 if failed else 0)


def _text(report: Report, failed: int) -> None:
    total = 0
    for path, name, results in report:
        click.echo(f"{name}  ({path})")
        for res in results:
            total += 1
            mark = "PASS" if res.passed else "FAIL"
            click.echo(f"  {mark}  {res.name}  ({path}:{res.line})")
            lines = [f"no stand-in result: {m}" for m in res.missing] + res.differences
            for line in lines:
                click.echo(f"        {line}")
    click.echo(f"{total} case(s): {total - failed} passed, {failed} failed")


def _json(report: Report) -> None:
    doc = {
        "files": [
            {
                "file": path,
                "runbook": name,
                "cases": [r.to_dict() for r in results],
            }
            for path, name, results in report
        ]
    }
    click.echo(json.dumps(doc, indent=2))
