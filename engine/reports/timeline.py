"""A run's, or an incident's, timeline as Markdown for the postmortem.

Drawn from the history only: every row there was redacted when recorded, so
nothing here can show more than the run showed. What is printed is short on
purpose (a tail of each output, one line per event): a postmortem quotes it,
and whoever wants more has `runbook history RUN_ID --format events`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.redaction import MASK, mask_secret_named
from engine.results import shown_duration, shown_number

if TYPE_CHECKING:
    from engine.history.gates import Gate, Vote
    from engine.history.store import EventRow, HistoryStore, StepRow

COLUMNS = ("time", "run", "host", "what", "state", "took", "detail")
_PUNCT = re.compile(r"([\\`*_\[\]<>|~#])")
_MASKED = _PUNCT.sub(r"\\\1", MASK)


@dataclass
class RunRecord:
    """One run's rows, read once: the timeline and the summary both use them."""

    row: dict[str, Any]
    state: str  # as shown: `died` for a run whose engine is gone
    events: list[EventRow]
    steps: list[StepRow]
    gates: list[Gate] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Entry:
    at: str
    order: tuple[int, int]  # (run index, seq): ties keep the recorded order
    run: RunRecord
    host: str
    what: str
    state: str = ""
    took: str = ""
    detail: str = ""


def gather(store: HistoryStore, row: dict[str, Any]) -> RunRecord:
    from engine.history.replay import display_state

    run_id = row["id"]
    return RunRecord(
        row,
        display_state(row),
        store.events(run_id),
        store.step_rows(run_id),
        store.gates(run_id),
        store.votes(run_id),
        store.audit(run_id),
    )


# ------------------------------------------------------------------ escaping


def text(value: Any) -> str:
    """Free text (a name, an error, a comment) safe inside a table cell: one
    line, and the characters Markdown would read as markup escaped."""
    flat = " ".join(str("" if value is None else value).split())
    # The mask as a code span: it reads as itself, raw or rendered.
    return _PUNCT.sub(r"\\\1", flat).replace(_MASKED, f"`{MASK}`")


def code(value: Any) -> str:
    """An identifier as a code span, whatever backticks it holds."""
    s = str(value).replace("|", "\\|")
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{ticks}{pad}{s}{pad}{ticks}"


def fenced(body: str) -> str:
    """A code block whose fence is longer than any run of backticks inside."""
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{body}\n{fence}"


def _table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------- time


