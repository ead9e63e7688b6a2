#!/usr/bin/env python3
"""The library's coverage of the five guides' procedures, checked and drawn.

runbooks/coverage/procedures.yaml lists every procedure of the guides (the
rows of the audit that filed issue 16) with the runbook steps that do it.
This script checks that list against the runbooks themselves (every
`runbook:step` it names exists; a procedure covered by hand points at a
`manual:` step) and draws it as the table in runbooks/README.md, between
the coverage markers, so the table can never claim a step that is not there.

    python3 scripts/coverage.py           # check; exit 1 with the problems
    python3 scripts/coverage.py --write   # redraw the table in the README
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "runbooks"
DATA = LIBRARY / "coverage" / "procedures.yaml"
README = LIBRARY / "README.md"
START = "<!-- coverage:start (drawn by scripts/coverage.py --write) -->"
END = "<!-- coverage:end -->"

# full: a step does it. manual: a `manual:` step gives the exact instructions
# inside a runbook that automates what is around it (a judgement, a vendor
# console). partial: some of it, the note says what is missing. planning: a
# meeting or a document, nothing a runbook could do. none: not covered yet.
STATUSES = ("full", "manual", "partial", "planning", "none")


def step_ids(steps: Any) -> dict[str, dict[str, Any]]:
    """Every step with an id, blocks, rescue and always included."""
    found: dict[str, dict[str, Any]] = {}
    if isinstance(steps, dict):  # a block's body: its steps, rescue and always
        steps = [step for key in ("steps", "rescue", "always") for step in steps.get(key) or []]
    for step in steps or []:
        if not isinstance(step, dict):
            continue
        if "id" in step:
            found[str(step["id"])] = step
        for key in ("block", "rescue", "always"):
            found.update(step_ids(step.get(key)))
    return found


def library() -> dict[str, dict[str, dict[str, Any]]]:
    """Runbook name → its steps by id."""
    out = {}
    for path in sorted(LIBRARY.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        steps = step_ids(doc.get("steps"))
        steps.update(step_ids(doc.get("always")))
        out[path.stem] = steps
    return out


def problems(data: dict[str, Any], books: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """What is wrong with the list: each problem names the seed and row."""
    found = []
    for seed, guide in data["seeds"].items():
        numbers = [p["n"] for p in guide["procedures"]]
        if numbers != list(range(1, len(numbers) + 1)):
            found.append(f"{seed}: rows are not numbered 1..{len(numbers)}")
        for p in guide["procedures"]:
            where = f"{seed} #{p['n']}"
            status, refs = p.get("status"), p.get("by") or []
            if status not in STATUSES:
                found.append(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}")
            if status in ("full", "manual", "partial") and not refs:
                found.append(f"{where}: {status} but no runbook step named")
            if status in ("partial", "planning", "none") and not p.get("note"):
                found.append(f"{where}: {status} needs a note saying what is missing or why")
            manual = False
            for ref in refs:
                name, _, step = str(ref).partition(":")
                if name not in books:
                    found.append(f"{where}: no runbook {name!r} in runbooks/")
                elif step and step not in books[name]:
                    found.append(f"{where}: runbook {name} has no step {step!r}")
                elif step and "manual" in books[name][step]:
                    manual = True
            if status == "manual" and not manual:
                found.append(f"{where}: manual, but none of its steps is a `manual:` step")
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(data: dict[str, Any]) -> str:
    """The markdown drawn into the README: totals first, then a table per guide."""
    lines = ["| guide | procedures | " + " | ".join(STATUSES) + " |", "|---" * 7 + "|"]
    overall: Counter[str] = Counter()
    for seed, guide in data["seeds"].items():
        counts = Counter(p["status"] for p in guide["procedures"])
        overall.update(counts)
        cells = " | ".join(str(counts.get(s, 0)) for s in STATUSES)
        lines.append(f"| {seed} {guide['title']} | {len(guide['procedures'])} | {cells} |")
    total = sum(overall.values())
    cells = " | ".join(
        f"{overall.get(s, 0)} ({100 * overall.get(s, 0) // total} %)" for s in STATUSES
    )
    lines.append(f"| **all** | **{total}** | {cells} |")
    for seed, guide in data["seeds"].items():
        lines += ["", f"### {seed} {guide['title']}", ""]
        lines += ["| # | procedure | guide section | runbook: step | status | note |"]
        lines += ["|---|---|---|---|---|---|"]
        for p in guide["procedures"]:
            refs = ", ".join(f"`{r}`" for r in p.get("by") or []) or "—"
            lines.append(
                f"| {p['n']} | {_cell(p['what'])} | {_cell(p['section'])} | {refs} "
                f"| {p['status']} | {_cell(p.get('note', ''))} |"
            )
    return "\n".join(lines)


def main() -> int:
    data = yaml.safe_load(DATA.read_text())
    found = problems(data, library())
    readme = README.read_text()
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not (start and end):
        found.append(f"{README.name}: the coverage markers are missing")
    drawn = f"{head}{START}\n{table(data)}\n{END}{tail}"
    if "--write" in sys.argv[1:]:
        README.write_text(drawn)
    elif drawn != readme:
        found.append(
            f"{README.name}: the coverage table is stale (python3 scripts/coverage.py --write)"
        )
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
