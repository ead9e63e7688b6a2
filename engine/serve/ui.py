"""The web page of `runbook serve` under /ui: runs, runbooks, a live run, trends.

A browser cannot send a bearer header from a link, so the page logs in once
with the same token and keeps it in an HttpOnly, SameSite=Strict cookie;
every route checks it as the API checks the header (engine.users), and the
buttons shown are the ones the user's rights allow (the server checks again
when pressed). A cookie rides along on any request to the site, so every
form post must come from a page of this site (Origin or Referer host) and
is refused otherwise. Actions take the API's own code paths (RunManager,
api.answer_gate), recorded with `via: web`. Markup lives in pages.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from engine.errors import EngineError
from engine.users import RIGHTS, User, user_for_token

from . import pages
from .auth import audit
from .errors import status_of
from .runs import NotFound, RunHandle, RunManager

router = APIRouter(prefix="/ui", include_in_schema=False)
COOKIE = "runbook_token"
GATE_POLL = 0.5  # seconds between looks at the gates table while a page follows a run
KEEPALIVE = 15.0


def _manager(request: Request) -> RunManager:
    found: RunManager = request.app.state.manager
    return found


def ui_user(request: Request) -> User:
    """The user whose token the cookie holds; otherwise off to the login form."""
    token = request.cookies.get(COOKIE)
    user = user_for_token(request.app.state.config.users, token) if token else None
    if user is None:
        raise HTTPException(303, "log in first", {"Location": "/ui/login"})
    if not user.may("read"):  # a token of a role such as @dba alone: as the API's 403
        raise HTTPException(403, f"{user.name} may not read: give them a role with it")
    return user


def _same_origin(request: Request) -> bool:
    """The post came from a page of this site: its Origin (or Referer) names our host."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == request.headers.get("host", "")


async def form_of(request: Request) -> dict[str, str]:
    """A form post's fields (urlencoded; the last value of each), same-origin only."""
    if not _same_origin(request):
        raise HTTPException(
            403, "cross-site form post refused: post from this server's own pages (Origin/Referer)"
        )
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})


def _refused(user: User, right: str, back: str) -> HTMLResponse:
    granted = ", ".join(sorted(r for r, rights in RIGHTS.items() if right in rights))
    text = f"{user.name} may not {right}: a role with it: {granted}"
    return _page(pages.message_page("Not allowed", text, user.name, back), 403)


def _failed(exc: Exception, user: User, back: str) -> HTMLResponse:
    text = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
    return _page(pages.message_page("Refused", text, user.name, back), status_of(exc))


# ------------------------------------------------------------------- login


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return _page(pages.login_page())


@router.post("/login")
def login(request: Request, form: dict[str, str] = Depends(form_of)) -> Response:
    user = user_for_token(request.app.state.config.users, form.get("token", ""))
    if user is None:
        audit(request, "", "login failed", None, path=request.url.path)
        return _page(pages.login_page("Unknown token."), 401)
    audit(request, user.name, "login", None, via="web")
    reply = RedirectResponse("/ui/", 303)
    reply.set_cookie(
        COOKIE, form["token"], path="/ui", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return reply


@router.post("/logout")
def logout(form: dict[str, str] = Depends(form_of)) -> Response:
    reply = RedirectResponse("/ui/login", 303)
    reply.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return reply


# -------------------------------------------------------- runs and runbooks


@router.get("/", response_class=HTMLResponse)
def runs(request: Request, user: User = Depends(ui_user)) -> HTMLResponse:
    from engine.history.replay import display_state
    from engine.history.store import RunQuery

    rows = _manager(request).store.list_runs(RunQuery(limit=50))
    return _page(pages.runs_page([{**r, "state": display_state(r)} for r in rows], user.name))


@router.get("/runbooks", response_class=HTMLResponse)
def runbooks(request: Request, user: User = Depends(ui_user)) -> HTMLResponse:
    from engine.format.catalog import catalogue

    return _page(pages.runbooks_page(catalogue(_manager(request).config.runbooks), user.name))


def _load(request: Request, name: str) -> Any:
    from engine.format.loader import load_runbook

    from .config import runbook_index

    path = runbook_index(_manager(request).config.runbooks).get(name)
    if path is None:
        raise NotFound(f"no runbook {name!r}")
    return load_runbook(path)


def step_rows(rb: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str, int]]:
    """(recorded step id, name, depth) of every step in runbook order: nested
    steps under their block, an included runbook's as `<include id>.<id>`."""
    out: list[tuple[str, str, int]] = []

    def walk(step: Any, level: int) -> None:
        out.append((prefix + step.id, step.name, level))
        for group in step.children.values():
            for child in group:
                walk(child, level + 1)
        if step.included is not None:
            out.extend(step_rows(step.included, f"{prefix}{step.id}.", level + 1))

    for step in (*rb.steps, *rb.rescue, *rb.always):
        walk(step, depth)
    return out


