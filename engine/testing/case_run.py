"""One case run: the runbook against its stand-ins, then judged against `expect:`.

Built through engine/launch.py as `runbook run` builds a run, but recorded
nowhere (no history, no lock, no report) and with `notify:` left out: a test
must not page anyone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.inventory.host import Host
from engine.results import State, StepResult

from .cases import NOT_RUN, Case
from .standin import StandIns

if TYPE_CHECKING:
    from engine.format.model import Runbook
    from engine.results import RunResult


@dataclass
class CaseResult:
    name: str
    line: int
    exit: int
    differences: list[str] = field(default_factory=list)  # redacted, one line each
    missing: list[str] = field(default_factory=list)  # "host: step id" without a stand-in

    @property
    def passed(self) -> bool:
        return not self.differences and not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "line": self.line,
            "passed": self.passed,
            "exit": self.exit,
            "differences": self.differences,
            "missing": self.missing,
        }


def run_case(runbook: Runbook, case: Case) -> CaseResult:
    """Run `case` against `runbook` and compare what happened with what it expects."""
    from engine import launch
    from engine.execution.approvals import Operator
    from engine.execution.context import RunOptions
    from engine.execution.runner import run_runbook

    stand_ins = StandIns(case.name, case.results)
    options = RunOptions(extra_vars=dict(case.extra_vars), stand_in=stand_ins)
    # Manual steps' instructions are not shown: the case's approvals answer them.
    operator = Operator(
        "runbook-test", yes=case.approve_all, approve=case.approve, show=lambda text: None
    )
    quiet = dataclasses.replace(runbook, header=runbook.header.model_copy(update={"notify": []}))
    hosts = [
        # A connection type nobody registers: were anything to reach for the
        # host, it would fail, never connect.
        Host(name=name, address=name, connection="stand-in", groups=["all"], vars=dict(hvars))
        for name, hvars in case.hosts.items()
    ]
    run = launch.build_run(
        quiet, None, hosts, dict(case.params), options, operator=operator, processors=[]
    )
    result = run_runbook(run)
    differences = [run.redactor.text(d) for d in _differences(case, result)]
    missing = [run.redactor.text(m) for m in stand_ins.missing]
    return CaseResult(case.name, case.line, result.exit_code, differences, missing)


def _differences(case: Case, result: RunResult) -> list[str]:
    out: list[str] = []
    if case.exit is not None and result.exit_code != case.exit:
        out.append(f"exit: expected {case.exit}, got {result.exit_code}{_why(result)}")
    many = len(result.hosts) > 1
    for host, hres in result.hosts.items():
        last: dict[str, StepResult] = {s.step_id: s for s in hres.steps}
        where = f"{host}: " if many else ""
        for step_id, want in case.steps.items():
            got = last.get(step_id)
            state = got.state.value if got is not None else NOT_RUN
            if state != want.state:
                out.append(
                    f"{where}step {step_id}: expected {want.state}, got {state}{_detail(got)}"
                )
            elif want.error is not None and want.error not in (got.error or "" if got else ""):
                error = got.error if got is not None else None
                out.append(
                    f"{where}step {step_id}: expected an error containing {want.error!r}, "
                    f"got {error!r}"
                )
    return out


def _detail(res: StepResult | None) -> str:
    """Why a step ended as it did, in a few words after its state."""
    if res is None:
        return ""
    if res.error:
        return f" ({res.error})"
    if res.skip_reason:
        return f" ({res.skip_reason})"
    shown = [f"{m.name}={m.value:g}" for m in res.metrics.values() if m.value is not None]
    if res.state in (State.WARN, State.CRITICAL, State.OK) and shown:
        return f" ({', '.join(shown)})"
    return ""


def _why(result: RunResult) -> str:
    """The hosts' reasons, for an exit code that differs."""
    reasons = [f"{name}: {h.reason()}" for name, h in result.hosts.items() if h.reason()]
    return f" ({'; '.join(reasons)})" if reasons else ""
