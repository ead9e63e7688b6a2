"""What a resumed run may skip: the work its original run finished.

A step counts as done on a host when its last result there was ok, warn,
critical, or skipped for a reason that still holds (its `when`, the operator's
choice, an earlier resume). failed, unreachable, aborted (a declined approval),
steps a dry run did not execute, and steps that never finished (the engine was
killed during them) run again. `rescue` and `always` sections always run again:
they react to, and clean up after, the work being redone.

The step ids recorded when the original run started must equal the file's
current ids in order; otherwise a skipped id could now name different work,
and the resume is refused (exit 65) before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import Aborted, Location, Problem, RunbookInvalid, UsageError
from engine.format.model import Runbook, Step
from engine.redaction import is_masked
from engine.results import State, StepResult

from .replay import DIED, display_state, resolve_run_id, step_from_dict
from .store import RUNNING, HistoryStore

DONE = frozenset({State.OK, State.WARN, State.CRITICAL, State.SKIPPED})
NOT_DONE_SKIPS = ("dry run",)


@dataclass
class ResumePlan:
    """What a resume repeats of its run, and what it may skip."""

    run: dict[str, Any]  # the original run's history row
    runbook: Runbook  # the file as it is now (same step ids)
    # host → step id → the result it finished with, for templates
    resume_results: dict[str, dict[str, StepResult]] = field(default_factory=dict)
    # host → step ids whose start was recorded and whose end was not: they may have
    # run (the engine was killed, or its history failed, during them)
    unknown: dict[str, list[str]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # resolved, secret ones given again
    extra_vars: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(len(v) for v in self.resume_results.values())

    @property
    def unknown_steps(self) -> dict[str, frozenset[str]]:
        return {host: frozenset(sids) for host, sids in self.unknown.items()}

    @property
    def recorded_options(self) -> dict[str, Any]:
        """launch.recorded_options() of the original run."""
        return dict(self.run.get("options") or {})

    @property
    def inventory_path(self) -> str | None:
        inventory = self.run.get("inventory") or "localhost"
        return None if inventory == "localhost" else inventory

    @property
    def limit(self) -> str:
        """The original run's hosts, as a pattern: a resume runs on no others."""
        return ",".join(self.run.get("hosts") or [])

    def banner(self, inventory_digest: str, rerun_unknown: bool = False) -> str:
        """The line shown before a resume starts: what is kept, and what changed since."""
        row, notes = self.run, []
        if row.get("runbook_digest") and row["runbook_digest"] != self.runbook.digest:
            notes.append("the runbook file changed since (same step ids)")
        if row.get("inventory_digest") and inventory_digest != row["inventory_digest"]:
            notes.append("the inventory changed since")
        text = (
            f"resuming run {row['id']} of {self.runbook.name} ({row.get('state')}): "
            f"{self.done} finished step result(s) on {len(self.resume_results)} host(s) "
            "are kept" + ("; note: " + ", ".join(notes) if notes else "")
        )
        if self.unknown:
            steps = ", ".join(
                f"{sid} on {host}" for host, sids in self.unknown.items() for sid in sids
            )
            text += f"\nstarted but not recorded as finished, so they may have run: {steps}; " + (
                "they run again (--rerun-unknown)"
                if rerun_unknown
                else "they are not run again unless you pass --rerun-unknown"
            )
        return text


def prepare_resume(
    store: HistoryStore, run_id: str, *, params: dict[str, str], extra_vars: dict[str, Any]
) -> ResumePlan:
    """The plan for resuming `run_id` (a prefix will do), with -p / -e given again.

    Raises UsageError for an unknown run or a secret that must be given again,
    RunbookInvalid when the step ids changed, Aborted while the run is alive.
    """
    from engine.format.loader import load_runbook
    from engine.format.params import resolve_params

    row = resolve_run_id(store, run_id)
    runbook = load_runbook(row["path"])
    plan = plan_resume(store, row, runbook)
    plan.params = resolve_params(runbook.params, resume_params(row, runbook, params))
    plan.extra_vars = resume_extra_vars(row, extra_vars)
    return plan


