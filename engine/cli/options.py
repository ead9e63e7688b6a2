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
    operator: str | None  # who is running it
    secrets_file: str | None
    verbose: int


def output_options(who: str) -> Callable[[F], F]:
    """--format, --junit, --report, --operator, --secrets, -v, as `output: Output`."""

    def apply(command: F) -> F:
        @functools.wraps(command)
        def fn(*args: Any, **kwargs: Any) -> Any:
            given = {f.name: kwargs.pop(f.name) for f in fields(Output)}
            return command(*args, output=Output(**given), **kwargs)

        decorators = [
            click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text"),
            click.option("--junit", metavar="PATH", help="Also write the run as JUnit XML."),
            click.option(
                "--report", metavar="PATH.html", help="Also write a self-contained HTML report."
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
            click.option("-v", "--verbose", count=True),
        ]
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return cast(F, fn)

    return apply


max_connections_option = click.option(
    "--max-connections",
    default=256,
    show_default=True,
    type=click.IntRange(1, 100_000),
    envvar="RUNBOOK_MAX_CONNECTIONS",
    help="Host connections open at once (at least --forks); more hosts reconnect in turn.",
)
