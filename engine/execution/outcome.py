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
        # Bounds as they applied on this host: `> 300`, not `> {{ params.max }}`.
        warn = None if th.warn is None else rendered_bound(th.warn, rctx)
        critical = None if th.critical is None else rendered_bound(th.critical, rctx)
        state = State.OK
        if value is not None:
            if critical is not None and crosses(value, critical):
                state = State.CRITICAL
            elif warn is not None and crosses(value, warn):
                state = State.WARN
        metrics[name] = Metric(name, value, state, warn, critical, th.unit)
    return metrics


def rendered_bound(bound: str, rctx: dict[str, Any]) -> str:
    """`> {{ params.max }}` with its number in place: `> 300`."""
    match = THRESHOLD_OP.match(bound)
    assert match is not None  # validated by the model
    op, rhs = match[1], match[2]
    if not is_template(rhs):
        return bound
    try:
        limit = float(render_value(rhs, rctx))
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"threshold bound {bound!r} is not a number ({exc})") from None
    # Exact (repr), not rounded for show: the judgement compares with this text.
    return f"{op} {int(limit) if limit.is_integer() else repr(limit)}"


def crosses(value: float, bound: str) -> bool:
    """Whether `value` crosses a rendered bound (`> 300`)."""
    match = THRESHOLD_OP.match(bound)
    assert match is not None  # validated by the model, rendered by rendered_bound
    op, limit = match[1], float(match[2])
    return {
        "<": value < limit,
        "<=": value <= limit,
        ">": value > limit,
        ">=": value >= limit,
        "==": value == limit,
        "!=": value != limit,
    }[op]
