"""The runbook library as people browse it: `list`, `show`, `cron`."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidError, UsageError
from engine.steps.base import get_step_type

from .loader import load_runbook
from .model import LoopUntil, Runbook, Step, StepCommon

_RAW_MARK = re.compile(r"\{%-?\s*(?:end)?raw\s*-?%\}")


@dataclass
class Entry:
    path: Path
    name: str
    kind: str
    description: str
    schedule: str | None
    owner: str | None
    tags: list[str]
    error: str | None = None


def find_runbooks(directory: Path) -> list[Path]:
    """YAML files under `directory` whose top level has a `runbook:` key, less
    `runbook test` cases files (a top-level `cases:`), which name the runbook
    they test by the same key."""
    out = []
    for path in sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")]):
        try:
            head = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        lines = head.splitlines()
        if any(ln.startswith("runbook:") for ln in lines) and not any(
            ln.startswith("cases:") for ln in lines
        ):
            out.append(path)
    return out


def catalogue(directory: Path) -> list[Entry]:
    """Every runbook under `directory`: emergency first, then by name."""
    entries = []
    for path in find_runbooks(directory):
        try:
            rb = load_runbook(path)
        except InvalidError as exc:
            first = exc.problems[0].render().splitlines()[0] if exc.problems else str(exc)
            entries.append(Entry(path, path.stem, "invalid", "", None, None, [], error=first))
            continue
        h = rb.header
        entries.append(
            Entry(path, h.runbook, h.kind, h.description, h.schedule, h.owner, list(h.tags))
        )
    order = {"emergency": 0, "routine": 1, "invalid": 2}
    return sorted(entries, key=lambda e: (order.get(e.kind, 3), e.name))


def show_markdown(rb: Runbook) -> str:
    """The runbook as a checklist an on-call engineer can follow or paste."""
    h = rb.header
    lines = [f"# {h.runbook}", ""]
    if h.description:
        lines += [h.description.strip(), ""]
    facts = [f"**kind:** {h.kind}", f"**hosts:** `{h.hosts}`"]
    if h.owner:
        facts.append(f"**owner:** {h.owner}")
    if h.schedule:
        facts.append(f"**schedule:** `{h.schedule}`")
    if h.serial is not None:
        facts.append(f"**serial:** {h.serial}")
    if h.max_fail is not None:
        facts.append(f"**max_fail:** {h.max_fail}")
    if h.tags:
        facts.append("**tags:** " + ", ".join(h.tags))
    lines += [" · ".join(facts), ""]
    if h.params:
        lines += [
            "## Parameters",
            "",
            "| name | type | default | required | description |",
            "|---|---|---|---|---|",
        ]
        for name, p in h.params.items():
            default = "" if p.default is None else f"`{_cell(str(p.default))}`"
            required = "yes" if p.required else ""
            cells = f"| `{name}` | {p.type} | {default} | {required} | {_cell(p.description)} |"
            lines.append(cells)
        lines.append("")
    lines += ["## Steps", ""]
    _steps(rb.steps, lines, 0)
    if rb.rescue:
        lines += ["", "## If a step fails (rescue)", ""]
        _steps(rb.rescue, lines, 0)
    if rb.always:
        lines += ["", "## Always, at the end", ""]
        _steps(rb.always, lines, 0)
    return "\n".join(lines).rstrip() + "\n"


def _steps(steps: list[Step], lines: list[str], depth: int) -> None:
    pad = "   " * depth
    for n, step in enumerate(steps, 1):
        c = step.common
        flags = []
        if c.confirm:
            flags.append("⚠ needs approval")
        if c.run_once:
            flags.append("run once")
        if c.ignore_errors:
            flags.append("errors ignored")
        if c.sensitive:
            flags.append("sensitive")
        suffix = f" — {', '.join(flags)}" if flags else ""
        lines.append(f"{pad}{n}. [ ] **{c.name}** (`{step.id}`, {step.type}){suffix}")
        detail = pad + "   "
        if c.description:
            lines.append(f"{detail}{c.description.strip()}")
        if c.when is not None:
            lines.append(f"{detail}- only when: `{c.when}`")
        if c.confirm:
            lines.append(f"{detail}- asks: _{c.confirm}_")
        if step.type == "manual" and isinstance(step.body, dict):
            instructions = _RAW_MARK.sub("", str(step.body.get("instructions", "")))
            for text in instructions.strip().splitlines():
                lines.append(f"{detail}> {text}")
        elif step.type not in ("block",):
            described = _describe(step)
            if "\n" in described:  # a script: every line, as a code block
                lines.append(f"{detail}- runs:")
                lines.extend(f"{detail}      {line}" for line in described.splitlines())
            elif described:
                lines.append(f"{detail}- `{described}`")
        if c.loop is not None:
            lines.append(f"{detail}- {_loop_text(c)}")
        for name, th in c.thresholds.items():
            bounds = ", ".join(
                x
                for x in (
                    f"warn {th.warn}" if th.warn else "",
                    f"critical {th.critical}" if th.critical else "",
                )
                if x
            )
            lines.append(f"{detail}- threshold **{name}**: `{th.value}` ({bounds})")
        retry = _retry_text(step)
        if retry:
            lines.append(f"{detail}- {retry}" + (f" until `{c.until}`" if c.until else ""))
        if step.type == "block":
            _steps(step.children.get("steps", []), lines, depth + 1)
            if step.children.get("rescue"):
                lines.append(f"{detail}- on failure:")
                _steps(step.children["rescue"], lines, depth + 1)
            if step.children.get("always"):
                lines.append(f"{detail}- always:")
                _steps(step.children["always"], lines, depth + 1)


def _retry_text(step: Step) -> str:
    """The retry as written: a templated value shows its template, not a default."""
    if step.retry_template is not None:
        values = ", ".join(f"{k}: {v}" for k, v in step.retry_template.items())
        return f"retry ({values})"
    retry = step.common.retry
    return f"retry {retry.attempts}× every {retry.delay:g}s" if retry else ""


def _loop_text(common: StepCommon) -> str:
    loop = common.loop
    var = f" as `{common.loop_var}`"
    if isinstance(loop, LoopUntil):
        return f"again until `{loop.until}` (at most {loop.max} times)"
    if isinstance(loop, list):
        return f"for each of {', '.join(f'`{item}`' for item in loop)}{var}"
    return f"for each of `{loop}`{var}"


def _describe(step: Step) -> str:
    """What the step runs, every line of it, whole: a checklist is pasted."""
    stype = get_step_type(step.type)
    if step.spec is not None:
        text = stype.describe(step.spec)
    elif isinstance(step.body, dict):
        # Templated body: show its most telling field as written.
        for key in ("cmd", "argv", "query", "url", "command", "action", "message", "runbook"):
            if key in step.body:
                value = step.body[key]
                if key == "argv" and isinstance(value, list):
                    # Quoted as a shell would need it: `sh -c 'a; b' sh ARG`,
                    # not words that read as another command.
                    text = "$ " + shlex.join(map(str, value))
                else:
                    text = f"{key}: {value}"
                break
        else:
            text = ""
    else:
        text = str(step.body)
    # `{% raw %}` only keeps Jinja off text such as docker's `{{.Name}}`:
    # the person reading the checklist types the text without it.
    text = _RAW_MARK.sub("", text)
    return text.strip()


@dataclass
class Scheduled:
    """One scheduled runbook as `runbook cron` prints it: the command, or what it needs."""

    entry: Entry
    words: list[str]
    needs: list[str]


def scheduled(
    directory: Path,
    runbook_cmd: list[str],
    inventory: str | None = None,
    params: dict[str, str] | None = None,
    secrets_file: str | None = None,
) -> list[Scheduled]:
    """Every valid runbook with a `schedule`, with the command that runs it.

    `params` go to the runbooks that declare them. A command that could not run
    as printed (a required param has no value, or the runbook targets inventory
    hosts and no inventory was given) says what it needs instead: cron would
    only mail its exit 64."""
    params = params or {}
    out = []
    for entry in catalogue(directory):
        if not entry.schedule or entry.kind == "invalid":
            continue
        runbook = load_runbook(entry.path)
        words = [*runbook_cmd, "run", str(entry.path.resolve())]
        if inventory:
            words += ["-i", str(Path(inventory).resolve())]
        if secrets_file:
            words += ["--secrets", str(Path(secrets_file).resolve())]
        words.append("--yes")
        for name, param in runbook.params.items():
            if name in params and param.secret:
                raise UsageError(
                    f"-p {name}: a secret param of {runbook.name} is not written into a "
                    "schedule (crontab -l and the unit files show it, cron mails the command "
                    f"line): have the runbook read secret('{name}') and give --secrets FILE"
                )
            if name in params:
                words += ["-p", f"{name}={params[name]}"]
        missing = [
            name
            for name, p in runbook.params.items()
            if p.required and p.default is None and name not in params
        ]
        needs = [f"-p {name}=..." for name in missing]
        if not inventory and runbook.header.hosts not in ("all", "localhost"):
            needs.append(f"-i INVENTORY (hosts: {runbook.header.hosts})")
        out.append(Scheduled(entry, words, needs))
    return out


def cron_lines(
    directory: Path,
    runbook_cmd: list[str] | None = None,
    inventory: str | None = None,
    params: dict[str, str] | None = None,
    secrets_file: str | None = None,
) -> list[str]:
    """Crontab lines for every valid runbook that has a `schedule`; one that
    could not run as printed is commented out, saying what to add."""
    out = []
    runbook_cmd = runbook_cmd or ["runbook"]
    for item in scheduled(directory, runbook_cmd, inventory, params, secrets_file):
        line = f"{item.entry.schedule} {shlex.join(item.words)}"
        if item.needs:
            out.append(
                f"# {line}  # {item.entry.name}: add {', '.join(item.needs)}, then uncomment"
            )
        else:
            out.append(f"{line}  # {item.entry.name}")
    return out


def _cell(text: str) -> str:
    """Text inside a markdown table cell: a `|` would end the cell, a newline the row."""
    return text.replace("|", "\\|").replace("\n", " ")
