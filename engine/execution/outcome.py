"""Judging a finished attempt: failed_when, the type's own failure rule,
assert, and thresholds (docs/format.md).

Pure functions of the step, its result and the template context, so they are
tested without running anything.
"""

from __future__ import annotations

from typing import Any

from engine.errors import TemplateError
from engine.format.model import THRESHOLD_OP, Step
from engine.results import Metric, State
from engine.steps.base import StepType
from engine.templating import evaluate, holds, is_template, render_value


def failure(
    step: Step,
    stype: StepType,
    spec: Any,
    data: dict[str, Any],
    error: str | None,
    rctx: dict[str, Any],
) -> str | None:
    common = step.common
    if common.failed_when is not None:
        try:
            failed = holds(common.failed_when, rctx)
        except TemplateError as exc:
            return error or f"failed_when: {exc}"
        if not failed:
            return None
        return error or f"failed_when: {common.failed_when}"
    failure = error or stype.failure(spec, data)
    if failure:
        return failure
    for expr in common.assert_:
        try:
            ok = holds(expr, rctx)
        except TemplateError as exc:
            return f"assert: {exc}"
        if not ok:
            return message(common.message, rctx) or f"assertion failed: {expr}"
    return None


def message(template: str | None, context: dict[str, Any]) -> str | None:
    """An assert's `message:`, rendered; shown raw if it cannot render, so the
    operator still sees why the step failed."""
    if not template:
        return None
    try:
        return str(render_value(template, context))
    except TemplateError:
        return template


def thresholds(step: Step, rctx: dict[str, Any]) -> dict[str, Metric]:
    metrics = {}
    for name, th in step.common.thresholds.items():
        try:
            raw = evaluate(th.value, rctx)
            value = None if raw is None else float(raw)
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"threshold {name}: value is not a number ({exc})") from None
        state = State.OK
        if value is not None:
            if th.critical is not None and crosses(value, th.critical, rctx):
                state = State.CRITICAL
            elif th.warn is not None and crosses(value, th.warn, rctx):
                state = State.WARN
        metrics[name] = Metric(name, value, state, th.warn, th.critical, th.unit)
    return metrics


def crosses(value: float, bound: str, rctx: dict[str, Any]) -> bool:
    match = THRESHOLD_OP.match(bound)
    assert match is not None  # validated by the model
    op, rhs = match[1], match[2]
    limit = float(render_value(rhs, rctx)) if is_template(rhs) else float(rhs)
    return {
        "<": value < limit,
        "<=": value <= limit,
        ">": value > limit,
        ">=": value >= limit,
        "==": value == limit,
        "!=": value != limit,
    }[op]
