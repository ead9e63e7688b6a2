"""`runbook run` and `runbook resume`: the two ways a run starts.

Both build their Run through engine/launch.py and wrap it in the same
recording, locking and reports (engine/history/session.py), so a run and its
resume cannot drift apart. Exit codes beyond a run's own (engine/exitcodes.py):
resume says 64 for an unknown run id or a secret that must be given again, 65
when the runbook's step ids changed since the run (nothing is executed), 4
while the original run is still alive.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from . import helptext
from .options import (
    Output,
    broker_option,
    capture_options,
    inventory_option,
    max_connections_option,
    output_options,
    timeout_option,
)

if TYPE_CHECKING:
    from engine.events import Processor
    from engine.execution.approvals import Operator
    from engine.execution.runner import Run
    from engine.format.model import Runbook, Step
    from engine.history.store import HistoryStore


@click.command("run", epilog=helptext.RUN)
@click.argument("runbook", type=click.Path(dir_okay=False))
@inventory_option()
@click.option("-l", "--limit", help="Further limit the selected hosts to a pattern.")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A runbook param."
)
@click.option(
    "-e", "--extra-vars", "extra", multiple=True, metavar="NAME=VALUE|@FILE", help="Override vars."
)
@click.option(
    "-C",
    "--check",
    "--dry-run",
    "dry_run",
    is_flag=True,
    help="Dry run: only steps that change nothing run; the others say what they would do.",
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
@click.option("--list-tags", is_flag=True, help="Print the tags steps carry, and exit.")
@click.option(
    "--incident",
    metavar="ID",
    help="Tag the run with an incident id: `runbook history --incident ID` shows its runs.",
)
@timeout_option
@broker_option
@capture_options("default 1MiB")
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
    list_tags: bool,
    incident: str | None,
    timeout: float | None,
    broker: str | None,
    output_limit: int | None,
    keep_output: bool | None,
    output: Output,
) -> None:
    """Run RUNBOOK against the selected hosts."""
    from engine import launch
    from engine.connections.output import DEFAULT_LIMIT
    from engine.execution.context import RunOptions
    from engine.format.loader import load_runbook
    from engine.format.params import parse_assignments, resolve_params

    rb = load_runbook(runbook)
    inventory, hosts = launch.select_hosts(rb, inventory_path, limit)
    resolved = resolve_params(rb.params, parse_assignments(params, "-p"))
    launch.check_named_steps(rb, start_at=start_at, approve=approve)
    if list_hosts:
        for h in hosts:
            click.echo(f"{h.name}\t{h.connection}\t{h.address}")
        return
    if list_steps:
        _print_steps(rb)
        return
    if list_tags:
        _print_tags(rb)
        return
    options = RunOptions(
        dry_run=dry_run,
        forks=forks,
        max_connections=max_connections,
        tags=launch.split_tags(tags),
        skip_tags=launch.split_tags(skip_tags),
        start_at=start_at,
        extra_vars=launch.parse_extra_vars(extra),
        output_limit=output_limit or DEFAULT_LIMIT,
        keep_output=launch.kept_output_dir() if keep_output else None,
        timeout=timeout,
        incident=incident,
    )
    processors = reporters(output)
    operator = launch.operator(output.operator, yes=yes, approve=approve, step_mode=step_mode)
    run = launch.build_run(
        rb,
        inventory,
        hosts,
        resolved,
        options,
        operator=with_console(operator, processors),
        processors=processors,
        secrets_file=output.secrets_file,
        broker=broker,
    )
    _execute(run, launch.recorded_options(options, limit), output)


@click.command("resume", epilog=helptext.RESUME)
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Approve every confirm: and manual step.")
@click.option("--approve", multiple=True, metavar="STEP_ID", help="Approve this step (repeatable).")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Give a param again (needed for secret params, which history does not keep).",
)
@click.option(
    "-e",
    "--extra-vars",
    "extra",
    multiple=True,
    metavar="NAME=VALUE|@FILE",
    help="Override vars (on top of the run's own -e values).",
)
@click.option(
    "--rerun-unknown",
    is_flag=True,
    help="Run again the steps whose start was recorded but not their end (they may have run).",
)
@click.option("-f", "--forks", type=click.IntRange(1, 1000), help="Default: the run's own.")
@max_connections_option
@timeout_option
@broker_option
@capture_options("default: the run's own")
@output_options("resuming")
def resume_command(
    run_id: str,
    yes: bool,
    approve: tuple[str, ...],
    params: tuple[str, ...],
    extra: tuple[str, ...],
    rerun_unknown: bool,
    forks: int | None,
    max_connections: int,
    timeout: float | None,
    broker: str | None,
    output_limit: int | None,
    keep_output: bool | None,
    output: Output,
) -> None:
    """Run RUN_ID's runbook again on its hosts, skipping the steps that succeeded."""
    from engine import launch
    from engine.format.params import parse_assignments
    from engine.history.location import open_history
    from engine.history.resume import prepare_resume

    store = open_history()
    try:
        plan = prepare_resume(
            store,
            run_id,
            params=parse_assignments(params, "-p"),
            extra_vars=launch.parse_extra_vars(extra),
        )
        rb = plan.runbook
        launch.check_named_steps(rb, approve=approve)
        inventory, hosts = launch.select_hosts(rb, plan.inventory_path, plan.limit)
        recorded = plan.recorded_options
        options = launch.options_from_record(
            recorded,
            forks=forks,
            max_connections=max_connections,
            extra_vars=plan.extra_vars,
            resume_results=plan.resume_results,
            resume_unknown={} if rerun_unknown else plan.unknown_steps,
            output_limit=output_limit,
            timeout=timeout,
        )
        if keep_output is not None:  # else the run's own choice
            options.keep_output = launch.kept_output_dir(keep_output)
        processors = reporters(output)
        operator = launch.operator(output.operator, yes=yes, approve=approve)
        run = launch.build_run(
            rb,
            inventory,
            hosts,
            plan.params,
            options,
            operator=with_console(operator, processors),
            processors=processors,
            secrets_file=output.secrets_file,
            resumed_from=plan.run["id"],
            broker=broker,
        )
        click.echo(plan.banner(run.inventory_digest, rerun_unknown), err=True)
        record = launch.recorded_options(options, recorded.get("limit"))
        _execute(run, record, output, store)
    finally:
        store.close()


