"""Every error the engine raises on purpose, and where it happened.

Callers catch one root class; the CLI turns each branch into an exit code.
Library exceptions (psycopg, redis, botocore, paramiko, httpx) are translated
into these at the boundary, so nothing above a step type or a connection has to
know which library was underneath::

    EngineError
     ├── UsageError                  exit 64: bad flags, unknown or missing param
     ├── InvalidError                exit 65: nothing was executed
     │    ├── RunbookInvalid         carries every Problem of a runbook file
     │    └── InventoryInvalid       carries every Problem of an inventory file
     ├── TemplateError               a template failed to render (names step + field)
     ├── StepError                   a step failed; becomes a `failed` StepResult
     │    ├── StepTimeout            (also a builtin TimeoutError)
     │    └── ServiceError           sql / redis / http / s3 said no
     ├── HostUnreachable             (also a builtin ConnectionError); `unreachable`
     ├── SecretError                 a secret is missing or its file is unsafe
     ├── RecordLost                  exit 64: the history could not keep an event
     └── Aborted                     exit 4: declined approval, Ctrl-C (max_fail: exit 3)

A `Problem` is one located complaint about an input file. Validation collects
all of them before raising, so an author fixes a file in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import exitcodes


@dataclass(frozen=True)
class Location:
    """Where in an input file something is: 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Problem:
    """One complaint about an input file, with enough context to fix it."""

    message: str
    location: Location
    path: str = ""  # field path, e.g. "steps[3].sql.query"
    hint: str = ""  # e.g. "did you mean `shell`?"
    snippet: str = ""  # the offending lines with a caret under the column

    def render(self) -> str:
        head = f"{self.location}: "
        if self.path:
            head += f"{self.path}: "
        text = head + self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.snippet:
            text += "\n" + self.snippet
        return text


def did_you_mean(word: object, candidates: Iterable[str], n: int = 1) -> str:
    """ "did you mean `shell`?" (or "`a` or `b`" with n > 1); "" when nothing is close.

    The one spelling of the hint, for Problem.hint and for UsageError messages.
    """
    close = difflib.get_close_matches(str(word), sorted(set(candidates)), n=n, cutoff=0.6)
    if not close:
        return ""
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""

    exit_code = exitcodes.FAILED


class EngineBug(EngineError):
    """Something the engine did not expect broke a run: a bug, not the operator's
    doing. Its own exit code, so automation cannot read it as `warn` (exit 1,
    what Python exits with on an uncaught exception) or as an operator's abort."""

    exit_code = exitcodes.INTERNAL


class UsageError(EngineError):
    """The operator asked for something impossible (flags, params)."""

    exit_code = exitcodes.USAGE


class InvalidError(EngineError):
    """An input file is wrong; nothing has been executed."""

    exit_code = exitcodes.INVALID

    def __init__(self, problems: list[Problem], what: str = "runbook") -> None:
        self.problems = problems
        self.what = what
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        body = "\n".join(p.render() for p in problems)
        super().__init__(f"{what} is invalid ({count} {noun}); nothing was executed\n{body}")


class RunbookInvalid(InvalidError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, "runbook")


class InventoryInvalid(InvalidError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, "inventory")


class TemplateError(EngineError):
    """A template or expression failed when rendered for a host."""

    def __init__(self, message: str, *, field: str = "", step: str = "") -> None:
        self.field = field
        self.step = step
        self.reason = message
        where = ".".join(x for x in (step, field) if x)
        super().__init__(f"{where}: {message}" if where else message)


class StepError(EngineError):
    """A step could not do its job. The executor records it as `failed`."""

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        # Whatever the step did produce before failing (rc, stdout, ...), so that
        # failed_when / rescue steps can still look at it.
        self.data = data or {}


class StepTimeout(StepError, TimeoutError):
    pass


class ServiceError(StepError):
    """A service (PostgreSQL, Redis, HTTP, S3) refused or failed the request."""

    def __init__(
        self, service: str, message: str, *, code: str = "", data: dict[str, Any] | None = None
    ) -> None:
        self.service = service
        self.code = code
        prefix = f"{service} error" + (f" [{code}]" if code else "")
        super().__init__(f"{prefix}: {message}", data=data)


class HostUnreachable(EngineError, ConnectionError):
    """The host's connection could not be opened (or broke for good)."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: unreachable: {message}")


class SecretError(EngineError):
    exit_code = exitcodes.USAGE


class RecordLost(EngineError):
    """The run history could not keep an event. The run starts nothing more (fail
    closed): a step whose start is not recorded could run twice on resume."""

    exit_code = exitcodes.USAGE


class Aborted(EngineError):
    """The run stops on purpose: declined approval, interrupt, max_fail."""

    exit_code = exitcodes.ABORTED
