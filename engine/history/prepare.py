"""Assemble the Run of `runbook resume` from a recorded run.

Mirrors `runbook run`: same file, same params (secret ones given again), the
same hosts from the same inventory, the same tags / start-at / extra vars /
forks, and `RunOptions.resume_results` so finished steps are not run again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from engine.errors import UsageError

from .resume import plan_resume, resume_params
from .store import HistoryStore


@dataclass
class PreparedResume:
    run: Any  # engine.runner.Run
    options: dict[str, Any]  # recorded in the new run's row
    banner: str


def prepare_resume(
    store: HistoryStore,
    run_id: str,
    *,
    yes: bool = False,
    approve: tuple[str, ...] = (),
    params: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    forks: int | None = None,
    max_connections: int | None = None,
    fmt: str = "text",
    operator: str | None = None,
    secrets_file: str | None = None,
    verbose: int = 0,
) -> PreparedResume:
    from engine.cli import _extra_vars, _select_hosts
    from engine.execution.approvals import Operator, operator_name
    from engine.execution.context import RunOptions
    from engine.execution.runner import Run
    from engine.format.loader import load_runbook
    from engine.format.params import parse_assignments, resolve_params
    from engine.redaction import Redactor, is_masked
    from engine.reports.console import ConsoleReport
    from engine.reports.jsonreport import JsonReport
    from engine.secrets import Secrets

    from .replay import resolve_run_id

    row = resolve_run_id(store, run_id)
    rb = load_runbook(row["path"])
    plan = plan_resume(store, row, rb)
    ids = rb.step_ids()
    for step_id in approve:
        if step_id not in ids:
            raise UsageError(f"--approve {step_id}: no such step id in {rb.name}")
    resolved = resolve_params(rb.params, resume_params(row, rb, parse_assignments(params, "-p")))
    recorded = dict(row.get("options") or {})
    extra_vars = dict(recorded.get("extra_vars") or {})
    held_secrets = [k for k, v in extra_vars.items() if is_masked(v)]
    extra_vars.update(_extra_vars(extra))
    still = [k for k in held_secrets if is_masked(extra_vars.get(k))]
    if still:
        raise UsageError(
            f"extra var(s) {', '.join(still)} of run {row['id']} held a secret, which history "
            "does not keep: give them again with -e"
        )
    inventory = row.get("inventory") or "localhost"
    inventory_obj, hosts = _select_hosts(
        rb, None if inventory == "localhost" else inventory, ",".join(row.get("hosts") or [])
    )
    redactor = Redactor()
    secrets = Secrets(redactor, secrets_file)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    op = Operator(operator_name(operator), interactive, yes, frozenset(approve))
    processors: list[Any] = [
        JsonReport(sys.stdout) if fmt == "json" else ConsoleReport(sys.stdout, verbosity=verbose)
    ]
    options = RunOptions(
        forks=forks or int(recorded.get("forks") or 10),
        max_connections=max_connections or RunOptions.max_connections,
        tags=frozenset(recorded.get("tags") or ()),
        skip_tags=frozenset(recorded.get("skip_tags") or ()),
        start_at=recorded.get("start_at"),
        extra_vars=extra_vars,
        resume_results=plan.resume_results,
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
        inventory_name=inventory,
        inventory_digest=getattr(inventory_obj, "digest", ""),
        resolve_host=getattr(inventory_obj, "get", None),
        resumed_from=row["id"],
    )
    notes = []
    if row.get("runbook_digest") and row["runbook_digest"] != rb.digest:
        notes.append("the runbook file changed since (same step ids)")
    if row.get("inventory_digest") and run.inventory_digest != row["inventory_digest"]:
        notes.append("the inventory changed since")
    banner = (
        f"resuming run {row['id']} of {rb.name} ({plan.run.get('state')}): "
        f"{plan.done} finished step result(s) on {len(plan.resume_results)} host(s) are kept"
        + ("; note: " + ", ".join(notes) if notes else "")
    )
    saved = {
        "tags": sorted(options.tags),
        "skip_tags": sorted(options.skip_tags),
        "start_at": options.start_at,
        "extra_vars": extra_vars,
        "forks": options.forks,
        "limit": recorded.get("limit"),
    }
    return PreparedResume(run, saved, banner)
