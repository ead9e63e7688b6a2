"""The HTML of `runbook serve`'s web page: pure functions from values to markup.

Server-rendered, one inline stylesheet, no fonts or assets from anywhere, so
the page works behind any proxy and without JavaScript; the run page adds one
small inline script that follows the run's events. Every value shown comes
from the history or the event stream (both hold redacted text only) and is
HTML-escaped here; nothing is trusted as markup. The look is the HTML
report's (engine/reports/html.py): its colours and its grid's symbols.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from typing import Any

from engine.history.view import duration, short_time
from engine.reports.html import COLORS, CSS
from engine.reports.html_grid import SYMBOLS, step_anchor

CELL_SYMBOLS = {**SYMBOLS, "running": ("…", "running")}

PAGE_CSS = """
nav{background:#24292f;padding:8px 32px;display:flex;gap:18px;align-items:center}
nav a{color:#fff;text-decoration:none;font-weight:600}
nav .who{margin-left:auto;color:#d0d7de}
nav form{display:inline;margin:0}
button,.btn{font:inherit;padding:5px 14px;border-radius:6px;border:1px solid #d0d7de;
background:#f6f8fa;cursor:pointer;color:#1f2328}
button.go{background:#1f883d;border-color:#1a7f37;color:#fff}
button.stop{background:#cf222e;border-color:#a40e26;color:#fff}
nav button{padding:2px 10px}
form.inline{display:inline;margin:0 6px 0 0}
label{display:block;font-weight:600;margin:10px 0 4px}
input,select,textarea{font:inherit;padding:5px 8px;border:1px solid #d0d7de;border-radius:6px;
min-width:280px}
.box{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:12px 0}
.gate{border-left:4px solid #bf8700}
.note{color:#57606a;font-size:13px}
.error{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:10px 14px;
margin:12px 0;white-space:pre-wrap}
.gridwrap{overflow:auto;border:1px solid #d0d7de;background:#fff;max-width:100%}
table.grid td.c{padding:0;text-align:center;min-width:80px}
table.grid td.c span{display:block;padding:4px 8px;color:#fff;white-space:nowrap;
font:600 12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table.grid td.c span.none{color:#8c959f;background:#fff}
"""


def layout(title: str, body: str, user: str = "", refresh: int | None = None,
           noscript_refresh: int | None = None, script: str = "") -> str:  # fmt: skip
    """A whole page: the nav bar (with who is logged in and a logout button)."""
    head = [f"<title>{escape(title)} · runbook</title>", f"<style>{CSS}{PAGE_CSS}</style>"]
    if refresh:
        head.append(f'<meta http-equiv="refresh" content="{int(refresh)}">')
    if noscript_refresh:
        head.append(
            f'<noscript><meta http-equiv="refresh" content="{int(noscript_refresh)}"></noscript>'
        )
    nav = ""
    if user:
        nav = (
            '<nav><a href="/ui/">Runs</a><a href="/ui/runbooks">Runbooks</a>'
            f'<span class="who">{escape(user)}</span>'
            '<form method="post" action="/ui/logout"><button type="submit">Log out</button>'
            "</form></nav>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request: nothing from anywhere
        f"{''.join(head)}</head><body>{nav}{body}{script}</body></html>\n"
    )


def badge(state: str) -> str:
    color = COLORS.get(state, "#57606a")
    return f'<span class="badge" style="background:{color}">{escape(state)}</span>'


def error_box(message: str) -> str:
    return f'<div class="error" role="alert">{escape(message)}</div>' if message else ""


def message_page(title: str, message: str, user: str = "", back: str = "/ui/") -> str:
    """A refusal or an error, with the engine's own words and a way back."""
    body = (
        f"<header><h1>{escape(title)}</h1></header><main>{error_box(message)}"
        f'<p><a href="{escape(back)}">Back</a></p></main>'
    )
    return layout(title, body, user)


def login_page(error: str = "") -> str:
    body = (
        "<header><h1>runbook serve</h1><div class=meta>Log in with your token "
        "(the one the serve config holds the SHA-256 of).</div></header><main>"
        f'{error_box(error)}<form class="box" method="post" action="/ui/login">'
        '<label for="token">Token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        ' <button class="go" type="submit">Log in</button></form></main>'
    )
    return layout("Log in", body)


def runs_page(rows: list[dict[str, Any]], user: str) -> str:
    """The recent runs, newest first; refreshed by the browser every 10 s."""
    body = [
        "<tr>",
        "<th>run</th><th>runbook</th><th>state</th><th>operator</th><th>incident</th>",
        "<th>started</th><th>took</th><th>exit</th></tr>",
    ]
    for r in rows:
        rid = escape(str(r["id"]))
        exit_code = "" if r.get("exit_code") is None else escape(str(r["exit_code"]))
        body.append(
            f'<tr><td><a href="/ui/runs/{rid}"><code>{rid}</code></a></td>'
            f"<td>{escape(str(r.get('runbook') or ''))}</td><td>{badge(str(r['state']))}</td>"
            f"<td>{escape(str(r.get('operator') or ''))}</td>"
            f"<td>{escape(str(r.get('incident') or ''))}</td>"
            f"<td>{escape(short_time(r.get('started_at')))}</td>"
            f"<td>{escape(duration(r.get('started_at'), r.get('finished_at')))}</td>"
            f"<td class=num>{exit_code}</td></tr>"
        )
    table = f'<table id="runs">{"".join(body)}</table>' if rows else "<p>No runs recorded yet.</p>"
    main = f"<header><h1>Recent runs</h1></header><main>{table}</main>"
    return layout("Runs", main, user, refresh=10)


def runbooks_page(entries: list[Any], user: str) -> str:
    rows = "".join(
        f'<tr><td><a href="/ui/runbooks/{escape(e.name)}">{escape(e.name)}</a></td>'
        f"<td>{badge(e.kind) if e.kind == 'emergency' else escape(e.kind)}</td>"
        f"<td>{escape(e.error or e.description)}</td><td>{escape(e.owner or '')}</td></tr>"
        for e in entries
    )
    main = (
        "<header><h1>Runbooks</h1></header><main><table id=runbooks><tr><th>name</th>"
        f"<th>kind</th><th>description</th><th>owner</th></tr>{rows}</table></main>"
    )
    return layout("Runbooks", main, user)


@dataclass
class ParamField:
    """One param of the start form, as the server may take it from a request."""

    name: str
    type: str
    default: Any
    required: bool
    description: str
    choices: list[Any] | None
    secret: bool
    allowed: bool = True  # False: a secret param the config does not take from a request


def _input(p: ParamField) -> str:
    name = f"p.{p.name}"
    attrs = f'id="{escape(name)}" name="{escape(name)}"'
    if p.choices:
        options = "".join(
            f"<option{' selected' if c == p.default else ''}>{escape(str(c))}</option>"
            for c in p.choices
        )
        if p.default is None and not p.required:  # left empty: the param stays unset
            options = '<option value=""></option>' + options
        return f"<select {attrs}>{options}</select>"
    if p.secret:
        return f'<input {attrs} type="password" autocomplete="off">'
    if p.type == "bool":
        options = "".join(
            f"<option{' selected' if bool(p.default) is v else ''}>{str(v).lower()}</option>"
            for v in (True, False)
        )
        return f"<select {attrs}>{options}</select>"
    value = "" if p.default is None else p.default
    if p.type in ("list", "dict"):
        text = json.dumps(value, ensure_ascii=False) if value != "" else ""
        return f"<textarea {attrs} rows=3>{escape(text)}</textarea>"
    kind = {"int": 'type="number" step="1"', "float": 'type="number" step="any"'}.get(
        p.type, 'type="text"'
    )
    required = " required" if p.required and p.default is None else ""
    return f'<input {attrs} {kind} value="{escape(str(value))}"{required}>'


def _param_html(p: ParamField) -> str:
    desc = f' <span class="note">{escape(p.description)}</span>' if p.description else ""
    if not p.allowed:
        return (
            f"<p><b>{escape(p.name)}</b>{desc}<br><span class=note>secret: set by the server "
            "(runbook_params or its secrets), not taken from this form</span></p>"
        )
    return f'<label for="p.{escape(p.name)}">{escape(p.name)} <code>{escape(p.type)}</code>'\
        f"</label>{_input(p)}{desc}"  # fmt: skip


def runbook_page(rb: Any, params: list[ParamField], steps: list[tuple[str, str, int]],
                 user: str, may_start: bool, error: str = "") -> str:  # fmt: skip
    """A runbook: what it is for, its steps, and the start form for those who may."""
    h = rb.header
    meta = "".join(
        f"<span>{escape(k)}: {escape(str(v))}</span>"
        for k, v in (("kind", h.kind), ("hosts", h.hosts), ("owner", h.owner)) if v
    )  # fmt: skip
    step_list = "".join(
        f'<li style="margin-left:{16 * depth}px">{escape(name)} <code class=dim>'
        f"{escape(sid)}</code></li>"
        for sid, name, depth in steps
    )
    fields = "".join(_param_html(p) for p in params) or "<p class=note>No params.</p>"
    extra = (
        '<label for="incident">incident</label><input id="incident" name="incident">'
        '<label for="limit">limit <span class=note>(hosts, as --limit)</span></label>'
        '<input id="limit" name="limit">'
    )
    if may_start:
        form = (
            f'<form class="box" method="post" action="/ui/runbooks/{escape(rb.name)}/start">'
            f'<h2>Start</h2>{fields}{extra}<p><button class="go" id="start" type="submit">'
            "Start</button></p></form>"
        )
    else:
        form = (
            f'<div class="box"><h2>Params</h2>{fields}<p class="note">You may not start runs '
            "(a role with the start right: operator).</p></div>"
        )
    body = (
        f"<header><h1>{escape(rb.name)}</h1><div class=meta>{meta}</div>"
        f"<p>{escape(h.description)}</p></header><main>{error_box(error)}"
        f'<h2>Steps</h2><ol id="steps">{step_list}</ol>{form}</main>'
    )
    return layout(rb.name, body, user)


@dataclass
class GateView:
    """A waiting gate as the viewer sees it: what they may press, or why not."""

    hosts: list[str]  # the hosts waiting at this step; an answer is for all of them
    step_id: str
    kind: str
    prompt: str
    approvers: list[str]
    min_approvals: int
    approvals: list[str]
    votes: list[str]
    buttons: bool
    why_not: str = ""


@dataclass
class RunView:
    row: dict[str, Any]
    state: str
    hosts: list[str]
    steps: list[tuple[str, str, int]]  # (step id, name, depth), in runbook order
    cells: dict[tuple[str, str], str] = field(default_factory=dict)  # (host, step) → state
    titles: dict[tuple[str, str], str] = field(default_factory=dict)
    gates: list[GateView] = field(default_factory=list)
    gate_keys: str = ""  # "host/step,..." waiting now: the live script compares it
    logs: list[dict[str, Any]] = field(default_factory=list)
    may_cancel: bool = False
    live: bool = False  # events follow on /ui/runs/{id}/events
    seen: int = 0  # events the page already shows (the stream's index)


def cell_html(host: str, step_id: str, state: str | None, title: str = "") -> str:
    symbol, word = CELL_SYMBOLS.get(state or "not run", ("?", (state or "")[:4]))
    color = COLORS.get(state or "", "")
    span = (
        f'<span class="s-{escape(state)}" style="background:{color}">{symbol} {escape(word)}</span>'
        if state
        else f'<span class="none">{symbol}</span>'
    )
    return (
        f'<td class="c" id="{escape(step_anchor(host, step_id))}" data-host="{escape(host)}" '
        f'data-step="{escape(step_id)}" title="{escape(title or f"{host} · {step_id}")}">'
        f"{span}</td>"
    )


def _grid(v: RunView) -> str:
    head = "".join(f'<th class="hcol">{escape(h)}</th>' for h in v.hosts)
    rows = []
    for sid, name, depth in v.steps:
        cells = "".join(
            cell_html(h, sid, v.cells.get((h, sid)), v.titles.get((h, sid), "")) for h in v.hosts
        )
        rows.append(
            f'<tr><th class="step" style="padding-left:{10 + 16 * depth}px">{escape(name)} '
            f"<code class=dim>{escape(sid)}</code></th>{cells}</tr>"
        )
    legend = " · ".join(f"{sym} {escape(n)}" for n, (sym, _) in CELL_SYMBOLS.items())
    return (
        f'<h2>Steps × hosts</h2><p class="note">{legend}</p><div class="gridwrap">'
        f'<table class="grid" id="grid"><tr><th class="step">step</th>{head}</tr>'
        f"{''.join(rows)}</table></div>"
    )


def _gate_html(run_id: str, g: GateView) -> str:
    rid, sid = escape(run_id), escape(g.step_id)
    who = ", ".join(g.approvers) or "anyone with the right"
    votes = "".join(f"<li>{escape(v)}</li>" for v in g.votes)
    if g.kind == "manual":
        action, yes, no = f"/ui/runs/{rid}/manual/{sid}", ("done", "Done"), ("abort", "Abort")
    else:
        action, yes, no = f"/ui/runs/{rid}/gates/{sid}", ("approve", "Approve"), (
            "decline", "Decline")  # fmt: skip
    if g.buttons:
        hidden = '<input type="hidden" name="host" value="*">'
        buttons = "".join(
            f'<form class="inline" method="post" action="{action}">{hidden}'
            f'<button class="{cls}" name="answer" value="{val}" type="submit">{label}</button>'
            "</form>"
            for (val, label), cls in ((yes, "go"), (no, "stop"))
        )
    else:
        buttons = f'<p class="note">{escape(g.why_not)}</p>'
    return (
        f'<div class="box gate" data-gate="{sid}"><h3>{escape(g.kind)} '
        f"<code>{sid}</code> on {escape(', '.join(g.hosts))}</h3><pre>{escape(g.prompt)}</pre>"
        f'<p class="note">who may answer: {escape(who)}; approvals {len(g.approvals)}/'
        f"{g.min_approvals}</p><ul>{votes}</ul>{buttons}</div>"
    )


def _logs(logs: list[dict[str, Any]]) -> str:
    if not logs:
        return '<p class="note" id="logs">No log lines.</p>'
    rows = "".join(
        f"<tr><td>{escape(short_time(x.get('at')))}</td><td>{escape(str(x.get('host') or ''))}"
        f"</td><td><code>{escape(str(x.get('step') or ''))}</code></td>"
        f"<td>{escape(str(x.get('level') or ''))}</td><td>{escape(str(x.get('message')))}</td>"
        "</tr>"
        for x in logs
    )
    return f'<table id="logs"><tr><th>at</th><th>host</th><th>step</th><th>level</th>' \
        f"<th>message</th></tr>{rows}</table>"  # fmt: skip


def run_page(v: RunView, user: str) -> str:
    """A run: its header, the grid, the gates waiting with the buttons this user
    may press, a cancel button, the log lines; live while it runs."""
    r = v.row
    rid = escape(str(r["id"]))
    code = r.get("exit_code")
    exit_code = "" if code is None else f"<span>exit {escape(str(code))}</span>"
    meta = "".join(
        f"<span>{escape(k)}: {escape(str(val))}</span>"
        for k, val in (("operator", r.get("operator")), ("incident", r.get("incident")),
                       ("started", short_time(r.get("started_at"))),
                       ("took", duration(r.get("started_at"), r.get("finished_at"))))
        if val
    )  # fmt: skip
    cancel = (
        f'<form class="inline" method="post" action="/ui/runs/{rid}/cancel">'
        '<button class="stop" id="cancel" type="submit">Cancel run</button></form>'
        if v.may_cancel
        else ""
    )
    gates = "".join(_gate_html(str(r["id"]), g) for g in v.gates)
    body = (
        f'<header><h1>{escape(str(r.get("runbook")))} <span id="state">{badge(v.state)}</span>'
        f'</h1><div class="meta"><span>run <code>{rid}</code></span>{meta}{exit_code}</div>'
        f"<p>{cancel}</p></header><main>"
        f'<div id="gates" data-gates="{escape(v.gate_keys)}">'
        f"{'<h2>Waiting</h2>' + gates if gates else ''}</div>"
        f"{_grid(v)}<h2>Log</h2>{_logs(v.logs)}</main>"
    )
    script = _live_script(str(r["id"]), v.seen) if v.live else ""
    elsewhere = 5 if v.state == "running" and not v.live else None  # not followed here
    return layout(f"{r.get('runbook')} {v.state}", body, user, refresh=elsewhere,
                  noscript_refresh=3 if v.live else None, script=script)  # fmt: skip


_SCRIPT = """<script>
(function(){
var colors=%(colors)s, symbols=%(symbols)s, seen=%(seen)d, cells={};
document.querySelectorAll("td.c").forEach(function(td){
  cells[td.dataset.host+"\\u0000"+td.dataset.step]=td;});
function show(host,step,state){
  var td=cells[host+"\\u0000"+step]; if(!td) return;
  var s=symbols[state]||["?",state], span=document.createElement("span");
  span.className="s-"+state; span.style.background=colors[state]||"#57606a";
  span.textContent=s[0]+" "+s[1]; td.replaceChildren(span);}
var reloading=false;
function reload(){ if(!reloading){ reloading=true; es.close(); setTimeout(function(){
  location.reload();},300);} }
var es=new EventSource(%(url)s);
es.onmessage=function(m){
  var e=JSON.parse(m.data), fresh=Number(m.lastEventId)>=seen;
  if(e.event==="step_started") show(e.host,e.step_id,"running");
  else if(e.event==="step_finished") show(e.host,e.result.id,e.result.state);
  else if(e.event==="run_finished"||(fresh&&e.event==="approval")) reload();
};
es.addEventListener("gates",function(m){
  if(m.data!==document.getElementById("gates").dataset.gates) reload();});
es.addEventListener("end",function(){ es.close(); reload(); });
})();
</script>"""


def _live_script(run_id: str, seen: int) -> str:
    """Follows the run: cells change as steps start and finish; a gate opening,
    a vote or the run's end reloads the page, which the server renders anew."""
    symbols = {k: list(v) for k, v in CELL_SYMBOLS.items()}
    return _SCRIPT % {
        "colors": _js(COLORS),
        "symbols": _js(symbols),
        "seen": seen,
        "url": _js(f"/ui/runs/{run_id}/events"),
    }


def _js(value: Any) -> str:
    """A JSON literal safe inside <script>: no `</script>` or `<!--` can close it."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
