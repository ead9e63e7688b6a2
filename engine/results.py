"""States and results: what a step, a host and a run come to.

A result is data, never an exception: a step that raises becomes a `failed`
StepResult that carries the message, and the run goes on for other hosts.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from . import exitcodes


class State(enum.StrEnum):
    OK = "ok"
    SKIPPED = "skipped"
    WARN = "warn"
    CRITICAL = "critical"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    ABORTED = "aborted"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def is_failure(self) -> bool:
        return self in (State.FAILED, State.UNREACHABLE, State.ABORTED)


# A state's severity is also the exit code of a run that ends in it.
_SEVERITY = {
    State.OK: exitcodes.OK,
    State.SKIPPED: exitcodes.OK,
    State.WARN: exitcodes.WARN,
    State.CRITICAL: exitcodes.CRITICAL,
    State.FAILED: exitcodes.FAILED,
    State.UNREACHABLE: exitcodes.FAILED,
    State.ABORTED: exitcodes.ABORTED,
}


def worst(states: list[State] | tuple[State, ...], default: State = State.OK) -> State:
    """The most severe state; on a tie the first one wins (ok before skipped)."""
    best = default
    for s in states:
        if s.severity > best.severity:
            best = s
    return best


def exit_code(state: State) -> int:
    return state.severity


# The skip reason of a step a resume did not run again: its result is the one
# the resumed run recorded (state, data, metrics), shown as kept.
KEPT = "resumed: already done"

# Result fields the engine owns; a step type's data may not shadow them.
RESERVED_FIELDS = frozenset({"state", "duration_ms", "attempts", "dry_run", "metrics"})
# Names that Jinja2 would resolve to a dict method instead of a key.
FORBIDDEN_FIELDS = frozenset({"items", "keys", "values", "get", "update", "pop", "copy"})


def shown_duration(ms: float) -> str:
    """A duration as the console and the timeline say it: 850ms, 12.3s, 4m05s."""
    ms = round(ms)
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms // 60_000}m{(ms // 1000) % 60:02d}s"


def shown_number(value: float) -> str:
    """A metric value as people read it: 20000, 0.0123, 3.142, never 2e+04.
    Whole numbers in full; others to four significant digits, without exponent
    unless tiny or astronomically large."""
    if value != value or value in (float("inf"), float("-inf")):  # nan, inf
        return str(value)
    if float(value).is_integer() and abs(value) < 1e18:
        return str(int(value))
    magnitude = abs(value)
    if magnitude < 1e-4 or magnitude >= 1e18:
        return f"{value:.4g}"
    decimals = max(0, 3 - math.floor(math.log10(magnitude)))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")


@dataclass
class Metric:
    """One threshold's value for one host, kept in run history."""

    name: str
    value: float | None
    state: State
    warn: str | None = None
    critical: str | None = None
    unit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "state": self.state.value,
            "warn": self.warn,
            "critical": self.critical,
            "unit": self.unit,
        }


@dataclass
class StepResult:
    step_id: str
    name: str
    host: str
    state: State
    data: dict[str, Any] = field(default_factory=dict)
    duration_ms: int = 0
    attempts: int = 0
    dry_run: bool = False
    metrics: dict[str, Metric] = field(default_factory=dict)
    error: str | None = None
    ignored: bool = False  # failed with ignore_errors: shown, not counted
    rescued: bool = False  # a block whose rescue succeeded
    skip_reason: str | None = None
    rendered: dict[str, Any] | None = None  # what a dry-run would have executed
    sensitive: bool = False
    approved_by: str | None = None

    @property
    def counted_state(self) -> State:
        """The state as it counts toward the run's state and exit code."""
        if self.ignored or self.rescued:
            return State.OK
        return self.state

    def template_value(self) -> dict[str, Any]:
        """What `steps.<id>` and `result` show to templates."""
        value = dict(self.data)
        value.update(
            state=self.state.value,
            duration_ms=self.duration_ms,
            attempts=self.attempts,
            dry_run=self.dry_run,
            metrics={k: m.value for k, m in self.metrics.items()},
            failed=self.state.is_failure,
            error=self.error,
        )
        return value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.step_id,
            "name": self.name,
            "state": self.state.value,
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
            "dry_run": self.dry_run,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "data": self.data,
        }
        for key in ("error", "skip_reason", "rendered", "approved_by"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.ignored:
            out["ignored"] = True
        if self.rescued:
            out["rescued"] = True
        return out


@dataclass
class HostResult:
    host: str
    steps: list[StepResult] = field(default_factory=list)
    unreachable: str | None = None
    aborted: str | None = None
    not_started: bool = False  # the run stopped (max_fail, Ctrl-C) before its batch
    worker: str | None = None  # the `runbook worker` that walked it (a zoned host)
    # Its walk is still going (a keep_going failure, rescue, always): not yet a
    # failed host for max_fail, which judges hosts whose walk ended.
    walking: bool = field(default=False, repr=False, compare=False)

    @property
    def state(self) -> State:
        if self.aborted:
            return State.ABORTED
        if self.unreachable:
            return State.UNREACHABLE
        return worst([s.counted_state for s in self.steps])

    def reason(self) -> str:
        """Why the host is not ok, in one line ("" when it is): what the operator
        reads first in the recap and in `runbook history RUN_ID`."""
        if self.unreachable or self.aborted:
            text = str(self.unreachable or self.aborted)
            # Shown beside the host's name and state: not "web1: unreachable: …".
            for prefix in (f"{self.host}: unreachable: ", f"{self.host}: "):
                text = text.removeprefix(prefix)
            return text
        state = self.state
        if state in (State.OK, State.SKIPPED):
            return ""
        for step in self.steps:
            if step.counted_state is state:
                return f"{step.name}: {step.error}" if step.error else step.name
        return ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state.value,
            "steps": [s.to_dict() for s in self.steps],
        }
        if self.unreachable:
            out["unreachable"] = self.unreachable
        if self.aborted:
            out["aborted"] = self.aborted
        if self.not_started:
            out["not_started"] = True
        if self.worker:
            out["worker"] = self.worker
        return out


@dataclass
class RunResult:
    run_id: str
    runbook: str
    hosts: dict[str, HostResult] = field(default_factory=dict)
    aborted: str | None = None
    started_at: str = ""
    finished_at: str = ""
    duration_ms: int = 0
    dry_run: bool = False
    internal_error: str | None = None  # a bug in the engine cut the run short (exit 70)
    # Why no more hosts started when failures stopped it (max_fail): a failed
    # run (exit 3), unlike `aborted`, which is the operator's decision (exit 4).
    stopped: str | None = None

    @property
    def state(self) -> State:
        if self.aborted:
            return State.ABORTED
        if self.stopped:
            return State.FAILED
        return worst([h.state for h in self.hosts.values()])

    @property
    def exit_code(self) -> int:
        if self.internal_error:
            return exitcodes.INTERNAL
        return exit_code(self.state)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "runbook": self.runbook,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "hosts": {name: h.to_dict() for name, h in self.hosts.items()},
        }
        if self.aborted:
            out["aborted"] = self.aborted
        if self.stopped:
            out["stopped"] = self.stopped
        return out
