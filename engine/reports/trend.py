"""`runbook history --metric NAME --report PATH.html`: a threshold's values over
time as one self-contained page, a line per host with the warn and critical
bounds drawn across, and the values in a table below.

Like the run report it has no scripts, fonts or links: the chart is inline
SVG (each point's `<title>` is its tooltip), so the page renders from the
file alone, mailed or attached to a postmortem. Values come from the history,
which only ever holds redacted text; every string is HTML-escaped here.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape
from typing import Any

from .html import COLORS, CSS

WIDTH, HEIGHT = 900, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 20, 40
# Colour-blind-safe series colours (Okabe-Ito), one per host in turn.
SERIES = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
_BOUND = re.compile(r"^\s*(?:>=|<=|>|<|==)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")


def trend_page(store: Any, metric: str, runbook: str | None, limit: int) -> tuple[str, int]:
    """The page for `metric` from the history, and how many values it draws.
    The bounds drawn are the newest run's: they are rendered per run, so a
    changed threshold shows from its first run on."""
    rows = store.metric_rows(metric, runbook, limit)
    bounds: dict[str, str | None] = {"warn": None, "critical": None}
    if rows:
        newest = rows[-1]
        for step in store.step_rows(newest["run_id"]):
            if step.host == newest["host"] and step.step_id == newest["step_id"]:
                found = (step.result.get("metrics") or {}).get(metric) or {}
                bounds = {k: found.get(k) for k in ("warn", "critical")}
    return render_trend(metric, rows, bounds), len(rows)


def bound_value(text: str | None) -> float | None:
    """The number of a rendered bound such as "> 80"; None for anything else."""
    if not text:
        return None
    found = _BOUND.match(text)
    return float(found.group(1)) if found else None


def render_trend(name: str, rows: list[dict[str, Any]], bounds: dict[str, str | None]) -> str:
    """The page for `rows` (metric_rows: oldest first) and the latest bounds."""
    unit = next((r["unit"] for r in rows if r.get("unit")), "") or ""
    title = f"{name}{f' ({unit})' if unit else ''}"
    hosts = sorted({r["host"] for r in rows})
    chart = _chart(rows, hosts, bounds) if any(r["value"] is not None for r in rows) else ""
    legend = "".join(
        f'<span class="key"><i style="background:{SERIES[i % len(SERIES)]}"></i>{escape(h)}</span>'
        for i, h in enumerate(hosts)
    )
    bound_text = " · ".join(f"{kind} {escape(text)}" for kind, text in bounds.items() if text)
    table_rows = "".join(_row(r) for r in reversed(rows))
    empty = "" if rows else "<p>No values recorded for this metric.</p>"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} — trend</title><style>{CSS}{TREND_CSS}</style></head><body>"
        f'<header><h1 id="metric">{escape(title)}</h1><div class="meta">'
        f"<span>{len(rows)} values, {len(hosts)} host(s)</span>"
        f"{f'<span>bounds: {bound_text}</span>' if bound_text else ''}"
        f"{_period(rows)}"
        f"</div></header><main>{empty}"
        f'<figure class="chart">{chart}<figcaption>{legend}</figcaption></figure>'
        "<h2>Values, newest first</h2><table><tr><th>at</th><th>run</th><th>runbook</th>"
        f"<th>host</th><th>value</th><th>state</th></tr>{table_rows}</table>"
        "</main></body></html>\n"
    )


def _row(r: dict[str, Any]) -> str:
    value = "n/a" if r["value"] is None else f"{r['value']:.6g}"
    color = COLORS.get(r["state"], "#57606a")
    return (
        f"<tr><td>{escape(_when(r['at']))}</td><td><code>{escape(str(r['run_id']))}</code></td>"
        f"<td>{escape(str(r['runbook']))}</td><td>{escape(str(r['host']))}</td>"
        f"<td class=num>{value}</td>"
        f'<td><span class="badge" style="background:{color}">{escape(str(r["state"]))}</span>'
        "</td></tr>"
    )


def _period(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    return f"<span>{escape(_when(rows[0]['at']))} → {escape(_when(rows[-1]['at']))}</span>"


TREND_CSS = """
.chart{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:20px 0;padding:10px}
.chart svg{display:block;max-width:100%;height:auto}
figcaption{margin-top:6px}
.key{margin-right:16px;white-space:nowrap}
.key i{display:inline-block;width:14px;height:4px;margin-right:6px;vertical-align:middle}
"""


def _chart(rows: list[dict[str, Any]], hosts: list[str], bounds: dict[str, str | None]) -> str:
    points = [(_time(r["at"]), float(r["value"]), r) for r in rows if r["value"] is not None]
    lines = {k: v for k in ("warn", "critical") if (v := bound_value(bounds.get(k))) is not None}
    values = [p[1] for p in points] + list(lines.values())
    low, high = min(values), max(values)
    if high == low:  # a flat series still gets a band to sit in
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    start, end = min(p[0] for p in points), max(p[0] for p in points)
    span = (end - start) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - start) / span * plot_w if end > start else LEFT + plot_w / 2

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="trend">'
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#d0d7de"/>'
    ]
    for i in range(5):  # y ticks
        v = low + (high - low) * i / 4
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            'stroke="#eaeef2"/>'
            f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#57606a">{v:.4g}</text>'
        )
    for kind, v in lines.items():
        color = COLORS[kind]
        out.append(
            f'<line class="bound-{kind}" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" '
            f'y2="{y(v):.1f}" stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{LEFT + plot_w + 6}" y="{y(v) + 4:.1f}" font-size="12" fill="{color}">'
            f"{kind} {escape(str(bounds[kind]))}</text>"
        )
    for i, host in enumerate(hosts):
        color = SERIES[i % len(SERIES)]
        mine = [p for p in points if p[2]["host"] == host]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _ in mine)
        out.append(
            f'<polyline class="series" points="{path}" fill="none" stroke="{color}" '
            'stroke-width="2"/>'
        )
        for t, v, r in mine:
            dot = COLORS.get(r["state"], color) if r["state"] in ("warn", "critical") else color
            tip = f"{host} · {_when(r['at'])} · {v:.6g} · {r['state']} · run {r['run_id']}"
            out.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3.5" fill="{dot}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    first, last = _when(rows[0]["at"]), _when(rows[-1]["at"])
    out.append(
        f'<text x="{LEFT}" y="{HEIGHT - 12}" font-size="11" fill="#57606a">{escape(first)}</text>'
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 12}" font-size="11" text-anchor="end" '
        f'fill="#57606a">{escape(last)}</text></svg>'
    )
    return "".join(out)


def _time(at: Any) -> float:
    return _parse(at).timestamp()


def _when(at: Any) -> str:
    return _parse(at).strftime("%Y-%m-%d %H:%M")


def _parse(at: Any) -> datetime:
    if isinstance(at, datetime):
        return at
    return datetime.fromisoformat(str(at))
