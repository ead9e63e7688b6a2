"""The `runbook` command. Thin: parse flags, call the engine, map errors to exit codes.

Heavy modules (the executor's step types, paramiko, psycopg, boto3) are imported
inside the commands, so `runbook --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from engine import exitcodes
from engine.errors import EngineBug, EngineError, InvalidError, UsageError, did_you_mean

from .options import max_connections_option, output_options


class _Group(click.Group):
    """Turns EngineError into its exit code, with the message on stderr, and any
    other exception into exit 70: Python's own 1 would read as `warn` here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidError as exc:
            click.echo(str(exc), err=True)
            sys.exit(exc.exit_code)
        except EngineError as exc:
            if isinstance(exc, EngineBug):
                _debug_traceback(exc.__cause__ or exc)
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            exc.exit_code = exitcodes.USAGE
            raise
        except (click.ClickException, click.exceptions.Exit, click.Abort, EOFError):
            raise  # click's own: usage errors, exits, Ctrl-D at a prompt
        except BrokenPipeError:
            raise  # `runbook history | head`: click exits quietly
        except Exception as exc:  # a bug outside a run (a run records its own: EngineBug)
            _debug_traceback(exc)
            # Type and place only: the message may hold what it was working on, secrets too.
            click.echo(
                f"error: internal error: {type(exc).__name__} at {_where(exc)} (a bug in the "
                "engine; RUNBOOK_DEBUG=1 prints the traceback)",
                err=True,
            )
            sys.exit(EngineBug.exit_code)


def _debug_traceback(exc: BaseException) -> None:
    """With RUNBOOK_DEBUG=1, a bug's traceback (unredacted: for its developer)."""
    if os.environ.get("RUNBOOK_DEBUG"):
        import traceback

        traceback.print_exception(exc)


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame, relative to the engine package when inside it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    path = Path(tb.tb_frame.f_code.co_filename)
    package = Path(__file__).resolve().parent
    try:
        shown = str(Path("engine") / path.resolve().relative_to(package))
    except ValueError:
        shown = path.name
    return f"{shown}:{tb.tb_lineno}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runbook-engine", prog_name="runbook")
def main() -> None:
    """Declarative runbooks for SREs: checks with thresholds, approvals, audit history."""


def _load(path: str) -> Any:
    from engine.format.loader import load_runbook

    return load_runbook(path)


