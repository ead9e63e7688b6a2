"""Control steps: assert, set, log, wait, manual, and the structural include/block.

`include` and `block` only carry their bodies' models here: running nested
steps is the executor's job, since they need its whole machinery (when, retry,
rescue/always, events).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from engine.errors import Aborted, StepError
from engine.format.model import Duration
from engine.results import FORBIDDEN_FIELDS, RESERVED_FIELDS
from engine.templating import evaluate

from .base import StepContext, StepSpec, StepType


class AssertSpec(StepSpec):
    that: list[str] = Field(min_length=1)
    message: str | None = None


class AssertStep(StepType):
    """Fails with the first false expression, so the operator sees which check broke."""

    name = "assert"
    Spec = AssertSpec
    expression_fields = frozenset({"that"})

    def normalize(self, body: Any) -> Any:
        if isinstance(body, str):
            return {"that": [body]}
        if isinstance(body, list):
            return {"that": body}
        return body

    def run(self, spec: AssertSpec, ctx: StepContext) -> dict[str, Any]:
        for expr in spec.that:
            if not evaluate(expr, ctx.template_context):
                raise StepError(spec.message or f"assertion failed: {expr}")
        return {"passed": len(spec.that)}

    def dry_run_safe(self, spec: AssertSpec) -> bool:
        return True

    def describe(self, spec: AssertSpec) -> str:
        return "assert " + " and ".join(spec.that)


class SetSpec(StepSpec):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _names(self) -> SetSpec:
        for name in self.model_extra or {}:
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not a valid variable name")
            if name in RESERVED_FIELDS or name in FORBIDDEN_FIELDS:
                raise ValueError(f"{name!r} is reserved; choose another variable name")
        return self


class SetStep(StepType):
    name = "set"
    Spec = SetSpec

    def run(self, spec: SetSpec, ctx: StepContext) -> dict[str, Any]:
        values = dict(spec.model_extra or {})
        ctx.variables.update(values)
        return values

    def dry_run_safe(self, spec: SetSpec) -> bool:
        return True

    def describe(self, spec: SetSpec) -> str:
        return "set " + ", ".join(spec.model_extra or {})


class LogSpec(StepSpec):
    message: str
    level: Literal["debug", "info", "warning", "warn", "error"] = "info"


class LogStep(StepType):
    name = "log"
    Spec = LogSpec

    def normalize(self, body: Any) -> Any:
        return {"message": body} if isinstance(body, str) else body

    def run(self, spec: LogSpec, ctx: StepContext) -> dict[str, Any]:
        level = "warning" if spec.level == "warn" else spec.level
        ctx.emit_log(level, str(spec.message))
        return {"message": str(spec.message), "level": level}

    def dry_run_safe(self, spec: LogSpec) -> bool:
        return True

    def describe(self, spec: LogSpec) -> str:
        return f"log {spec.level}: {spec.message}"


class WaitSpec(StepSpec):
    seconds: Duration | None = None
    check: str | None = Field(None, description="id of an earlier step to run again each attempt")

    @model_validator(mode="after")
    def _something(self) -> WaitSpec:
        if self.seconds is None and self.check is None:
            raise ValueError("give `seconds` to sleep, or `check` (a step id) with until + retry")
        return self


class WaitStep(StepType):
    """Sleep, or poll another step until the step's `until` holds.

    With `check`, each attempt runs that earlier step again and this step's
    `result` is its result, so `until: result.rows[0].lag < 10` with
    `retry: {attempts: 30, delay: 10s}` waits for a replica to catch up.
    """

    name = "wait"
    Spec = WaitSpec

    def run(self, spec: WaitSpec, ctx: StepContext) -> dict[str, Any]:
        if spec.seconds and ctx.sleep(spec.seconds):
            raise Aborted("interrupted while waiting")
        if spec.check is None:
            return {"waited": spec.seconds}
        if ctx.rerun is None:
            raise StepError("wait.check needs the executor")
        return ctx.rerun(spec.check)

    def dry_run_safe(self, spec: WaitSpec) -> bool:
        return spec.check is None

    def describe(self, spec: WaitSpec) -> str:
        if spec.check:
            return f"wait for step {spec.check}"
        return f"wait {spec.seconds:g}s"


class ManualSpec(StepSpec):
    instructions: str


class ManualStep(StepType):
    name = "manual"
    Spec = ManualSpec
    skipping_leaves_a_change = False

    def normalize(self, body: Any) -> Any:
        return {"instructions": body} if isinstance(body, str) else body

    def run(self, spec: ManualSpec, ctx: StepContext) -> dict[str, Any]:
        if ctx.operator is None:
            raise Aborted("a manual step needs an operator")
        who = ctx.operator.acknowledge(ctx.host.name, ctx.step_id, spec.instructions)
        # The instructions as shown, rendered: the record says what was acknowledged.
        return {"acknowledged_by": who, "instructions": spec.instructions}

    def describe(self, spec: ManualSpec) -> str:
        first = spec.instructions.strip().splitlines()[:1] or [""]
        return f"manual: {first[0]}"


class IncludeSpec(StepSpec):
    runbook: str
    params: dict[str, Any] = {}


class IncludeStep(StepType):
    name = "include"
    Spec = IncludeSpec

    def normalize(self, body: Any) -> Any:
        # `include: prep.yaml` is `include: {runbook: prep.yaml}`, as Ansible writes it.
        return {"runbook": body} if isinstance(body, str) else body

    def dry_run_safe(self, spec: IncludeSpec) -> bool:
        return True  # the included steps decide for themselves

    def describe(self, spec: IncludeSpec) -> str:
        return f"include {spec.runbook}"


class BlockSpec(StepSpec):
    steps: list[Any] = Field(min_length=1)
    rescue: list[Any] = []
    always: list[Any] = []


class BlockStep(StepType):
    name = "block"
    Spec = BlockSpec
    raw_fields = frozenset({"steps", "rescue", "always"})

    def dry_run_safe(self, spec: BlockSpec) -> bool:
        return True

    def describe(self, spec: BlockSpec) -> str:
        return f"block of {len(spec.steps)} steps"
