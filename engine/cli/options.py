"""Options that `runbook run` and `runbook resume` share: how a run reports and
who runs it. One definition, so the two commands cannot drift apart."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Output:
    """What the output options say, handed to a command as one `output` argument."""

    fmt: str  # text | json
    junit: str | None  # a JUnit XML file to write too
    report: str | None  # an HTML report to write too
    metrics_textfile: str | None  # Prometheus text for node_exporter's textfile collector
    pushgateway: str | None  # a Prometheus Pushgateway to PUT the same text to
    operator: str | None  # who is running it
    secrets_file: str | None
    verbose: int
    quiet: bool  # -q: failures, thresholds crossed and the recap only
    color: bool | None  # --color/--no-color; None: NO_COLOR, FORCE_COLOR, a terminal


def output_options(who: str) -> Callable[[F], F]:
    """--format, --junit, --report, --metrics-textfile, --operator, --secrets, -v, --color,
    as `output: Output`."""

    def apply(command: F) -> F:
        @functools.wraps(command)
        def fn(*args: Any, **kwargs: Any) -> Any:
            given = {f.name: kwargs.pop(f.name) for f in fields(Output)}
            return command(*args, output=Output(**given), **kwargs)

        decorators = [
            click.option(
                "--format", "fmt", type=click.Choice(["text", "json", "jsonl"]), default="text"
            ),
            click.option("--junit", metavar="PATH", help="Also write the run as JUnit XML."),
            click.option(
                "--report", metavar="PATH.html", help="Also write a self-contained HTML report."
            ),
            click.option(
                "--metrics-textfile",
                metavar="PATH",
                help="Also write the thresholds and outcome for node_exporter's textfile "
                "collector (a directory: runbook_NAME.prom in it).",
            ),
            click.option(
                "--pushgateway",
                metavar="URL",
                envvar="RUNBOOK_PUSHGATEWAY",
                help="Also push those metrics to a Prometheus Pushgateway "
                "(job=runbook, runbook=NAME); a failed push is a warning.",
            ),
            click.option(
                "--operator", help=f"Who is {who} (default: $RUNBOOK_OPERATOR or login name)."
            ),
            click.option(
                "--secrets",
                "secrets_file",
                type=click.Path(dir_okay=False),
                help="YAML file of secrets.",
            ),
            click.option("-v", "--verbose", count=True, help="More detail (-vv: output too)."),
            click.option(
                "-q",
                "--quiet",
                is_flag=True,
                help="Only failures, thresholds crossed and the recap (for cron mail).",
            ),
            click.option(
                "--color/--no-color",
                default=None,
                help="Draw colours or not (default: on a terminal, unless NO_COLOR is set).",
            ),
        ]
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return cast(F, fn)

    return apply


broker_option = click.option(
    "--broker",
    metavar="URL",
    envvar="RUNBOOK_BROKER",
    help="Send hosts with a `zone:` to `runbook worker --zone ZONE` processes through "
    "this Celery broker (redis://... or amqp://...); see docs/distributed.md.",
)

max_connections_option = click.option(
    "--max-connections",
    default=256,
    show_default=True,
    type=click.IntRange(1, 100_000),
    envvar="RUNBOOK_MAX_CONNECTIONS",
    help="Host connections open at once (at least --forks); more hosts reconnect in turn.",
)


def parse_timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--timeout: a duration as the runbook format writes one (90, 30s, 15m, 2h)."""
    if value is None:
        return None
    from engine.format.model import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r}: a run's timeout must be more than 0")
    return seconds


timeout_option = click.option(
    "--timeout",
    callback=parse_timeout,
    metavar="DURATION",
    help="The whole run's budget (e.g. 15m), over the runbook's `timeout:`; when it "
    "passes, running steps are killed and the run fails (exit 3).",
)


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A byte count: `1048576`, `512k`, `1MiB`, `2M` (binary units), at least 1 KiB."""
    if value is None:
        return None
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    number = text.rstrip("kmg")
    unit = text[len(number) :]
    if unit not in _UNITS or not number.isdigit():
        raise click.BadParameter(f"{value!r} is not a size (e.g. 1048576, 512KiB, 4MiB)")
    size = int(number) * _UNITS[unit]
    if size < 1024:
        raise click.BadParameter(f"{value!r} is under 1 KiB: too little to show a failure")
    return size


def capture_options(default_note: str) -> Callable[[F], F]:
    """--output-limit and --keep-output: what a run keeps of commands' output."""

    def apply(command: F) -> F:
        command = click.option(
            "--keep-output/--no-keep-output",
            default=None,
            help="Also write each command's whole output (redacted) under "
            "$RUNBOOK_HOME/output/RUN_ID/HOST/.",
        )(command)
        return click.option(
            "--output-limit",
            callback=parse_size,
            metavar="SIZE",
            help="Bytes of each output stream a step keeps: its head and tail, the "
            f"middle counted and left out ({default_note}).",
        )(command)

    return apply


def _one_inventory(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> str | None:
    """Every -i, in order, as one comma-separated source list (later sources win,
    as with ansible-playbook -i a -i b); $RUNBOOK_INVENTORY when none is given,
    comma-separated like $ANSIBLE_INVENTORY. One string, so that run, resume
    and cron carry several sources as they carry one."""
    import os

    if not value:
        return os.environ.get("RUNBOOK_INVENTORY", "").strip() or None
    for given in value:
        if not given.strip():
            raise click.BadParameter("an empty inventory path")
    return ",".join(value)


def inventory_option(
    help: str = "Inventory (default: $RUNBOOK_INVENTORY, else localhost).",
) -> Callable[[F], F]:
    """-i/--inventory: repeatable; a file, a directory, a script or a comma list."""
    more = (
        " A file, a directory or an executable script; repeat -i (or separate by commas)"
        " to merge several, later ones winning."
    )
    if "default" not in help.lower():
        more += " Default: $RUNBOOK_INVENTORY."
    return click.option(
        "-i",
        "--inventory",
        "inventory_path",
        multiple=True,
        callback=_one_inventory,
        help=help + more,
    )