def _extra_vars(pairs: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if pair.startswith("@"):
            try:
                data = yaml.safe_load(Path(pair[1:]).read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise UsageError(f"-e {pair}: cannot read: {exc}") from None
            if not isinstance(data, dict):
                raise UsageError(f"-e {pair}: the file must hold a mapping")
            out.update(data)
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"-e expects NAME=VALUE or @file.yaml, got {pair!r}")
        try:
            out[name] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[name] = value
    return out


def _select_hosts(
    runbook: Any, inventory_path: str | None, limit: str | None
) -> tuple[Any, list[Any]]:
    if inventory_path is None:
        # The default inventory is this machine: a runbook written for `databases`
        # runs here, as an SRE on the box would expect.
        from engine.inventory.host import localhost

        hosts = [localhost()]
        if limit and limit not in ("all", "*", "localhost", "127.0.0.1"):
            raise UsageError(
                f"--limit {limit!r} matches no host of the default inventory (localhost)"
            )
        return None, hosts
    from engine.inventory.loader import load_inventory

    inventory = load_inventory(inventory_path)
    hosts = inventory.select_hosts(runbook.header.hosts, limit)
    if not hosts:
        raise UsageError(f"no hosts matched: hosts={runbook.header.hosts!r} limit={limit!r}")
    return inventory, hosts


def _split_tags(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(t.strip() for v in values for t in v.split(",") if t.strip())


@main.command("run")
@click.argument("runbook", type=click.Path(dir_okay=False))
@click.option("-i", "--inventory", "inventory_path", help="Inventory file (default: localhost).")
@click.option("-l", "--limit", help="Further limit the selected hosts to a pattern.")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A runbook param."
)
@click.option(
    "-e", "--extra-vars", "extra", multiple=True, metavar="NAME=VALUE|@FILE", help="Override vars."
)
@click.option(
    "--dry-run", "--check", "dry_run", is_flag=True, help="Run only steps that change nothing."
)
@click.option("-f", "--forks", default=10, show_default=True, type=click.IntRange(1, 1000))
@max_connections_option
@click.option("--yes", is_flag=True, help="Approve every confirm: and manual step.")
@click.option("--approve", multiple=True, metavar="STEP_ID", help="Approve this step (repeatable).")
@click.option("--step", "step_mode", is_flag=True, help="Ask before every step.")
@click.option("-t", "--tags", multiple=True, help="Only steps with these tags (comma-separated).")
@click.option("--skip-tags", multiple=True, help="Skip steps with these tags.")
@click.option("--start-at", metavar="STEP_ID", help="Skip the steps before this one.")
@click.option("--list-hosts", is_flag=True, help="Print the hosts that would run, and exit.")
@click.option("--list-steps", is_flag=True, help="Print the steps that would run, and exit.")
@output_options("running this")
def run_command(
    runbook: str,
    inventory_path: str | None,
    limit: str | None,
    params: tuple[str, ...],
    extra: tuple[str, ...],
    dry_run: bool,
    forks: int,
    max_connections: int,
    yes: bool,
    approve: tuple[str, ...],
    step_mode: bool,
    tags: tuple[str, ...],
    skip_tags: tuple[str, ...],
    start_at: str | None,
    list_hosts: bool,
    list_steps: bool,
    fmt: str,
    junit: str | None,
    report: str | None,
    operator: str | None,
    secrets_file: str | None,
    verbose: int,
) -> None:
    """Run RUNBOOK against the selected hosts."""
    from engine.execution.approvals import Operator, operator_name
    from engine.execution.context import RunOptions
    from engine.execution.runner import Run, run_runbook
    from engine.format.params import parse_assignments, resolve_params
    from engine.history.session import recorded_options, recorded_run
    from engine.redaction import Redactor
    from engine.reports.console import ConsoleReport
    from engine.reports.jsonreport import JsonReport
    from engine.secrets import Secrets

    rb = _load(runbook)
    inventory, hosts = _select_hosts(rb, inventory_path, limit)
    resolved = resolve_params(rb.params, parse_assignments(params, "-p"))
    ids = rb.step_ids()
    if start_at and start_at not in ids:
        hint = did_you_mean(start_at, ids)
        raise UsageError(f"--start-at {start_at}: no such step id" + (f" ({hint})" if hint else ""))
    for step_id in approve:
        if step_id not in ids:
            raise UsageError(f"--approve {step_id}: no such step id in {rb.name}")
    if list_hosts:
        for h in hosts:
            click.echo(f"{h.name}\t{h.connection}\t{h.address}")
        return
    if list_steps:
        _print_steps(rb)
        return
    redactor = Redactor()
    secrets = Secrets(redactor, secrets_file)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    op = Operator(operator_name(operator), interactive, yes, frozenset(approve), step_mode)
    processors: list[Any] = []
    if fmt == "json":
        processors.append(JsonReport(sys.stdout))
    else:
        processors.append(ConsoleReport(sys.stdout, verbosity=verbose))
    options = RunOptions(
        dry_run=dry_run,
        forks=forks,
        max_connections=max_connections,
        tags=_split_tags(tags),
        skip_tags=_split_tags(skip_tags),
        start_at=start_at,
        extra_vars=_extra_vars(extra),
    )
    run = Run(
        runbook=rb,
        hosts=hosts,
        params=resolved,
        options=options,
        operator=op,
        processors=processors,
        redactor=redactor,
        secrets=secrets,
        inventory_name=str(Path(inventory_path).resolve()) if inventory_path else "localhost",
        inventory_digest=getattr(inventory, "digest", ""),
        resolve_host=getattr(inventory, "get", None),
    )
    # History, per-host locks and file reports: see engine/history/session.py.
    with recorded_run(
        run, options=recorded_options(options, limit), junit=junit, report=report
    ) as run:
        result = run_runbook(run)
    sys.exit(result.exit_code)


def _print_steps(rb: Any) -> None:
    def show(steps: list[Any], depth: int) -> None:
        for s in steps:
            tags = f"  [tags: {', '.join(s.common.tags)}]" if s.common.tags else ""
            click.echo(f"{'  ' * depth}{s.id}\t{s.type}\t{s.name}{tags}")
            for section in ("steps", "rescue", "always"):
                if s.children.get(section):
                    if section != "steps":
                        click.echo(f"{'  ' * (depth + 1)}({section})")
                    show(s.children[section], depth + 1)

    show(rb.steps, 0)
    for section in ("rescue", "always"):
        steps = getattr(rb, section)
        if steps:
            click.echo(f"({section})")
            show(steps, 1)


@main.command("check")
@click.argument("runbooks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-i", "--inventory", "inventory_path", help="Also validate this inventory.")
def check_command(runbooks: tuple[str, ...], inventory_path: str | None) -> None:
    """Validate RUNBOOKS (and an inventory): exit 0, or 65 with every problem."""
    from engine.format.lint import lint

    bad = 0
    if inventory_path:
        from engine.inventory.loader import load_inventory

        try:
            load_inventory(inventory_path)
            click.echo(f"ok       {inventory_path}")
        except InvalidError as exc:
            bad += 1
            click.echo(str(exc), err=True)
    for path in runbooks:
        try:
            rb = _load(path)
        except InvalidError as exc:
            bad += 1
            click.echo(str(exc), err=True)
            continue
        warnings = lint(rb)
        click.echo(f"ok       {path}  ({len(rb.all_steps())} steps)")
        for w in warnings:
            click.echo(f"  warning: {w}")
    sys.exit(exitcodes.INVALID if bad else exitcodes.OK)


@main.command("list")
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


@main.command("show")
@click.argument("runbook", type=click.Path(dir_okay=False))
def show_command(runbook: str) -> None:
    """RUNBOOK as a readable checklist (markdown)."""
    from engine.format.catalog import show_markdown

    click.echo(show_markdown(_load(runbook)), nl=False)


@main.command("schema")
def schema_command() -> None:
    """JSON Schema of the runbook format (for the YAML language server)."""
    from engine.format.schema import runbook_schema

    click.echo(json.dumps(runbook_schema(), indent=2))


@main.command("cron")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def cron_command(directory: str | None) -> None:
    """Crontab lines for every runbook in DIRECTORY that has a schedule."""
    from engine.format.catalog import cron_lines

    root = Path(directory) if directory else Path("runbooks")
    for line in cron_lines(root):
        click.echo(line)


# Commands that live in their own modules; imported here, cheaply (they import
# their heavy parts inside the command functions).
from .history import history_command, resume_command  # noqa: E402
from .inventory import inventory_command  # noqa: E402

for _command in (inventory_command, history_command, resume_command):
    main.add_command(_command)
