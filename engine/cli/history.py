"""`runbook history` and `runbook resume`.

history: the recent runs, one run's timeline, a metric's trend, or a run's
reports drawn again from the store. resume: the same runbook file, params,
hosts and options as a recorded run, skipping the steps it finished.

Exit codes of resume beyond a run's own: 64 for an unknown run id or a secret
param that must be given again, 65 when the runbook's step ids changed since
the run (nothing is executed), 4 while the original run is still alive.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from engine.errors import UsageError

from .options import max_connections_option, output_options


def _store() -> Any:
    from engine.history import HistoryError, history_location, open_store

    location = history_location()
    if location is None:
        raise HistoryError("run history is disabled (RUNBOOK_HISTORY=off): nothing to show")
    return open_store(location)


@click.command("history")
@click.argument("run_id", required=False)
@click.option("--runbook", "runbook_name", metavar="NAME", help="Only runs of this runbook.")
@click.option("--state", metavar="STATE", help="Only runs that ended in this state.")
@click.option("--metric", metavar="NAME", help="A threshold's values over time, per host.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--report", metavar="PATH.html", help="Write RUN_ID's HTML report again.")
@click.option("--junit", metavar="PATH", help="Write RUN_ID's JUnit XML again.")
def history_command(
    run_id: str | None,
    runbook_name: str | None,
    state: str | None,
    metric: str | None,
    limit: int,
    fmt: str,
    report: str | None,
    junit: str | None,
) -> None:
    """Recent runs; one run's timeline (RUN_ID); or a metric's trend (--metric)."""
    from engine.history import view
    from engine.history.replay import display_state, resolve_run_id
    from engine.history.store import RunQuery

    if (report or junit) and not run_id:
        raise UsageError("--report and --junit need a RUN_ID")
    store = _store()
    try:
        if metric:
            rows = store.metric_rows(metric, runbook_name, limit)
            if fmt == "json":
                _json({"metric": metric, "values": rows})
            else:
                click.echo(view.metric_view(metric, rows))
            return
        if run_id:
            row = resolve_run_id(store, run_id)
            if report or junit:
                _rerender(store, row, report, junit)
                return
            events = store.events(row["id"])
            if fmt == "json":
                steps = [
                    s.result
                    | {"host": s.host, "started_at": s.started_at, "finished_at": s.finished_at}
                    for s in store.step_rows(row["id"])
                ]
                _json(
                    {
                        "run": {**row, "state": display_state(row)},
                        "steps": steps,
                        "events": [e.__dict__ for e in events],
                    }
                )
            else:
                click.echo(view.run_timeline(row, events))
            return
        rows = store.list_runs(RunQuery(runbook_name, state, limit))
        if fmt == "json":
            _json([{**r, "state": display_state(r)} for r in rows])
        else:
            click.echo(view.runs_table(rows))
    finally:
        store.close()


def _json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str, ensure_ascii=False))


def _rerender(store: Any, row: dict[str, Any], report: str | None, junit: str | None) -> None:
    from pathlib import Path

    from engine.history.replay import load_document

    doc = load_document(store, row)
    if report:
        from engine.reports.html import render_html

        Path(report).write_text(render_html(doc), encoding="utf-8")
        click.echo(f"wrote {report}")
    if junit:
        from engine.reports.junit import render_junit

        Path(junit).write_text(render_junit(doc), encoding="utf-8")
        click.echo(f"wrote {junit}")


@click.command("resume")
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Approve every confirm: and manual step.")
@click.option("--approve", multiple=True, metavar="STEP_ID", help="Approve this step (repeatable).")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Give a param again (needed for secret params, which history does not keep).",
)
@click.option(
    "-e",
    "--extra-vars",
    "extra",
    multiple=True,
    metavar="NAME=VALUE|@FILE",
    help="Override vars (on top of the run's own -e values).",
)
@click.option("-f", "--forks", type=click.IntRange(1, 1000), help="Default: the run's own.")
@max_connections_option
@output_options("resuming")
def resume_command(
    run_id: str,
    yes: bool,
    approve: tuple[str, ...],
    params: tuple[str, ...],
    extra: tuple[str, ...],
    forks: int | None,
    max_connections: int,
    fmt: str,
    junit: str | None,
    report: str | None,
    operator: str | None,
    secrets_file: str | None,
    verbose: int,
) -> None:
    """Run RUN_ID's runbook again on its hosts, skipping the steps that succeeded."""
    from engine.execution.runner import run_runbook
    from engine.history.prepare import prepare_resume
    from engine.history.session import recorded_run

    store = _store()
    try:
        prepared = prepare_resume(
            store,
            run_id,
            yes=yes,
            approve=approve,
            params=params,
            extra=extra,
            forks=forks,
            max_connections=max_connections,
            fmt=fmt,
            operator=operator,
            secrets_file=secrets_file,
            verbose=verbose,
        )
        click.echo(prepared.banner, err=True)
        with recorded_run(
            prepared.run, options=prepared.options, junit=junit, report=report, store=store
        ) as run:
            result = run_runbook(run)
    finally:
        store.close()
    sys.exit(result.exit_code)
