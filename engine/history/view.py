"""`runbook history` as text: the runs table, one run's timeline, a metric's trend;
and one run as the `--format json` document its run printed.

Plain aligned text, not a redrawn screen: it is pasted into tickets and chats.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine.reports.jsonreport import run_document as document_of
from engine.results import shown_number

from .replay import display_state, load_document
from .store import EventRow, HistoryStore

SPARKS = "▁▂▃▄▅▆▇█"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    return "\n".join(lines)


def short_time(at: str | None) -> str:
    """'2026-11-22T23:01:02.123+00:00' → '2026-11-22 23:01:02'."""
    if not at:
        return ""
    return at.replace("T", " ")[:19]


def duration(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    try:
        secs = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    except ValueError:
        return ""
    if secs < 60:
        return f"{secs:.1f}s"
    return f"{int(secs // 60)}m{int(secs % 60):02d}s"


def runs_table(rows: list[dict[str, Any]]) -> str:
    """The runs, newest first; an incident column only when a run has one."""
    if not rows:
        return "no runs recorded"
    incidents = any(r.get("incident") for r in rows)
    headers = ("run", "runbook", "state", "exit", "started", "took", "hosts", "operator")
    body = []
    for r in rows:
        cells = [
            r["id"],
            r["runbook"],
            display_state(r) + (" (dry run)" if r.get("dry_run") else ""),
            r.get("exit_code"),
            short_time(r.get("started_at")),
            duration(r.get("started_at"), r.get("finished_at")),
            _hosts(r.get("hosts") or []),
            r.get("operator"),
        ]
        if incidents:
            cells.append(r.get("incident") or "")
        body.append([*cells, r.get("resumed_from") or ""])
    extra = ("incident",) if incidents else ()
    return table((*headers, *extra, "resumed from"), body)


def _hosts(hosts: list[str]) -> str:
    return ", ".join(hosts[:3]) + (f" +{len(hosts) - 3}" if len(hosts) > 3 else "")


def run_document(store: HistoryStore, row: dict[str, Any]) -> dict[str, Any]:
    """The run of `row` as `runbook run --format json` printed it (same keys, same
    schema), rebuilt from its rows. Hosts the run never started are told only by
    their host_finished events, which the file reports' rebuild leaves out."""
    doc = load_document(store, row)
    for e in store.events(row["id"]):
        host = doc.result.hosts.get(e.host or "")
        if e.kind == "host_finished" and e.payload.get("not_started") and host is not None:
            host.not_started = True
    return document_of(doc)


def run_timeline(row: dict[str, Any], events: list[EventRow]) -> str:
    head = [
        f"run       {row['id']}",
        f"runbook   {row['runbook']}  ({row.get('path') or '?'})",
        f"state     {display_state(row)}"
        + (f"  exit {row['exit_code']}" if row.get("exit_code") is not None else ""),
        f"operator  {row.get('operator')}",
        f"started   {short_time(row.get('started_at'))}   finished "
        f"{short_time(row.get('finished_at')) or '-'}",
        f"hosts     {', '.join(row.get('hosts') or [])}  (inventory {row.get('inventory')})",
    ]
    if row.get("params"):
        head.append("params    " + ", ".join(f"{k}={v}" for k, v in row["params"].items()))
    if row.get("incident"):
        head.append(f"incident  {row['incident']}")
    if row.get("resumed_from"):
        head.append(f"resumes   {row['resumed_from']}")
    if row.get("dry_run"):
        head.append("mode      dry run")
    out = ["\n".join(head)]
    run_level = [e for e in events if not e.host]
    hosts: dict[str, list[EventRow]] = {}
    for e in events:
        if e.host:
            hosts.setdefault(e.host, []).append(e)
    for host, evs in hosts.items():
        out.append(f"\n── {host} " + "─" * max(0, 60 - len(host)))
        out.extend(_event_line(e) for e in evs)
    tail = [e for e in run_level if e.kind != "run_started"]
    if tail:
        out.append("\n── run " + "─" * 58)
        out.extend(_event_line(e) for e in tail)
    return "\n".join(out)


def _event_line(e: EventRow) -> str:
    p = e.payload
    at = (e.at or "")[11:23]
    indent = "  " * int(p.get("depth") or 0)
    if e.kind == "step_started":
        text = f"{indent}▶ {e.step_id}  {p.get('name', '')}"
    elif e.kind == "step_finished":
        text = f"{indent}■ {e.step_id}  {p.get('state')}  {p.get('duration_ms', 0)}ms"
        for name, m in (p.get("metrics") or {}).items():
            text += f"  {name}={m.get('value')} ({m.get('state')})"
        if p.get("approved_by"):
            text += f"  approved by {p['approved_by']}"
        if p.get("error"):
            text += f"\n{' ' * 14}{indent}{p['error']}"
        elif p.get("skip_reason"):
            text += f"  ({p['skip_reason']})"
    elif e.kind == "approval":
        verdict = "approved" if p.get("approved") else "DECLINED"
        text = f"✋ {e.step_id}  {verdict} by {p.get('by')}: {p.get('prompt')}"
    elif e.kind == "log":
        text = f"  {p.get('level')}: {p.get('message')}"
    elif e.kind == "host_finished":
        text = f"host finished: {p.get('state')}" + (f" — {p['reason']}" if p.get("reason") else "")
    elif e.kind == "run_aborted":
        text = f"aborted: {p.get('reason')}"
    elif e.kind == "run_finished":
        text = f"finished: {p.get('state')} (exit {p.get('exit_code')})"
    else:
        text = f"{e.kind} {p}"
    return f"{at:<12}  {text}"


def sparkline(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    lo, hi = min(known), max(known)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif hi == lo:
            out.append(SPARKS[len(SPARKS) // 2])
        else:
            out.append(SPARKS[round((v - lo) / (hi - lo) * (len(SPARKS) - 1))])
    return "".join(out)


def metric_view(name: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"no values recorded for metric {name!r}"
    unit = next((r["unit"] for r in rows if r.get("unit")), "")
    body = table(
        ("at", "run", "runbook", "host", "step", "value", "state"),
        [
            (
                short_time(r["at"]),
                r["run_id"],
                r["runbook"],
                r["host"],
                r["step_id"],
                "n/a" if r["value"] is None else f"{r['value']:.6g}{' ' + unit if unit else ''}",
                r["state"],
            )
            for r in rows
        ],
    )
    by_host: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_host.setdefault(r["host"], []).append(r)
    width = max(len(h) for h in by_host)
    lines = [f"\n{name}{' (' + unit + ')' if unit else ''}, oldest → newest:"]
    for host, hrows in by_host.items():
        values = [r["value"] for r in hrows]
        known = [v for v in values if v is not None]
        rng = (
            f"  min {shown_number(min(known))}  max {shown_number(max(known))}"
            f"  last {shown_number(known[-1])}"
            if known
            else ""
        )
        lines.append(f"  {host:<{width}}  {sparkline(values)}{rng}  [{hrows[-1]['state']}]")
    return body + "\n" + "\n".join(lines)