def check_step_ids(row: dict[str, Any], runbook: Runbook) -> None:
    recorded = list(row.get("step_ids") or [])
    current = runbook.step_ids()
    if recorded == current:
        return
    gone = [s for s in recorded if s not in current]
    new = [s for s in current if s not in recorded]
    detail = []
    if gone:
        detail.append("removed or renamed: " + ", ".join(gone))
    if new:
        detail.append("added: " + ", ".join(new))
    if not detail:
        detail.append("steps were reordered")
    raise RunbookInvalid(
        [
            Problem(
                f"cannot resume run {row['id']}: the step ids changed since it ran "
                f"({'; '.join(detail)}); start a new run instead",
                Location(runbook.path),
                path="steps",
            )
        ]
    )


def plan_resume(store: HistoryStore, row: dict[str, Any], runbook: Runbook) -> ResumePlan:
    """The finished results of `row`'s run that `runbook` may skip (nothing runs)."""
    state = display_state(row)
    if state == RUNNING:
        raise Aborted(
            f"run {row['id']} is still running (pid {row.get('pid')} on "
            f"{row.get('control_node')}); wait for it or stop it before resuming"
        )
    if row.get("dry_run"):
        raise UsageError(f"run {row['id']} was a dry run: there is nothing to resume")
    check_step_ids(row, runbook)
    last: dict[str, dict[str, dict[str, Any]]] = {}
    for s in store.step_rows(row["id"]):
        last.setdefault(s.host, {})[s.step_id] = {**s.result, "host": s.host}
    plan = ResumePlan(row, runbook, unknown=_unknown(store, row["id"], last, runbook))
    for host, results in last.items():
        done = {sid: d for sid, d in results.items() if _is_done(d)}
        kept: dict[str, StepResult] = {}
        _collect(runbook.steps, done, kept)
        if kept:
            plan.resume_results[host] = kept
    if state == DIED:
        plan.run = {**row, "state": DIED}
    return plan


def _unknown(
    store: HistoryStore, run_id: str, finished: dict[str, dict[str, Any]], runbook: Runbook
) -> dict[str, list[str]]:
    """Steps whose start is in the history and whose end is not. Blocks and
    includes are left out: resume walks into them, to the step that was running."""
    containers = {s.id for s in runbook.all_steps() if s.type in ("block", "include")}
    out: dict[str, list[str]] = {}
    for event in store.events(run_id):
        host, sid = event.host or "", event.step_id or ""
        if event.kind != "step_started" or sid in finished.get(host, {}) or sid in containers:
            continue
        if sid not in out.get(host, []):
            out.setdefault(host, []).append(sid)
    return out


def _is_done(d: dict[str, Any]) -> bool:
    state = State(d.get("state", "failed"))
    if state not in DONE:
        return False
    reason = d.get("skip_reason") or ""
    return not (state is State.SKIPPED and reason.startswith(NOT_DONE_SKIPS))


def _collect(
    steps: list[Step], done: dict[str, dict[str, Any]], out: dict[str, StepResult]
) -> None:
    """Done steps of the main path; a done block brings its children's results along."""
    for step in steps:
        if step.id in done:
            out[step.id] = step_from_dict(done[step.id])
            if step.type == "block":
                for child in step.walk()[1:]:
                    if child.id in done:
                        out[child.id] = step_from_dict(done[child.id])
        elif step.type == "block":
            _collect(step.children.get("steps", []), done, out)


def resume_params(row: dict[str, Any], runbook: Runbook, given: dict[str, str]) -> dict[str, Any]:
    """The original params, with -p values over them; masked values must be given again."""
    recorded = dict(row.get("params") or {})
    merged: dict[str, Any] = {k: v for k, v in recorded.items() if k in runbook.params}
    merged.update(given)
    missing = [
        name
        for name, value in merged.items()
        if name not in given and is_masked(value) and value is not None
    ]
    if missing:
        flags = " ".join(f"-p {n}=..." for n in missing)
        raise UsageError(
            f"param(s) {', '.join(missing)} of run {row['id']} held a secret, which history "
            f"does not keep: give them again ({flags})"
        )
    return {k: v for k, v in merged.items() if v is not None or k in given}


def resume_extra_vars(row: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The original -e values with the given ones over them; masked values must be given again."""
    merged = dict((row.get("options") or {}).get("extra_vars") or {})
    held_secrets = [k for k, v in merged.items() if is_masked(v)]
    merged.update(given)
    still = [k for k in held_secrets if is_masked(merged.get(k))]
    if still:
        raise UsageError(
            f"extra var(s) {', '.join(still)} of run {row['id']} held a secret, which history "
            "does not keep: give them again with -e"
        )
    return merged