def reporters(output: Output) -> list[Processor]:
    """What the operator sees on stdout: the live console, one JSON document, or
    one JSON line per event as it happens."""
    if output.fmt == "json":
        from engine.reports.jsonreport import JsonReport

        return [JsonReport(sys.stdout)]
    if output.fmt == "jsonl":
        from engine.reports.jsonl import JsonLines

        return [JsonLines(sys.stdout)]
    from engine.reports.console import PROGRESS_EVERY, ConsoleReport

    if output.quiet and output.verbose:
        raise click.UsageError("-q and -v say opposite things: give one")

    every = os.environ.get("RUNBOOK_PROGRESS_EVERY", "").strip()
    return [
        ConsoleReport(
            sys.stdout,
            verbosity=-1 if output.quiet else output.verbose,
            color=output.color,
            progress_every=0 if output.quiet else float(every) if every else PROGRESS_EVERY,
        )
    ]


def with_console(operator: Operator, processors: list[Processor]) -> Operator:
    """The operator's prompts take the console's status line off the screen."""
    from engine.reports.console import ConsoleReport

    for processor in processors:
        if isinstance(processor, ConsoleReport):
            operator.screen = processor.paused
    return operator


def _execute(
    run: Run,
    record: dict[str, Any],
    output: Output,
    store: HistoryStore | None = None,
) -> None:
    """Run it recorded, locked and reported; exit with its exit code."""
    from engine.execution.runner import run_runbook
    from engine.history.session import recorded_run
    from engine.launch import zone_notice

    notice = zone_notice(run.hosts, run.broker)
    if notice:
        click.echo(notice, err=True)
    if output.metrics_textfile:
        _metrics_textfile(run, output.metrics_textfile)
    if output.pushgateway:
        _pushgateway(run, output.pushgateway)
    with recorded_run(
        run, options=record, junit=output.junit, report=output.report, store=store
    ) as recorded:
        result = run_runbook(recorded)
    kept = run.options.keep_output
    if kept is not None and (kept / run.run_id).is_dir():
        click.echo(f"whole output of each command: {kept / run.run_id}/HOST/", err=True)
    sys.exit(result.exit_code)


def _metrics_textfile(run: Run, path: str) -> None:
    """Attach the textfile writer; a place it could never write to is a usage
    error now, not a lost file after the run."""
    from engine.errors import UsageError
    from engine.reports.prometheus import MetricsTextfile

    writer = MetricsTextfile(path)
    folder = writer.target(run.runbook.name).parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"--metrics-textfile {path}: {folder} is not a writable directory")
    run.processors.append(writer)


def _pushgateway(run: Run, url: str) -> None:
    """Attach the push; a URL that could never work is a usage error now."""
    from engine.errors import UsageError
    from engine.redaction import redact_dsn
    from engine.reports.prometheus import Pushgateway

    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--pushgateway {redact_dsn(url)}: give an http:// or https:// URL")
    run.processors.append(Pushgateway(url))


def _print_steps(rb: Runbook) -> None:
    def show(steps: list[Step], depth: int) -> None:
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


def _print_tags(rb: Runbook) -> None:
    """Each tag with the steps that carry it, as `--tags` and `--skip-tags` select them."""
    tagged: dict[str, list[str]] = {}
    for step in rb.all_steps():
        for tag in step.common.tags:
            tagged.setdefault(tag, []).append(step.id)
    for tag in sorted(tagged):
        click.echo(f"{tag}\t{', '.join(tagged[tag])}")
