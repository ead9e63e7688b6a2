"""The HTML report's picture of a run: hosts worst first with the reason each
is not ok, and a step × host grid whose cells link to the host's section.

In an incident the reader asks "which hosts, which step, why" before anything
else; the page answers it above the fold. Ordering and reasons live here so
the hosts table, the grid and the host sections agree. The grid is plain HTML
and CSS (no script): the page is mailed and opened offline for years.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from html import escape

from engine.results import HostResult, Metric, State, StepResult, shown_number

from .document import RunDocument
from .recap import rank

# How a cell reads without colour: a symbol and a short word.
SYMBOLS = {
    "ok": ("✓", "ok"),
    "skipped": ("–", "skip"),
    "warn": ("!", "warn"),
    "critical": ("‼", "crit"),
    "failed": ("✗", "fail"),
    "unreachable": ("⊘", "unre"),
    "aborted": ("■", "abrt"),
    "not run": ("·", ""),
}

GRID_CSS = """
.legend{color:#57606a;margin:0 0 8px}
.legend span{margin-right:14px;white-space:nowrap}
.gridwrap{display:inline-block;max-width:100%;overflow:auto;max-height:80vh;
border:1px solid #d0d7de;background:#fff}
table.grid{border:0;width:auto;border-collapse:separate;border-spacing:0}
.grid th,.grid td{padding:0;border-bottom:1px solid #eaeef2;border-right:1px solid #eaeef2}
.grid thead th{position:sticky;top:0;z-index:2;background:#f6f8fa;vertical-align:bottom}
.grid thead th.hcol{padding:6px 2px;height:120px}
.grid thead th.hcol a{writing-mode:vertical-rl;transform:rotate(180deg);display:inline-block;
max-height:110px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:#1f2328;
text-decoration:none}
.grid .step{position:sticky;left:0;z-index:1;background:#fff;padding:4px 10px;min-width:180px;
max-width:320px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.grid thead th.step{z-index:3;background:#f6f8fa}
.grid td.c a{display:block;min-width:52px;padding:4px;white-space:nowrap;text-align:center;
color:#fff;
font:600 11px/1.2 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;text-decoration:none}
.grid td.c a.none{color:#8c959f;background:#fff}
.grid td.c a.soft{opacity:.55}
.scroll{max-height:min(60vh,420px);overflow:auto;border:1px solid #d0d7de}
.scroll table{border:0}
.scroll thead th{position:sticky;top:0;z-index:1}
table.hosts td.note{max-width:640px;word-break:break-word}
a{color:#0969da}
"""

_TAIL_LINES = 3
_TAIL_CHARS = 300
_NOTE_CHARS = 500


def host_anchor(host: str) -> str:
    """A stable HTML id for a host's section: its name when that is a safe id,
    else a slug with a short hash of the name, so two names never share one."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "-", host)
    # "--" separates a host from a step id in step_anchor: a name holding it is hashed.
    if slug != host or not slug or "--" in slug:
        slug = f"{slug}-{hashlib.sha1(host.encode()).hexdigest()[:8]}"
    return f"host-{slug}"


def step_anchor(host: str, step_id: str) -> str:
    """A stable HTML id for one step's row in a host's section."""
    return f"{host_anchor(host)}--{re.sub(r'[^A-Za-z0-9_.-]', '-', step_id)}"


def host_order(doc: RunDocument) -> list[str]:
    """Hosts worst first (failed, unreachable, critical, aborted, warn, never
    started, ok, all skipped), ties by name: the order the recap uses."""
    names = list(dict.fromkeys([*doc.hosts, *doc.result.hosts]))

    def key(name: str) -> tuple[int, int, str]:
        found = doc.result.hosts.get(name)
        if found is None:
            return (5, 0, name)  # listed but never started: beside recap's "not started"
        all_skipped = bool(found.steps) and all(s.state is State.SKIPPED for s in found.steps)
        return (rank(found), int(all_skipped), name)

    return sorted(names, key=key)


def depth_of(doc: RunDocument, host: str, step: StepResult) -> int:
    timing = doc.timings.get((host, step.step_id))
    return timing.depth if timing else step.step_id.count(".")


def ordered_steps(doc: RunDocument, hr: HostResult) -> list[tuple[StepResult, int]]:
    """A host's steps in runbook order with their depths. A block's result is
    recorded after its nested steps finish; here it comes before them."""
    out: list[tuple[StepResult, int]] = []
    # The depth of the block that took each entry in (None: not yet taken). A
    # step after deeper ones is their block unless a block of its own depth
    # already took them (then it is that block's next sibling).
    taken: list[int | None] = []
    for step in hr.steps:
        depth = depth_of(doc, hr.host, step)
        at = len(out)
        while at > 0 and out[at - 1][1] > depth:
            owner = taken[at - 1]
            if owner is not None and owner <= depth:
                break
            at -= 1
        for i in range(at, len(out)):
            if taken[i] is None:
                taken[i] = depth
        out.insert(at, (step, depth))
        taken.insert(at, None)
    return out


@dataclass
class GridRow:
    step_id: str
    name: str
    depth: int


def grid_rows(doc: RunDocument, hosts: list[str]) -> list[GridRow]:
    """Every step any host recorded, once, in runbook order: each host's order
    merged in, a step first seen on a later host placed after its predecessor."""
    rows: list[GridRow] = []
    for host in hosts:
        found = doc.result.hosts.get(host)
        if found is None:
            continue
        prev = -1
        for step, depth in ordered_steps(doc, found):
            ids = [r.step_id for r in rows]
            if step.step_id in ids:
                prev = ids.index(step.step_id)
                continue
            prev += 1
            rows.insert(prev, GridRow(step.step_id, step.name, depth))
    return rows


def _metric_text(m: Metric) -> str:
    value = "n/a" if m.value is None else shown_number(m.value)
    bound = m.critical if m.state is State.CRITICAL else m.warn
    unit = f" {m.unit}" if m.unit else ""
    return f"{m.name} = {value}{unit} ({m.state.value} {bound or ''})".replace(" )", ")")


def _stderr_tail(step: StepResult, error: str) -> str:
    """The last lines of stderr, in order, unless the error already quotes
    them all (a shell step's error ends with stderr's last line)."""
    text = step.data.get("stderr")
    if not isinstance(text, str):
        return ""
    lines = [line.strip() for line in text.strip().splitlines()[-_TAIL_LINES:] if line.strip()]
    if all(line in error for line in lines):
        return ""
    return " ⏎ ".join(lines)[-_TAIL_CHARS:]


def step_reason(step: StepResult) -> str:
    """Why a step is not ok, in one line: the threshold it crossed with its
    value, or its error with the tail of stderr."""
    crossed = [m for m in step.metrics.values() if m.state is step.state]
    if crossed and step.state in (State.WARN, State.CRITICAL):
        return "; ".join(_metric_text(m) for m in crossed)
    error = step.error or ""
    tail = _stderr_tail(step, error)
    if tail:
        error = f"{error} — stderr: {tail}" if error else f"stderr: {tail}"
    return (error or step.skip_reason or "")[:_NOTE_CHARS]


def host_reason(hr: HostResult | None) -> tuple[str, str]:
    """(the step that makes the host not ok, why): ("", "") for an ok host."""
    if hr is None:
        return "", "not started"
    if hr.unreachable or hr.aborted or hr.not_started:
        return "", hr.reason() or ("not started" if hr.not_started else "")
    state = hr.state
    if state in (State.OK, State.SKIPPED):
        return "", ""
    for step in hr.steps:  # run order: a nested step before the block it failed
        if step.counted_state is state:
            return step.step_id, step_reason(step)
    return "", hr.reason()


def note_html(hr: HostResult | None, host: str) -> str:
    step_id, why = host_reason(hr)
    if not why and not step_id:
        return ""
    cls = "dim"
    if hr is not None and hr.state.severity >= State.CRITICAL.severity:
        cls = "err"
    link = ""
    if step_id:
        link = f'<a href="#{step_anchor(host, step_id)}"><code>{escape(step_id)}</code></a> '
    return f'{link}<span class="{cls}">{escape(why)}</span>'


def _cell(host: str, step: StepResult | None, colors: dict[str, str]) -> str:
    if step is None:
        symbol, _ = SYMBOLS["not run"]
        title = f"{host}: not run"
        href = f"#{host_anchor(host)}"
        return (
            f'<td class="c"><a class="none" href="{href}" title="{escape(title)}">{symbol}</a></td>'
        )
    state = step.state.value
    symbol, word = SYMBOLS.get(state, ("?", state[:4]))
    extra = " (ignored)" if step.ignored else " (rescued)" if step.rescued else ""
    why = step_reason(step) if step.state is not State.OK else ""
    title = f"{host} · {step.step_id}: {state}{extra}" + (f" — {why}" if why else "")
    soft = " soft" if extra else ""
    color = colors.get(state, "#57606a")
    return (
        f'<td class="c"><a class="s-{state}{soft}" style="background:{color}" '
        f'href="#{step_anchor(host, step.step_id)}" title="{escape(title)}">'
        f"{symbol} {word}</a></td>"
    )


def grid_html(doc: RunDocument, hosts: list[str], colors: dict[str, str]) -> str:
    """The step × host grid: one row per step, one column per host."""
    rows = grid_rows(doc, hosts)
    if not rows:
        return ""
    by_host = {
        h: {s.step_id: s for s in doc.result.hosts[h].steps} for h in hosts if h in doc.result.hosts
    }
    head = "".join(
        f'<th class="hcol" title="{escape(h)}"><a href="#{host_anchor(h)}">{escape(h)}</a></th>'
        for h in hosts
    )
    body = []
    for row in rows:
        pad = f"padding-left:{10 + 16 * row.depth}px"
        cells = "".join(_cell(h, by_host.get(h, {}).get(row.step_id), colors) for h in hosts)
        body.append(
            f'<tr><th class="step" style="{pad}" title="{escape(row.name)}">'
            f'{escape(row.name)} <code class="dim">{escape(row.step_id)}</code></th>{cells}</tr>'
        )
    legend = "".join(f"<span>{sym} {escape(name)}</span>" for name, (sym, _) in SYMBOLS.items())
    return (
        '<h2 id="grid">Steps × hosts</h2>'
        f'<div class="legend">{legend}</div>'
        '<div class="gridwrap"><table class="grid"><thead><tr><th class="step">step</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
