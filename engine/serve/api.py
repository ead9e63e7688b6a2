"""The JSON API under /api: runbooks, runs, their events, gates, manual steps, audit.

Every route names the right it needs (auth.need); every action is written to
the audit table with its user. Reads come from the history, so runs started
elsewhere (`runbook run` on another control node sharing it) show up too.
Engine errors become HTTP statuses in app.py, one mapping for every router.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from engine.users import User

from . import models as m
from .auth import audit, need
from .runs import NotFound, RunManager

router = APIRouter(prefix="/api")


def manager(request: Request) -> RunManager:
    found: RunManager = request.app.state.manager
    return found


@router.get("/healthz", response_model=m.Health, tags=["server"])
def healthz(request: Request) -> m.Health:
    """Up, and where its history is (no token needed: for load balancers)."""
    runs = manager(request)
    live = sum(1 for h in list(runs.handles.values()) if h.alive)
    return m.Health(status="ok", history=runs.store.location, runs_running=live)


# ------------------------------------------------------------------ runbooks


@router.get("/runbooks", response_model=list[m.RunbookSummary], tags=["runbooks"])
def list_runbooks(request: Request, user: User = Depends(need("read"))) -> list[m.RunbookSummary]:
    from engine.format.catalog import catalogue

    return [
        m.RunbookSummary(
            name=e.name, kind=e.kind, description=e.description, schedule=e.schedule,
            owner=e.owner, tags=e.tags, path=str(e.path),
        )
        for e in catalogue(manager(request).config.runbooks)
    ]  # fmt: skip


@router.get("/runbooks/{name}", response_model=m.RunbookDetail, tags=["runbooks"])
def show_runbook(
    name: str, request: Request, user: User = Depends(need("read"))
) -> m.RunbookDetail:
    from engine.format.loader import load_runbook

    from .config import runbook_index

    path = runbook_index(manager(request).config.runbooks).get(name)
    if path is None:
        raise NotFound(f"no runbook {name!r}")
    rb = load_runbook(path)
    h = rb.header
    return m.RunbookDetail(
        name=h.runbook, kind=h.kind, description=h.description, schedule=h.schedule,
        owner=h.owner, tags=list(h.tags), path=str(path), hosts=h.hosts, webhook=h.webhook,
        params={
            n: m.ParamInfo(type=p.type, required=p.required, description=p.description,
                           choices=p.choices, secret=p.secret,
                           default=None if p.secret else p.default)
            for n, p in rb.params.items()
        },
        steps=[m.StepInfo(id=s.id, name=s.name, type=s.type) for s in rb.all_steps()],
    )  # fmt: skip


# ---------------------------------------------------------------------- runs


@router.post("/runs", status_code=202, response_model=m.RunStarted, tags=["runs"])
def start_run(
    body: m.StartRequest, request: Request, user: User = Depends(need("start"))
) -> m.RunStarted:
    """Start a run; 202 once it began. Gates and manual steps then wait for votes."""
    handle = manager(request).start(
        body.runbook, body.params, user=user.name, limit=body.limit,
        incident=body.incident, dry_run=body.dry_run,
    )  # fmt: skip
    audit(request, user.name, "start", handle.run_id, runbook=handle.runbook,
          params=sorted(body.params), limit=body.limit, dry_run=body.dry_run)  # fmt: skip
    return started(handle.run_id, handle.runbook, handle.operator)


def started(run_id: str, runbook: str, operator: str) -> m.RunStarted:
    url = f"/api/runs/{run_id}"
    return m.RunStarted(
        run_id=run_id, runbook=runbook, operator=operator, url=url, events_url=f"{url}/events"
    )


@router.get("/runs", response_model=list[m.RunSummary], tags=["runs"])
def list_runs(
    request: Request,
    runbook: str | None = None,
    state: str | None = None,
    incident: str | None = None,
    limit: int = Query(20, ge=1, le=1000),
    user: User = Depends(need("read")),
) -> list[dict[str, Any]]:
    from engine.history.replay import display_state
    from engine.history.store import RunQuery

    rows = manager(request).store.list_runs(RunQuery(runbook, state, limit, incident))
    return [{**r, "state": display_state(r)} for r in rows]


@router.get("/runs/{run_id}", response_model=dict[str, Any], tags=["runs"])
def get_run(run_id: str, request: Request, user: User = Depends(need("read"))) -> dict[str, Any]:
    """The run document: what `runbook history RUN_ID --format json` prints
    (its schema: `runbook schema --output run`)."""
    import json

    from engine.history.view import run_document

    runs = manager(request)
    doc = run_document(runs.store, runs.run_row(run_id))
    loaded: dict[str, Any] = json.loads(json.dumps(doc, default=str))
    return loaded


@router.get(
    "/runs/{run_id}/events",
    tags=["runs"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON lines as SSE"}},
)
def run_events(run_id: str, request: Request, user: User = Depends(need("read"))) -> Any:
    """Server-sent events: `data: <the --format jsonl line>` for each event so
    far, then live ones, until run_finished. A run this server did not start
    (or forgot) is replayed from its history rows, then the stream ends."""
    runs = manager(request)
    handle = runs.handle(run_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if handle is not None:
        stream = handle.events.stream(request.is_disconnected)
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
    runs.run_row(run_id)
    lines = [_stored_line(e) for e in runs.store.events(run_id)]
    return StreamingResponse(iter(lines), media_type="text/event-stream", headers=headers)


def _stored_line(event: Any) -> str:
    import json

    from engine.reports.run_schema import SCHEMA_VERSION

    line = {
        "schema_version": SCHEMA_VERSION, "event": event.kind, "run_id": event.run_id,
        "at": event.at, "host": event.host, "step_id": event.step_id, **event.payload,
    }  # fmt: skip
    return f"data: {json.dumps(line, default=str, ensure_ascii=False)}\n\n"


@router.post("/runs/{run_id}/cancel", response_model=m.CancelResult, tags=["runs"])
def cancel_run(
    run_id: str, request: Request, user: User = Depends(need("cancel"))
) -> m.CancelResult:
    """As Ctrl-C twice: nothing new starts, running steps are killed (exit 4)."""
    runs = manager(request)
    row = runs.run_row(run_id)
    handle = runs.handle(run_id)
    if handle is None and row.get("state") == "running":
        raise HTTPException(
            409, f"run {run_id} was not started by this server: stop it where it runs"
        )
    cancelled = handle.cancel(user.name) if handle is not None else False
    audit(request, user.name, "cancel", run_id, cancelled=cancelled)
    return m.CancelResult(run_id=run_id, cancelled=cancelled, state=row.get("state") or "?")


@router.post("/runs/{run_id}/resume", status_code=202, response_model=m.RunStarted, tags=["runs"])
def resume_run(
    run_id: str,
    request: Request,
    body: m.ResumeRequest | None = None,
    user: User = Depends(need("start")),
) -> m.RunStarted:
    """Run it again, skipping the steps that finished (as `runbook resume`)."""
    params = body.params if body is not None else {}
    handle = manager(request).resume(run_id, params, user=user.name)
    audit(request, user.name, "resume", handle.run_id, resumed_from=run_id)
    return started(handle.run_id, handle.runbook, handle.operator)


# --------------------------------------------------------------------- gates


@router.get("/runs/{run_id}/gates", response_model=list[m.GateInfo], tags=["gates"])
def list_gates(
    run_id: str,
    request: Request,
    state: str | None = Query(None, description="waiting, approved, declined, ..."),
    user: User = Depends(need("read")),
) -> list[m.GateInfo]:
    runs = manager(request)
    runs.run_row(run_id)
    return [gate_info(runs, g) for g in runs.store.gates(run_id, state)]


def gate_info(runs: RunManager, gate: Any) -> m.GateInfo:
    from engine.history.gates import decide

    votes = runs.store.votes(gate.run_id, gate.step_id)
    decision, approvals = decide(gate, votes, runs.config.roles)
    mine = [v for v in votes if v.host in (gate.host, "*")]
    return m.GateInfo(
        **gate.__dict__,
        decision=decision if gate.state == "waiting" else gate.state,
        approvals=approvals,
        votes=[m.VoteInfo(user=v.user, approved=v.approved, host=v.host, via=v.via,
                          comment=v.comment, at=v.at) for v in mine],
    )  # fmt: skip


@router.post("/runs/{run_id}/gates/{step_id}", response_model=m.VoteResult, tags=["gates"])
def vote(
    run_id: str,
    step_id: str,
    body: m.VoteRequest,
    request: Request,
    user: User = Depends(need("approve")),
) -> m.VoteResult:
    """Approve or decline a waiting `confirm:` gate. One decline closes it."""
    return answer_gate(
        request, run_id, step_id, user, body.approve, body.host, body.comment, "confirm"
    )


@router.post("/runs/{run_id}/manual/{step_id}", response_model=m.VoteResult, tags=["gates"])
def acknowledge(
    run_id: str,
    step_id: str,
    body: m.ManualRequest,
    request: Request,
    user: User = Depends(need("acknowledge")),
) -> m.VoteResult:
    """Say a manual step's work is done (or not: the run aborts there)."""
    return answer_gate(request, run_id, step_id, user, body.done, body.host, body.comment, "manual")