def _moment(at: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(at) if at else None
    except ValueError:
        return None


def _seconds(at: str | None) -> float:
    """A time to sort by: offsets may differ between back-ends and runs."""
    moment = _moment(at)
    return moment.timestamp() if moment else 0.0


def _sort_key(entry: Entry) -> tuple[float, tuple[int, int]]:
    return (_seconds(entry.at), entry.order)


def _clock(at: str | None, full: bool) -> str:
    """'2026-12-04T08:38:49.495+00:00' → '08:38:49.495' (with the date when `full`)."""
    if not at:
        return ""
    shown = at.replace("T", " ")
    return shown[:23] if full else shown[11:23]


def took(started: str | None, finished: str | None) -> str:
    a, b = _moment(started), _moment(finished)
    return shown_duration((b - a).total_seconds() * 1000) if a and b else ""


# ------------------------------------------------------------------- entries


def entries(run: RunRecord, index: int = 0) -> list[Entry]:
    """Every event of a run worth a line, from its events, steps and votes."""
    by_seq = {s.seq: s for s in run.steps}
    finished = {(s.host, s.step_id) for s in run.steps}
    out: list[Entry] = []
    for e in run.events:
        entry = Entry(e.at, (index, e.seq), run, e.host or "", "")
        if e.kind == "step_finished" and e.seq in by_seq:
            _step_entry(entry, by_seq[e.seq], int(e.payload.get("depth") or 0))
        elif e.kind == "step_started" and (e.host, e.step_id) not in finished:
            entry.what, entry.state = f"step {code(e.step_id)} started", "never finished"
        elif not _event_entry(entry, e):
            continue
        out.append(entry)
    out += _gate_entries(run, index)
    return out


def _step_entry(entry: Entry, s: StepRow, depth: int) -> None:
    r = s.result
    entry.at = s.started_at or s.finished_at
    entry.what = f"{'· ' * depth}step {code(s.step_id)} {text(s.name)}".rstrip()
    entry.state, entry.took = s.state, shown_duration(s.duration_ms or 0)
    notes = [
        _crossed(name, m)
        for name, m in (r.get("metrics") or {}).items()
        if m.get("state") not in (None, "ok")
    ]
    data = r.get("data")
    if isinstance(data, dict) and data.get("acknowledged_by"):
        notes.append(f"manual step acknowledged by {text(data['acknowledged_by'])}")
    if r.get("approved_by"):
        notes.append(f"approved by {text(r['approved_by'])}")
    if s.error:
        notes.append(text(s.error))
    elif r.get("skip_reason"):
        notes.append(text(r["skip_reason"]))
    entry.detail = "; ".join(notes)


def _crossed(name: str, m: dict[str, Any]) -> str:
    """'disk_pct = 85 % (warn > 80)': the value and the bound it crossed."""
    unit = f" {m['unit']}" if m.get("unit") else ""
    state = str(m.get("state"))
    bound = m.get(state)
    value = m.get("value")
    shown = "n/a" if value is None else shown_number(value) if isinstance(value, float) else value
    return text(f"{name} = {shown}{unit} ({state}{' ' + str(bound) if bound else ''})")


def _event_entry(entry: Entry, e: EventRow) -> bool:
    """Fill `entry` for a run-level, log or approval event; False: no line."""
    p = e.payload
    if e.kind == "run_started":
        entry.what = f"run started by {text(p.get('operator'))}"
        entry.detail = f"hosts: {text(', '.join(p.get('hosts') or []))}"
    elif e.kind == "approval":
        entry.what = f"approval of {code(e.step_id)}"
        entry.state = "approved" if p.get("approved") else "declined"
        entry.detail = f"by {text(p.get('by'))}: {text(p.get('prompt'))}"
    elif e.kind == "log":
        entry.what, entry.state = f"log from {code(e.step_id)}", str(p.get("level") or "")
        entry.detail = text(p.get("message"))
    elif e.kind == "host_finished":
        entry.what, entry.state = "host finished", str(p.get("state") or "")
        entry.detail = "not started" if p.get("not_started") else text(p.get("reason"))
    elif e.kind == "run_aborted":
        entry.what, entry.state, entry.detail = "run aborted", "aborted", text(p.get("reason"))
    elif e.kind == "run_finished":
        entry.what, entry.state = "run finished", str(p.get("state") or "")
        entry.took = shown_duration(int(p.get("duration_ms") or 0))
        entry.detail = f"exit {p.get('exit_code')}"
    else:
        return False
    return True


def _gate_entries(run: RunRecord, index: int) -> list[Entry]:
    """Gates answered by others: opened, each vote, decided (the votes table)."""
    out: list[Entry] = []
    for g in run.gates:
        who = ", ".join(g.approvers) or "anyone"
        out.append(
            Entry(g.requested_at, (index, 0), run, g.host, f"gate {code(g.step_id)} opened",
                  "waiting", "", f"{text(g.prompt)} (approvers: {text(who)}, "
                  f"{g.min_approvals} needed; requested by {text(g.requested_by)})")
        )  # fmt: skip
        if g.decided_at:
            out.append(
                Entry(g.decided_at, (index, 1 << 30), run, g.host,
                      f"gate {code(g.step_id)} closed", g.state, "",
                      f"by {text(g.decided_by or 'nobody')}")
            )  # fmt: skip
    for v in run.votes:
        detail = f"{text(v.user)} via {text(v.via or '?')}"
        if v.comment:
            detail += f": “{text(v.comment)}”"
        verdict = "approve" if v.approved else "decline"
        out.append(
            Entry(v.at, (index, 0), run, "" if v.host == "*" else v.host,
                  f"vote on {code(v.step_id)}", verdict, "", detail)
        )  # fmt: skip
    for a in run.audit:
        if a.get("action") not in ("approve", "decline"):  # votes are listed above
            out.append(
                Entry(a.get("at") or "", (index, 0), run, "", f"{text(a.get('action'))}",
                      "", "", f"by {text(a.get('user_name'))}")
            )  # fmt: skip
    return out


def _timeline(items: list[Entry], with_run: bool) -> str:
    items = sorted(items, key=_sort_key)
    days = {i.at[:10] for i in items if i.at}
    full = len(days) > 1
    headers = COLUMNS if with_run else tuple(c for c in COLUMNS if c != "run")
    rows = []
    for i in items:
        cells = [_clock(i.at, full), _run_label(i.run.row), i.host, i.what, i.state, i.took]
        cells.append(i.detail)
        rows.append(cells if with_run else cells[:1] + cells[2:])
    return _table(headers, rows)


def _run_label(row: dict[str, Any]) -> str:
    return f"{text(row['runbook'])} {code(str(row['id'])[-6:])}"


# ------------------------------------------------------------------ sections


def _facts(run: RunRecord) -> list[tuple[str, str]]:
    row = run.row
    params = mask_secret_named(row.get("params") or {})  # stored redacted; named ones too
    hosts = ", ".join(row.get("hosts") or [])
    facts = [
        ("runbook", f"{text(row['runbook'])} ({code(row.get('path') or '?')})"),
        ("run", code(row["id"])),
        ("incident", text(row.get("incident") or "none")),
        ("started by", text(row.get("operator"))),
        ("started", _clock(row.get("started_at"), True)),
        ("finished", _clock(row.get("finished_at"), True) or "not recorded"),
        ("duration", took(row.get("started_at"), row.get("finished_at"))),
        ("inventory", f"{text(row.get('inventory'))} (hosts: {text(hosts)})"),
        ("params", text(", ".join(f"{k}={v}" for k, v in params.items())) or "none"),
        ("outcome", f"**{text(run.state)}** (exit {row.get('exit_code')})"),
    ]
    if row.get("resumed_from"):
        facts.append(("resumes", code(row["resumed_from"])))
    if row.get("dry_run"):
        facts.append(("mode", "dry run"))
    return facts


def _outputs(run: RunRecord, lines: int, level: str) -> str:
    """The tail of each step's stdout and stderr, at most `lines` lines each."""
    parts: list[str] = []
    for s in run.steps if lines > 0 else []:
        data = s.result.get("data")
        if not isinstance(data, dict):
            continue
        for stream in ("stdout", "stderr"):
            body = data.get(stream)
            if not isinstance(body, str) or not body.strip():
                continue
            kept = body.rstrip("\n").splitlines()
            shown = kept[-lines:]
            note = f"last {len(shown)} of {len(kept)} lines" if len(kept) > len(shown) else ""
            head = f"{code(s.step_id)} on {text(s.host)}, {stream} ({s.state})"
            parts.append(f"**{head}**{' — ' + note if note else ''}\n\n" + fenced("\n".join(shown)))
    return f"{level} Output\n\n" + "\n\n".join(parts) if parts else ""


def _summary(run: RunRecord, lines: int, level: str) -> str:
    facts = _table(("", ""), [[f"**{k}**", v] for k, v in _facts(run)])
    counts: dict[str, int] = {}
    for s in run.steps:
        counts[s.state] = counts.get(s.state, 0) + 1
    tally = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no step ran"
    parts = [facts, f"Steps: {tally}."]
    outputs = _outputs(run, lines, level)
    return "\n\n".join(parts + ([outputs] if outputs else []))


def run_markdown(run: RunRecord, lines: int = 10) -> str:
    """One run: its facts, its timeline, its outputs' tails."""
    row = run.row
    return (
        "\n\n".join(
            [
                f"# Run {code(row['id'])}: {text(row['runbook'])}",
                _summary(run, 0, "##"),
                "## Timeline",
                _timeline(entries(run), with_run=False),
                _outputs(run, lines, "##"),
            ]
        ).rstrip()
        + "\n"
    )


def _people(runs: list[RunRecord]) -> tuple[list[str], list[str]]:
    """(operators, approvers): who started runs, who answered their gates."""
    operators = sorted({str(r.row.get("operator")) for r in runs if r.row.get("operator")})
    approvers: set[str] = set()
    for r in runs:
        voted = {v.user for v in r.votes}
        approvers |= voted
        for e in r.events:
            if e.kind == "approval" and not voted:
                by = str(e.payload.get("by") or "").split(" (")[0]
                approvers |= {b.strip() for b in by.split(",") if b.strip()}
        for s in r.steps:
            data = s.result.get("data")
            if isinstance(data, dict) and data.get("acknowledged_by"):
                approvers.add(str(data["acknowledged_by"]).split(" (")[0])
    return operators, sorted(approvers)


def incident_markdown(incident: str, runs: list[RunRecord], lines: int = 10) -> str:
    """Every run of an incident: who took part, one merged timeline in time
    order (each line names its run), then each run's summary."""
    runs = sorted(runs, key=lambda r: _seconds(r.row.get("started_at")))
    starts = [r.row["started_at"] for r in runs if r.row.get("started_at")]
    ends = [r.row["finished_at"] for r in runs if r.row.get("finished_at")]
    operators, approvers = _people(runs)
    head = [
        ["**incident**", text(incident)],
        ["**first start**", _clock(min(starts, key=_seconds), True) if starts else ""],
        ["**last end**", _clock(max(ends, key=_seconds), True) if ends else "not recorded"],
        ["**runs**", ", ".join(f"{_run_label(r.row)} ({text(r.state)})" for r in runs)],
        ["**operators**", text(", ".join(operators)) or "none recorded"],
        ["**approvers**", text(", ".join(approvers)) or "none"],
    ]
    merged = [e for i, r in enumerate(runs) for e in entries(r, i)]
    parts = [f"# Incident {text(incident)}", _table(("", ""), head), "## Timeline"]
    parts.append(_timeline(merged, with_run=True))
    parts.append("## Runs")
    for r in runs:
        parts.append(f"### {text(r.row['runbook'])} {code(r.row['id'])}")
        parts.append(_summary(r, lines, "####"))
    return "\n\n".join(parts).rstrip() + "\n"
