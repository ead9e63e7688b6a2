"""The `runbook` command group: how every command's errors become exit codes.

Commands are thin: parse flags, call the engine, print. An EngineError becomes
its own exit code with the message on stderr; anything else is a bug (exit 70).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from engine import exitcodes
from engine.errors import EngineBug, EngineError, InvalidError

from . import helptext


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
        except click.UsageError as exc:  # click's own exit code is 2, which means `critical` here
            exc.show()
            sys.exit(exitcodes.USAGE)
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
    package = Path(__file__).resolve().parents[1]  # engine/
    try:
        shown = str(Path("engine") / path.resolve().relative_to(package))
    except ValueError:
        shown = path.name
    return f"{shown}:{tb.tb_lineno}"


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=helptext.MAIN
)
@click.version_option(package_name="runbook-engine", prog_name="runbook")
def main() -> None:
    """Declarative runbooks for SREs: checks with thresholds, approvals, audit history."""
