"""`runbook history`: the recent runs, one run's timeline, a metric's trend,
or a run's reports drawn again from the store (`runbook resume` is in run.py);
a run's or an incident's timeline as Markdown for the postmortem."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from engine.errors import UsageError

from . import helptext

if TYPE_CHECKING:
    from engine.history.store import HistoryStore, RunQuery


@click.command("history", epilog=helptext.HISTORY)
@click.argument("run_id", required=False)
@click.option("--runbook", "runbook_name", metavar="NAME", help="Only runs of this runbook.")
@click.option("--state", metavar="STATE", help="Only runs that ended in this state.")
@click.option("--metric", metavar="NAME", help="A threshold's values over time, per host.")
@click.option(
    "--incident", metavar="ID", help="The runs tagged `runbook run --incident ID`, all of them."
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "events", "markdown"]),
    default="text",
    help="json: with RUN_ID, the document `runbook run --format json` printed; "
    "events: RUN_ID's recorded events and step rows; "
    "markdown: RUN_ID's (or --incident's) timeline for a postmortem.",
)
@click.option(
    "--tail",
    default=10,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="--format markdown: the last N lines of each step's stdout and stderr (0: none).",
)
@click.option(
    "--report",
    metavar="PATH.html",
    help="Write RUN_ID's HTML report again; with --metric, the metric's trend chart.",
)
@click.option("--junit", metavar="PATH", help="Write RUN_ID's JUnit XML again.")
def history_command(
    run_id: str | None,
    runbook_name: str | None,
    state: str | None,
    metric: str | None,
    incident: str | None,
    limit: int,
    fmt: str,
    tail: int,
    report: str | None,
    junit: str | None,
) -> None:
    """Recent runs; one run's timeline (RUN_ID); an incident's runs (--incident);
    or a metric's trend (--metric)."""
    from engine.history.location import open_history
    from engine.history.replay import resolve_run_id
    from engine.history.store import RunQuery

    if junit and not run_id:
        raise UsageError("--junit needs a RUN_ID")
    if report and not (run_id or metric):
        raise UsageError("--report needs a RUN_ID, or --metric NAME for its trend")
    if run_id and metric:
        raise UsageError("--metric shows a trend over runs: give it without a RUN_ID")
    if fmt == "events" and not (run_id and not (report or junit)):
        raise UsageError("--format events shows one run's events: give a RUN_ID")
    _check_incident(run_id, incident, metric, fmt, bool(report or junit))
    store = open_history()
    try:
        if incident:
            query = RunQuery(runbook_name, state, _incident_limit(limit), incident)
            _show_incident(store, query, fmt, tail)
        elif metric and report:
            _trend_report(store, metric, runbook_name, limit, report)
        elif metric:
            _show_metric(store, metric, runbook_name, limit, fmt)
        elif run_id and (report or junit):
            _rerender(store, resolve_run_id(store, run_id), report, junit)
        elif run_id:
            _show_run(store, resolve_run_id(store, run_id), fmt, tail)
        else:
            _show_runs(store, RunQuery(runbook_name, state, limit), fmt)
    finally:
        store.close()


def _check_incident(
    run_id: str | None, incident: str | None, metric: str | None, fmt: str, reports: bool
) -> None:
    """Options that cannot go together: refused before the history is opened."""
    if incident and (run_id or metric or reports):
        raise UsageError(
            "--incident lists an incident's runs: give it without RUN_ID, --metric, "
            "--report or --junit (`runbook history RUN_ID` shows one of them)"
        )
    if fmt == "markdown" and not (incident or (run_id and not reports)):
        raise UsageError(
            "--format markdown writes a timeline: give a RUN_ID or --incident ID "
            "(without --metric, --report or --junit)"
        )


def _incident_limit(limit: int) -> int:
    """An incident's runs are all shown unless --limit is given: a postmortem
    missing the 21st run would look complete and not be."""
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("limit") != click.core.ParameterSource.DEFAULT
    return limit if given else 100_000


def _show_incident(store: HistoryStore, query: RunQuery, fmt: str, tail: int) -> None:
    if fmt != "markdown":
        _show_runs(store, query, fmt)
        return
    from engine.reports.timeline import gather, incident_markdown

    rows = store.list_runs(query)
    if not rows:
        raise UsageError(
            f"no run of incident {query.incident!r} in the history at {store.location} "
            "(a run joins one with `runbook run --incident ID`)"
        )
    runs = [gather(store, r) for r in rows]
    click.echo(incident_markdown(query.incident or "", runs, tail), nl=False)


def _show_metric(
    store: HistoryStore, metric: str, runbook: str | None, limit: int, fmt: str
) -> None:
    from engine.history import view

    rows = store.metric_rows(metric, runbook, limit)
    if fmt == "json":
        _json({"metric": metric, "values": rows})
    else:
        click.echo(view.metric_view(metric, rows))


def _trend_report(
    store: HistoryStore, metric: str, runbook: str | None, limit: int, path: str
) -> None:
    """The trend as a page (engine/reports/trend.py)."""
    from pathlib import Path

    from engine.reports.trend import trend_page

    page, count = trend_page(store, metric, runbook, limit)
    Path(path).write_text(page, encoding="utf-8")
    click.echo(f"wrote {path} ({count} values of {metric})")


def _show_run(store: HistoryStore, row: dict[str, Any], fmt: str, tail: int) -> None:
    """text: the timeline; json: the run document (the contract, as the run
    printed it); events: the rows as recorded, for what the document leaves out
    (every event in order, a step started but never finished); markdown: the
    timeline for a postmortem."""
    import sys

    from engine.history import view
    from engine.history.replay import display_state, stored_result
    from engine.reports.jsonreport import write_document

    if fmt == "markdown":
        from engine.reports.timeline import gather, run_markdown

        click.echo(run_markdown(gather(store, row), tail), nl=False)
        return
    if fmt == "json":
        write_document(view.run_document(store, row), sys.stdout)
        return
    events = store.events(row["id"])
    if fmt == "text":
        click.echo(view.run_timeline(row, events))
        return
    steps = [
        stored_result(s.result)
        | {"host": s.host, "started_at": s.started_at, "finished_at": s.finished_at}
        for s in store.step_rows(row["id"])
    ]
    run = {**row, "state": display_state(row)}
    _json({"run": run, "steps": steps, "events": [e.__dict__ for e in events]})


def _show_runs(store: HistoryStore, query: RunQuery, fmt: str) -> None:
    from engine.history import view
    from engine.history.replay import display_state

    rows = store.list_runs(query)
    if fmt == "json":
        _json([{**r, "state": display_state(r)} for r in rows])
    else:
        click.echo(view.runs_table(rows))


def _json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str, ensure_ascii=False))


def _rerender(
    store: HistoryStore, row: dict[str, Any], report: str | None, junit: str | None
) -> None:
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
