"""Commands about runbook files, not runs: check, list, show, schema, cron."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine import exitcodes
from engine.errors import InvalidError, Problem

from . import helptext
from .options import inventory_option

if TYPE_CHECKING:
    from engine.format.model import Runbook


@click.command("check", epilog=helptext.CHECK)
@click.argument("runbooks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@inventory_option("Also validate this inventory.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
    help="text for people; json, one document for tools; github, GitHub Actions annotations.",
)  # fmt: skip
def check_command(runbooks: tuple[str, ...], inventory_path: str | None, fmt: str) -> None:
    """Validate RUNBOOKS (and an inventory): exit 0, or 65 with every problem.
    Lint warnings are shown but leave the exit code at 0."""
    checked = _check_files(runbooks, inventory_path)
    if fmt == "json":
        click.echo(json.dumps(_check_document(checked), indent=2))
    elif fmt == "github":
        for line in _check_annotations(checked):
            click.echo(line)
    else:
        _print_check_text(checked)
    sys.exit(exitcodes.INVALID if any(c.error for c in checked) else exitcodes.OK)


# Bumped when a field of `check --format json` changes meaning or goes away.
CHECK_SCHEMA_VERSION = 1


@dataclass
class _Checked:
    """One file `check` read: its error (every Problem), or the runbook it loaded."""

    path: str
    kind: str  # runbook | inventory
    error: InvalidError | None = None
    runbook: Runbook | None = None


def _check_files(runbooks: tuple[str, ...], inventory_path: str | None) -> list[_Checked]:
    from engine.format.loader import load_runbook

    checked: list[_Checked] = []
    if inventory_path:
        from engine.inventory.loader import load_inventory

        try:
            load_inventory(inventory_path)
            checked.append(_Checked(inventory_path, "inventory"))
        except InvalidError as exc:
            checked.append(_Checked(inventory_path, "inventory", error=exc))
    for path in runbooks:
        try:
            checked.append(_Checked(path, "runbook", runbook=load_runbook(path)))
        except InvalidError as exc:
            checked.append(_Checked(path, "runbook", error=exc))
    return checked


def _print_check_text(checked: list[_Checked]) -> None:
    from engine.format.lint import lint

    for c in checked:
        if c.error:
            click.echo(str(c.error), err=True)
        elif c.runbook is None:
            click.echo(f"ok       {c.path}")
        else:
            click.echo(f"ok       {c.path}  ({len(c.runbook.all_steps())} steps)")
            for w in lint(c.runbook):
                click.echo(f"  warning: {w}")


def _problems(c: _Checked) -> list[tuple[str, Problem]]:
    """(severity, problem) of one file: its errors, or the lint warnings of its runbook."""
    from engine.format.lint import lint_problems

    found = [("error", p) for p in c.error.problems] if c.error else []
    if c.runbook is not None:
        found += [("warning", p) for p in lint_problems(c.runbook)]
    return found


def _check_document(checked: list[_Checked]) -> dict[str, Any]:
    files = []
    for c in checked:
        problems = _problems(c)
        files.append(
            {
                "path": c.path,
                "kind": c.kind,
                "ok": c.error is None,
                "steps": len(c.runbook.all_steps()) if c.runbook else None,
                "errors": [_problem_json(s, p) for s, p in problems if s == "error"],
                "warnings": [_problem_json(s, p) for s, p in problems if s == "warning"],
            }
        )
    ok = all(c.error is None for c in checked)
    return {"schema_version": CHECK_SCHEMA_VERSION, "ok": ok, "files": files}


def _problem_json(severity: str, p: Problem) -> dict[str, Any]:
    # 0 means "not known" in a Location; a tool reads null more safely than 0.
    return {
        "file": p.location.file,
        "line": p.location.line or None,
        "column": p.location.column or None,
        "field": p.path,
        "message": p.message,
        "hint": p.hint,
        "severity": severity,
    }


def _check_annotations(checked: list[_Checked]) -> list[str]:
    """GitHub Actions workflow commands: each problem shows on its line of the diff."""
    lines = []
    for c in checked:
        for severity, p in _problems(c):
            props = {"file": p.location.file}
            if p.location.line:
                props["line"] = str(p.location.line)
            if p.location.column:
                props["col"] = str(p.location.column)
            props["title"] = "runbook check"
            text = f"{p.path}: {p.message}" if p.path else p.message
            text += f" ({p.hint})" if p.hint else ""
            head = ",".join(f"{k}={_escape_property(v)}" for k, v in props.items())
            lines.append(f"::{severity} {head}::{_escape_data(text)}")
        if c.error is None:
            steps = f"  ({len(c.runbook.all_steps())} steps)" if c.runbook else ""
            lines.append(f"ok       {c.path}{steps}")
    return lines


def _escape_data(text: str) -> str:
    """A workflow command's message: a newline would end the command early."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A property value: also `:` and `,`, which end the value."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


