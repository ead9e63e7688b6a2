"""`engine.run(...)`: a run from Python, prepared as `runbook run` prepares one.

`run_runbook(Run(...))` is the bare executor: it trusts its caller for params,
hosts and locks. A script or a service embedding the engine wants what the CLI
does instead: param defaults filled and checked, the inventory read and the
runbook's `hosts:` matched, the run recorded in the history and its hosts
locked, secrets redacted. This module is that, with the CLI's own parts
(engine/launch.py, engine/history/session.py), so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.events import Processor
    from engine.execution.context import RunOptions
    from engine.format.model import Runbook
    from engine.results import RunResult


def run(
    runbook: str | Path | Runbook,
    *,
    inventory: str | Path | None = None,
    limit: str | None = None,
    params: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    approve: Iterable[str] = (),
    yes: bool = False,
    operator: str | None = None,
    processors: Iterable[Processor] = (),
    secrets_file: str | Path | None = None,
    record: bool = True,
    report: str | Path | None = None,
    junit: str | Path | None = None,
) -> RunResult:
    """Run `runbook` as `runbook run` would, and return its result.

    `params` may hold strings (as given on a command line) or typed values;
    declared defaults fill the rest, and an unknown or missing param raises
    UsageError, as the CLI's exit 64. Without `inventory` the run is on this
    machine. Nobody can be asked at a prompt here: confirm and manual steps
    run only when named in `approve` (or with `yes=True`), else they are
    declined. With `record` (the default) the run goes to the history
    ($RUNBOOK_HOME or $RUNBOOK_HISTORY) and its hosts are locked, so a second
    run of the same runbook on them waits its turn (exit 4 as `LockHeld`).

    Errors before any step runs are raised: RunbookInvalid (an invalid runbook
    or inventory), UsageError (params, limit, step names). After that, the
    outcome is in the result: `result.exit_code` is the CLI's exit code.
    """
    from engine import launch
    from engine.execution.approvals import Operator, operator_name
    from engine.execution.context import RunOptions
    from engine.format.loader import load_runbook
    from engine.format.model import Runbook
    from engine.format.params import resolve_params
    from engine.history.session import recorded_run

    rb = runbook if isinstance(runbook, Runbook) else load_runbook(str(runbook))
    inv, hosts = launch.select_hosts(rb, str(inventory) if inventory else None, limit)
    resolved = resolve_params(rb.params, dict(params or {}))
    approve = tuple(approve)
    launch.check_named_steps(rb, approve=approve)
    opts = options if options is not None else RunOptions()
    who = Operator(operator_name(operator), False, yes, frozenset(approve), False)
    built = launch.build_run(
        rb,
        inv,
        hosts,
        resolved,
        opts,
        operator=who,
        processors=list(processors),
        secrets_file=str(secrets_file) if secrets_file else None,
    )
    from engine.execution.runner import run_runbook

    with recorded_run(
        built,
        options=launch.recorded_options(opts, limit),
        junit=str(junit) if junit else None,
        report=str(report) if report else None,
        record=record,
    ) as recorded:
        return run_runbook(recorded)