def answer_gate(
    request: Request, run_id: str, step_id: str, user: User,
    approved: bool, host: str, comment: str, kind: str, via: str = "api",
) -> m.VoteResult:  # fmt: skip
    """The vote, through cast_vote's checks: 404 no such run, 409 nothing of
    that kind waits there, 403 not yours to answer (serve/errors.py).
    `via`: where it came from (api, web), kept with the vote."""
    from engine.history.gates import cast_vote

    runs = manager(request)
    runs.run_row(run_id)
    gates = cast_vote(
        runs.store, run_id, step_id, user.name, approved=approved, host=host, via=via,
        comment=comment, roles=runs.config.roles, kind=kind,
    )  # fmt: skip
    fresh = {(g.host, g.step_id): g for g in runs.store.gates(run_id)}
    return m.VoteResult(
        run_id=run_id,
        step_id=step_id,
        gates=[gate_info(runs, fresh.get((g.host, g.step_id), g)) for g in gates],
    )


# --------------------------------------------------------------------- audit


@router.get("/audit", response_model=list[m.AuditRow], tags=["audit"])
def audit_rows(
    request: Request,
    run_id: str | None = None,
    limit: int = Query(200, ge=1, le=5000),
    user: User = Depends(need("read")),
) -> list[dict[str, Any]]:
    """Who did what, newest first: starts, cancels, votes, webhook starts."""
    return manager(request).store.audit(run_id, limit)
