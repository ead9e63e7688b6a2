"""Rebuild a run from its history rows: results for resume, documents for reports."""

from __future__ import annotations

import socket
from typing import Any

from engine.errors import UsageError
from engine.reports.document import RunDocument, StepTiming
from engine.results import HostResult, Metric, RunResult, State, StepResult

from .lock import pid_alive
from .store import RUNNING, EventRow, HistoryStore

DIED = "died"  # shown for a run whose engine is gone without recording its end


def step_from_dict(d: dict[str, Any]) -> StepResult:
    """The inverse of recorder.step_payload (StepResult.to_dict plus host/sensitive)."""
    metrics = {
        name: Metric(
            name,
            m.get("value"),
            State(m.get("state", "ok")),
            m.get("warn"),
            m.get("critical"),
            m.get("unit"),
        )
        for name, m in (d.get("metrics") or {}).items()
    }
    return StepResult(
        step_id=d["id"],
        name=d.get("name", d["id"]),
        host=d.get("host", ""),
        state=State(d.get("state", "ok")),
        data=_data(d),
        duration_ms=int(d.get("duration_ms") or 0),
        attempts=int(d.get("attempts") or 0),
        dry_run=bool(d.get("dry_run")),
        metrics=metrics,
        error=d.get("error"),
        ignored=bool(d.get("ignored")),
        rescued=bool(d.get("rescued")),
        skip_reason=d.get("skip_reason"),
        rendered=d.get("rendered"),
        sensitive=bool(d.get("sensitive")),
        approved_by=d.get("approved_by"),
    )


def stored_result(d: dict[str, Any]) -> dict[str, Any]:
    """A stored step result as it was before recording (for `history --format json`)."""
    out = {k: v for k, v in d.items() if k != "derived"}
    out["data"] = _data(d)
    return out


def _data(d: dict[str, Any]) -> dict[str, Any]:
    """A stored result's data, with what recorder.step_payload left out rebuilt."""
    data = dict(d.get("data") or {})
    if "stdout_lines" in (d.get("derived") or ()) and isinstance(data.get("stdout"), str):
        data["stdout_lines"] = data["stdout"].splitlines()
    return data


def display_state(row: dict[str, Any]) -> str:
    """`running`, unless its engine is verifiably gone from this control node."""
    state = row.get("state") or "?"
    if state != RUNNING:
        return state
    if row.get("control_node") == socket.gethostname() and not pid_alive(int(row.get("pid") or 0)):
        return DIED
    return state


def resolve_run_id(store: HistoryStore, given: str) -> dict[str, Any]:
    """A full run id, or an unambiguous prefix of one (`20261122-2301`)."""
    row = store.get_run(given)
    if row is not None:
        return row
    matches = store.find_run_id(given)
    if len(matches) == 1:
        row = store.get_run(matches[0])
        assert row is not None
        return row
    if not matches:
        raise UsageError(f"no run {given!r} in the history at {store.location}")
    raise UsageError(f"run id {given!r} is ambiguous: {', '.join(matches)}, …")


def load_document(store: HistoryStore, row: dict[str, Any]) -> RunDocument:
    """The run of `row` as its reports need it, rebuilt from its rows."""
    run_id = row["id"]
    result = RunResult(
        run_id=run_id,
        runbook=row["runbook"],
        started_at=row["started_at"] or "",
        finished_at=row.get("finished_at") or "",
        dry_run=bool(row.get("dry_run")),
    )
    hosts = list(row.get("hosts") or [])
    for h in hosts:
        result.hosts[h] = HostResult(h)
    timings: dict[tuple[str, str], StepTiming] = {}
    for s in store.step_rows(run_id):
        res = step_from_dict({**s.result, "host": s.host})
        result.hosts.setdefault(s.host, HostResult(s.host)).steps.append(res)
        timings[(s.host, s.step_id)] = StepTiming(s.started_at, s.finished_at)
    logs, approvals = _replay_events(store.events(run_id), result, timings)
    return RunDocument(
        run_id=run_id,
        runbook=row["runbook"],
        result=result,
        path=row.get("path") or "",
        operator=row.get("operator") or "",
        params=row.get("params") or {},
        hosts=hosts,
        inventory=row.get("inventory") or "",
        dry_run=bool(row.get("dry_run")),
        started_at=row["started_at"] or "",
        finished_at=row.get("finished_at") or "",
        resumed_from=row.get("resumed_from"),
        state=display_state(row),
        exit_code=row.get("exit_code"),
        timings=timings,
        logs=logs,
        approvals=approvals,
    )


def _replay_events(
    events: list[EventRow], result: RunResult, timings: dict[tuple[str, str], StepTiming]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What only the events hold: step depths, logs, approvals, and the run's end
    (written into `result` and `timings`); returns (logs, approvals)."""
    logs: list[dict[str, Any]] = []
    approvals: list[dict[str, Any]] = []
    for e in events:
        p = e.payload
        where = {"at": e.at, "host": e.host, "step": e.step_id}
        if e.kind == "step_finished" and (e.host, e.step_id) in timings:
            timings[(e.host or "", e.step_id or "")].depth = int(p.get("depth") or 0)
        elif e.kind == "log":
            logs.append({**where, "level": p.get("level"), "message": p.get("message")})
        elif e.kind == "approval":
            approvals.append(
                {
                    **where,
                    "approved": p.get("approved"),
                    "by": p.get("by"),
                    "prompt": p.get("prompt"),
                }
            )
        elif e.kind == "host_finished" and p.get("worker") and e.host:
            result.hosts.setdefault(e.host, HostResult(e.host)).worker = p["worker"]
        elif e.kind == "run_finished":
            result.aborted = p.get("aborted")
            result.duration_ms = int(p.get("duration_ms") or 0)
            for name, h in (p.get("hosts") or {}).items():
                hr = result.hosts.setdefault(name, HostResult(name))
                hr.unreachable = h.get("unreachable")
                hr.aborted = h.get("aborted")
    return logs, approvals
