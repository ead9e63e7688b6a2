"""`runbook history`: the recent runs, one run's timeline, a metric's trend,
or a run's reports drawn again from the store (`runbook resume` is in run.py)."""

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
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "events"]),
    default="text",
    help="json: with RUN_ID, the document `runbook run --format json` printed; "
    "events: RUN_ID's recorded events and step rows.",
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
    limit: int,
    fmt: str,
    report: str | None,
    junit: str | None,
) -> None:
    """Recent runs; one run's timeline (RUN_ID); or a metric's trend (--metric)."""
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
    store = open_history()
    try:
        if metric and report:
            _trend_report(store, metric, runbook_name, limit, report)
        elif metric:
            _show_metric(store, metric, runbook_name, limit, fmt)
        elif run_id and (report or junit):
            _rerender(store, resolve_run_id(store, run_id), report, junit)
        elif run_id:
            _show_run(store, resolve_run_id(store, run_id), fmt)
        else:
            _show_runs(store, RunQuery(runbook_name, state, limit), fmt)
    finally:
        store.close()


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
    """The trend as a page; the bounds drawn are the newest run's (they are
    rendered per run, so a changed threshold shows from its first run on)."""
    from pathlib import Path

    from engine.reports.trend import render_trend

    rows = store.metric_rows(metric, runbook, limit)
    bounds: dict[str, str | None] = {"warn": None, "critical": None}
    if rows:
        newest = rows[-1]
        for step in store.step_rows(newest["run_id"]):
            if step.host == newest["host"] and step.step_id == newest["step_id"]:
                found = (step.result.get("metrics") or {}).get(metric) or {}
                bounds = {k: found.get(k) for k in ("warn", "critical")}
    Path(path).write_text(render_trend(metric, rows, bounds), encoding="utf-8")
    click.echo(f"wrote {path} ({len(rows)} values of {metric})")


def _show_run(store: HistoryStore, row: dict[str, Any], fmt: str) -> None:
    """text: the timeline; json: the run document (the contract, as the run
    printed it); events: the rows as recorded, for what the document leaves out
    (every event in order, a step started but never finished)."""
    import sys

    from engine.history import view
    from engine.history.replay import display_state, stored_result
    from engine.reports.jsonreport import write_document

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