def _runbook_html(request: Request, rb: Any, user: User, error: str = "") -> str:
    config = _manager(request).config
    allowed = config.secret_params_from_request.get(rb.name, [])
    fields = [
        pages.ParamField(
            n, p.type, None if p.secret else p.default, p.required, p.description, p.choices,
            p.secret, allowed=not p.secret or n in allowed,
        )
        for n, p in rb.params.items()
    ]  # fmt: skip
    return pages.runbook_page(rb, fields, step_rows(rb), user.name, user.may("start"), error)


@router.get("/runbooks/{name}", response_class=HTMLResponse)
def runbook(name: str, request: Request, user: User = Depends(ui_user)) -> HTMLResponse:
    try:
        rb = _load(request, name)
    except EngineError as exc:
        return _failed(exc, user, "/ui/runbooks")
    return _page(_runbook_html(request, rb, user))


@router.post("/runbooks/{name}/start")
def start(
    name: str, request: Request, user: User = Depends(ui_user),
    form: dict[str, str] = Depends(form_of),
) -> Response:  # fmt: skip
    """Start as POST /api/runs does (the same RunManager.start and audit row)."""
    if not user.may("start"):
        return _refused(user, "start", f"/ui/runbooks/{name}")
    params = {k[2:]: v for k, v in form.items() if k.startswith("p.") and v != ""}
    limit, incident = form.get("limit") or None, form.get("incident") or None
    try:
        handle = _manager(request).start(
            name, params, user=user.name, limit=limit, incident=incident
        )
    except EngineError as exc:
        try:
            html = _runbook_html(request, _load(request, name), user, str(exc))
        except EngineError:
            return _failed(exc, user, "/ui/runbooks")
        return _page(html, status_of(exc))
    audit(request, user.name, "start", handle.run_id, runbook=handle.runbook,
          params=sorted(params), limit=limit, dry_run=False, via="web")  # fmt: skip
    return RedirectResponse(f"/ui/runs/{handle.run_id}", 303)


# ------------------------------------------------------------------ a run


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(run_id: str, request: Request, user: User = Depends(ui_user)) -> HTMLResponse:
    runs = _manager(request)
    try:
        row = runs.run_row(run_id)
    except NotFound as exc:
        return _failed(exc, user, "/ui/")
    handle = runs.handle(run_id)
    # Counted before the history is read: what comes after is news to this page.
    seen = len(handle.events.since(0)[0]) if handle is not None else 0
    view = _run_view(request, row, user)
    view.live = handle is not None and not handle.events.since(0)[1]
    view.seen = seen
    view.may_cancel = user.may("cancel") and handle is not None and handle.alive
    return _page(pages.run_page(view, user.name))


def _run_view(request: Request, row: dict[str, Any], user: User) -> pages.RunView:
    from engine.history.replay import load_document
    from engine.reports.html_grid import grid_rows, step_reason

    runs = _manager(request)
    doc = load_document(runs.store, row)
    hosts = list(dict.fromkeys([*doc.hosts, *doc.result.hosts]))
    try:
        steps = step_rows(_load(request, row["runbook"]))
    except EngineError:  # renamed or gone since: the steps the run recorded
        steps = []
    known = {sid for sid, _, _ in steps}
    steps += [(r.step_id, r.name, r.depth) for r in grid_rows(doc, hosts) if r.step_id not in known]
    view = pages.RunView(row, doc.state, hosts, steps, logs=doc.logs[-200:])
    for e in runs.store.events(row["id"]):
        if e.kind == "step_started" and e.host and e.step_id:
            view.cells[(e.host, e.step_id)] = "running"
    for host, hr in doc.result.hosts.items():
        for s in hr.steps:
            view.cells[(host, s.step_id)] = s.state.value
            why = step_reason(s) if s.state.value != "ok" else ""
            view.titles[(host, s.step_id)] = f"{host} · {s.step_id}: {s.state.value} {why}"
    waiting = runs.store.gates(row["id"], "waiting")
    view.gate_keys = ",".join(sorted(f"{g.host}/{g.step_id}" for g in waiting))
    by_step: dict[str, list[Any]] = {}
    for gate in waiting:
        by_step.setdefault(gate.step_id, []).append(gate)
    view.gates = [_gate_view(runs, gates, user) for gates in by_step.values()]
    return view


def _gate_view(runs: RunManager, gates: list[Any], user: User) -> pages.GateView:
    """A step's waiting gates (one per host) as one box: its buttons answer all."""
    from engine.history.gates import may_vote

    from .api import gate_info

    gate = gates[0]
    info = gate_info(runs, gate)
    right = "approve" if gate.kind == "confirm" else "acknowledge"
    why_not = may_vote(gate, user.name, runs.config.roles)
    if not user.may(right):
        why_not = f"You ({user.name}) may not {right}: waiting for someone who may."
    votes = [
        f"{v.user} {'approved' if v.approved else 'declined'} via {v.via}"
        + (f": {v.comment}" if v.comment else "")
        for v in info.votes
    ]
    return pages.GateView(
        [g.host for g in gates], gate.step_id, gate.kind, gate.prompt, list(gate.approvers),
        gate.min_approvals, list(info.approvals), votes, why_not is None, why_not or "",
    )  # fmt: skip


