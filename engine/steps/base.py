"""The base class of every step type, built-in or third-party, and their registry.

A step type owns three things: the pydantic model of its body (`Spec`), how to
run a rendered body (`run`), and whether a body is safe to run under --dry-run
(`dry_run_safe`). Everything around it (when, retry/until, timeout, thresholds,
failed_when, events, history) belongs to the executor, so a new step type is a
small class::

    class Ping(StepType):
        name = "ping"

        class Spec(StepSpec):
            target: str

        def run(self, spec, ctx):
            out = ctx.connection.run(Command(argv=["ping", "-c1", spec.target]), ctx.timeout)
            return {"rc": out.rc}

Third-party packages publish theirs under the entry-point group
`runbook_engine.steps` (name = step type key, value = the class).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from engine.connections.output import OutputSpec
from engine.registry import Registry

if TYPE_CHECKING:
    from engine.connections.base import Connection
    from engine.inventory.host import Host
    from engine.redaction import Redactor


class StepSpec(BaseModel):
    """Base of every step body model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@dataclass
class StepContext:
    """What a running step may use. Built by the executor for each attempt."""

    host: Host
    step_id: str
    timeout: float | None
    dry_run: bool
    redactor: Redactor
    get_connection: Callable[[], Connection]
    variables: dict[str, Any] = field(default_factory=dict)  # the host's `vars`, writable by `set`
    template_context: Mapping[str, Any] = field(default_factory=dict)
    emit_log: Callable[[str, str], None] = lambda level, message: None
    operator: Any = None  # engine.execution.approvals.Operator: prompts, acknowledgements
    interrupted: Callable[[], bool] = lambda: False
    sleep: Callable[[float], bool] = lambda seconds: False  # True when interrupted
    # Runs an earlier step of this host again and returns its result (for `wait`).
    rerun: Callable[[str], dict[str, Any]] | None = None
    # `with ctx.cancellable(fn) as cancelled:` around a wait on another server (a
    # query): the operator's second Ctrl-C sets `cancelled`, then calls fn (from
    # another thread) to stop the work there.
    cancellable: Callable[[Callable[[], None]], AbstractContextManager[threading.Event]] = (
        lambda cancel: nullcontext(threading.Event())
    )
    # What a command keeps of its output (connections/output.py).
    output: OutputSpec = field(default_factory=OutputSpec)
    # The wall clock, for ages and expiry (S3 objects, certificates); tests move it.
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def connection(self) -> Connection:
        """The host's connection, opened on first use and reused afterwards."""
        return self.get_connection()


class StepType:
    """Base class of every step type. Subclasses set `name` and `Spec`."""

    name: ClassVar[str]
    Spec: ClassVar[type[StepSpec]]
    # Body fields holding bare expressions: compiled as expressions, never rendered.
    expression_fields: ClassVar[frozenset[str]] = frozenset()
    # Body fields the executor handles itself (block steps): neither rendered nor checked.
    raw_fields: ClassVar[frozenset[str]] = frozenset()
    # Whether `result` may be used in expression_fields.
    result_in_expressions: ClassVar[bool] = False
    # Whether skipping it in a dry run leaves a change unmade: later failures may
    # then check that change and are not judged (docs/format.md). A step that
    # only asks a human (manual) changes nothing by being skipped.
    skipping_leaves_a_change: ClassVar[bool] = True

    def normalize(self, body: Any) -> Any:
        """Turn a shorthand body into the full mapping (e.g. `shell: "df -h"`)."""
        return body

    def run(self, spec: Any, ctx: StepContext) -> dict[str, Any]:
        raise NotImplementedError

    def dry_run_safe(self, spec: Any) -> bool:
        """True when running `spec` can change nothing, so --dry-run runs it for real."""
        return False

    def failure(self, spec: Any, data: dict[str, Any]) -> str | None:
        """Why a completed run counts as failed (None: it did not), unless failed_when says."""
        return None

    def describe(self, spec: Any) -> str:
        """One line shown by `runbook show` and by --dry-run for steps it does not run."""
        return ""


step_types: Registry[type[StepType]] = Registry("step type", "runbook_engine.steps")

# Built-ins, imported on first use so that `runbook --help` never imports
# psycopg, boto3 or httpx.
for _name, _path in {
    "shell": "engine.steps.shell:ShellStep",
    "sql": "engine.steps.sql:SqlStep",
    "redis": "engine.steps.redis:RedisStep",
    "http": "engine.steps.http:HttpStep",
    "s3": "engine.steps.s3:S3Step",
    "assert": "engine.steps.control:AssertStep",
    "set": "engine.steps.control:SetStep",
    "log": "engine.steps.control:LogStep",
    "wait": "engine.steps.control:WaitStep",
    "manual": "engine.steps.control:ManualStep",
    "include": "engine.steps.control:IncludeStep",
    "block": "engine.steps.control:BlockStep",
}.items():
    step_types.register_path(_name, _path)


_instances: dict[str, StepType] = {}


def get_step_type(name: str) -> StepType:
    """The (stateless, shared) instance of step type `name`. Raises RegistryError."""
    inst = _instances.get(name)
    if inst is None:
        cls = step_types.get(name)
        inst = _instances[name] = cls()
    return inst


def is_available(name: str) -> bool:
    try:
        get_step_type(name)
    except (ImportError, AttributeError):
        return False
    return True