@click.command("list", epilog=helptext.LIST)
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def list_command(directory: str | None, fmt: str) -> None:
    """The runbook catalogue of DIRECTORY: emergency first, then by name."""
    from engine.format.catalog import catalogue

    root = (
        Path(directory)
        if directory
        else (Path("runbooks") if Path("runbooks").is_dir() else Path("."))
    )
    entries = catalogue(root)
    if fmt == "json":
        click.echo(json.dumps([{**e.__dict__, "path": str(e.path)} for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"no runbooks under {root}")
        return
    if not sys.stdout.isatty():
        # Piped: whole names and paths, tab-separated for cut/awk, never cut to a width.
        click.echo("kind\trunbook\tschedule\tdescription\tpath")
        for e in entries:
            desc = e.error if e.error else e.description
            click.echo(f"{e.kind}\t{e.name}\t{e.schedule or ''}\t{desc}\t{e.path}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("kind", "runbook", "schedule", "description", "path"):
        table.add_column(col)
    for e in entries:
        style = {"emergency": "bold red", "invalid": "magenta"}.get(e.kind, "")
        desc = e.error if e.error else e.description
        table.add_row(e.kind, e.name, e.schedule or "", desc, str(e.path), style=style)
    Console(soft_wrap=True).print(table)


@click.command("show", epilog=helptext.SHOW)
@click.argument("runbook", type=click.Path(dir_okay=False))
def show_command(runbook: str) -> None:
    """RUNBOOK as a readable checklist (markdown)."""
    from engine.format.catalog import show_markdown
    from engine.format.loader import load_runbook

    click.echo(show_markdown(load_runbook(runbook)), nl=False)


@click.command("schema", epilog=helptext.SCHEMA)
@click.option(
    "--output",
    "what",
    type=click.Choice(["runbook", "run", "event"]),
    default="runbook",
    show_default=True,
    help="runbook: the runbook format (for the YAML language server); run: the "
    "`--format json` document; event: one `--format jsonl` line.",
)
def schema_command(what: str) -> None:
    """JSON Schema of the runbook format, or of the engine's machine output."""
    if what == "runbook":
        from engine.format.schema import runbook_schema

        click.echo(json.dumps(runbook_schema(), indent=2))
        return
    from engine.reports.run_schema import SCHEMAS

    click.echo(json.dumps(SCHEMAS[what](), indent=2))


@click.command("cron", epilog=helptext.CRON)
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@inventory_option("Run the scheduled runbooks against this inventory.")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
    help="A param for the runbooks that declare it (repeatable).",
)  # fmt: skip
@click.option(
    "--systemd",
    "systemd_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Write a .service and a .timer per scheduled runbook into DIR instead.",
)
@click.option(
    "--secrets",
    "secrets_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="The secrets file each run reads (its path goes into the lines, never a value).",
)
def cron_command(
    directory: str | None,
    inventory_path: str | None,
    params: tuple[str, ...],
    systemd_dir: str | None,
    secrets_file: str | None,
) -> None:
    """Crontab lines (or systemd timers) for every runbook in DIRECTORY that has
    a schedule, running the installed `runbook` by its absolute path."""
    from engine.format.catalog import cron_lines
    from engine.format.params import parse_assignments

    root = Path(directory) if directory else Path("runbooks")
    given = parse_assignments(params, "-p")
    command = _runbook_command()
    if systemd_dir:
        _write_systemd(root, Path(systemd_dir), command, inventory_path, given, secrets_file)
        return
    lines = cron_lines(
        root, command, inventory=inventory_path, params=given, secrets_file=secrets_file
    )
    for line in lines:
        click.echo(line)


def _runbook_command() -> list[str]:
    """The installed `runbook` by its absolute path: cron's PATH is short."""
    import shutil
    import sys

    found = shutil.which("runbook")
    return [str(Path(found).resolve())] if found else [sys.executable, "-m", "engine"]


def _write_systemd(
    root: Path,
    out: Path,
    command: list[str],
    inventory: str | None,
    params: dict[str, str],
    secrets_file: str | None,
) -> None:
    from engine.format.catalog import scheduled
    from engine.format.schedule import ScheduleError, systemd_units

    items = scheduled(root, command, inventory, params, secrets_file)  # refusals before writing
    out.mkdir(parents=True, exist_ok=True)
    for item in items:
        if item.needs:
            click.echo(f"skipped {item.entry.name}: add {', '.join(item.needs)}", err=True)
            continue
        try:
            units = systemd_units(
                item.entry.name, item.entry.description, str(item.entry.schedule), item.words
            )
        except ScheduleError as exc:
            click.echo(f"skipped {item.entry.name}: {exc}", err=True)
            continue
        for filename, text in units.items():
            (out / filename).write_text(text)
            click.echo(f"wrote {out / filename}")