@router.get("/runs/{run_id}/events")
def events(run_id: str, request: Request, user: User = Depends(ui_user)) -> Response:
    """The API's SSE frames, numbered (`id:`) so a reconnect resumes where it
    was; plus `event: gates` with the waiting gates whenever they change, and
    `event: end`. A run this server does not hold has nothing live: 204 (an
    EventSource then stops asking)."""
    runs = _manager(request)
    handle = runs.handle(run_id)
    if handle is None:
        runs.run_row(run_id)
        return Response(status_code=204)
    last = request.headers.get("last-event-id", "")
    start = int(last) + 1 if last.isdigit() else 0
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    frames = _frames(request, runs, handle, start)
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)


def _waiting(runs: RunManager, run_id: str) -> str:
    return ",".join(sorted(f"{g.host}/{g.step_id}" for g in runs.store.gates(run_id, "waiting")))


def _frames(
    request: Request, runs: RunManager, handle: RunHandle, index: int
) -> AsyncIterator[str]:
    """The run's event frames, numbered, with a `gates` event whenever the
    waiting gates change (the page reloads to show their buttons)."""
    from starlette.concurrency import run_in_threadpool

    gates: str | None = None

    async def gates_frame() -> str | None:
        nonlocal gates
        now = await run_in_threadpool(_waiting, runs, handle.run_id)
        if now == gates:
            return None
        gates = now
        return f"event: gates\ndata: {now}\n\n"

    return handle.events.stream(
        request.is_disconnected, start=index, ids=True, side=gates_frame,
        side_every=GATE_POLL, keepalive=KEEPALIVE,
    )  # fmt: skip


def _vote(
    request: Request, run_id: str, step_id: str, user: User, form: dict[str, str],
    kind: str, yes: str, no: str,
) -> Response:  # fmt: skip
    """A gate's or manual step's answer, through the API's checks and cast_vote."""
    from .api import answer_gate

    back = f"/ui/runs/{run_id}"
    right = "approve" if kind == "confirm" else "acknowledge"
    if not user.may(right):
        return _refused(user, right, back)
    answer = form.get("answer")
    if answer not in (yes, no):
        return _page(pages.message_page("Refused", f"answer: {yes} or {no}", user.name, back), 400)
    host = form.get("host") or "*"
    try:
        answer_gate(request, run_id, step_id, user, answer == yes, host, form.get("comment", ""),
                kind, via="web")  # fmt: skip
    except (HTTPException, EngineError) as exc:
        return _failed(exc, user, back)
    return RedirectResponse(back, 303)


@router.post("/runs/{run_id}/gates/{step_id}")
def vote(
    run_id: str, step_id: str, request: Request, user: User = Depends(ui_user),
    form: dict[str, str] = Depends(form_of),
) -> Response:  # fmt: skip
    return _vote(request, run_id, step_id, user, form, "confirm", "approve", "decline")


@router.post("/runs/{run_id}/manual/{step_id}")
def manual(
    run_id: str, step_id: str, request: Request, user: User = Depends(ui_user),
    form: dict[str, str] = Depends(form_of),
) -> Response:  # fmt: skip
    return _vote(request, run_id, step_id, user, form, "manual", "done", "abort")


@router.post("/runs/{run_id}/cancel")
def cancel(
    run_id: str, request: Request, user: User = Depends(ui_user),
    form: dict[str, str] = Depends(form_of),
) -> Response:  # fmt: skip
    """As POST /api/runs/{id}/cancel: Ctrl-C twice, for a run this server holds."""
    back = f"/ui/runs/{run_id}"
    if not user.may("cancel"):
        return _refused(user, "cancel", back)
    runs = _manager(request)
    try:
        row = runs.run_row(run_id)
    except NotFound as exc:
        return _failed(exc, user, "/ui/")
    handle = runs.handle(run_id)
    if handle is None and row.get("state") == "running":
        text = f"run {run_id} was not started by this server: stop it where it runs"
        return _page(pages.message_page("Refused", text, user.name, back), 409)
    cancelled = handle.cancel(user.name) if handle is not None else False
    audit(request, user.name, "cancel", run_id, cancelled=cancelled, via="web")
    return RedirectResponse(back, 303)


# ------------------------------------------------------------------ trends


@router.get("/trends/{metric}", response_class=HTMLResponse)
def trend(
    metric: str, request: Request, runbook: str | None = None,
    limit: int = Query(500, ge=1, le=100_000), user: User = Depends(ui_user),
) -> HTMLResponse:  # fmt: skip
    """`runbook history --metric NAME --report`'s page."""
    from engine.reports.trend import trend_page

    return _page(trend_page(_manager(request).store, metric, runbook, limit)[0])
