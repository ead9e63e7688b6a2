"""`loop:` — one typed step run once per item, or again until a condition holds.

Each item is a whole run of the step (its `when`, retries, timeout, failed_when,
assert and thresholds apply per item) with the item in the template context
as `item` (or `loop_var`), its position as `loop_index`, and the previous
item's result as `previous`. The step's result gathers them: `results` (one
result per item, each with its `item`), the worst state, every item's metrics
(named `NAME[ITEM]`), and an error naming the items that failed.

Items all run, as in Ansible, even after one fails: a loop over databases
should not leave the last ones unvacuumed because the first one failed. Paging
(`loop: {until: EXPR}`) stops at the first failure instead: the next page
depends on this one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.errors import TemplateError
from engine.format.model import LoopUntil, Step
from engine.results import Metric, State, StepResult, worst
from engine.templating import holds, render_value

from .attempts import StepScope, TypedStepRun
from .context import Interrupted, RunContext

# An item shown in a metric's name and in errors: itself when short and plain.
_LABEL_MAX = 40


class LoopRun:
    """Every iteration of one looped step on one host."""

    def __init__(self, run: RunContext, step: Step, scope: StepScope) -> None:
        self.run, self.step, self.scope = run, step, scope
        self.var = step.common.loop_var

    def result(self) -> StepResult:
        loop = self.step.common.loop
        try:
            if isinstance(loop, LoopUntil):
                done, error = self._pages(loop)
            else:
                done, error = self._items(self._list())
        except TemplateError as exc:
            return self._total([], f"loop: {exc}")
        return self._total(done, error)

    def _list(self) -> list[Any]:
        """The items: the list as written (templates inside rendered) or what the
        template gives, which must be a list."""
        items = render_value(self.step.common.loop, self.scope.context)
        if isinstance(items, dict):
            raise TemplateError(
                "gave a mapping; loop over `| dict2items` or over its keys (`| list`)"
            )
        if not isinstance(items, list | tuple):
            raise TemplateError(f"gave {type(items).__name__} {items!r}, not a list")
        return list(items)

    def _items(self, items: list[Any]) -> tuple[list[tuple[Any, StepResult]], str | None]:
        done: list[tuple[Any, StepResult]] = []
        previous: dict[str, Any] | None = None
        for index, item in enumerate(items):
            res = self._one(item, index, previous)
            done.append((item, res))
            previous = res.template_value()
        failed = [(item, r) for item, r in done if r.state.is_failure]
        if not failed:
            return done, None
        first_item, first = failed[0]
        return done, (
            f"{len(failed)} of {len(items)} items failed; first {label(first_item)}: {first.error}"
        )

    def _pages(self, loop: LoopUntil) -> tuple[list[tuple[Any, StepResult]], str | None]:
        done: list[tuple[Any, StepResult]] = []
        previous: dict[str, Any] | None = None
        for index in range(loop.max):
            res = self._one(index, index, previous)
            done.append((index, res))
            if res.state.is_failure:
                return done, f"page {index} failed: {res.error}"
            if res.state is State.SKIPPED and not res.dry_run:
                return done, None  # `when` said no: no page, and nothing for `until` to read
            previous = res.template_value()
            context = {**self._context(index, index, previous), "result": previous}
            try:
                if holds(loop.until, context):
                    return done, None
            except TemplateError as exc:  # the pages fetched so far are kept
                return done, f"loop until: {exc}"
        return done, f"loop until not met after {loop.max} iterations: {loop.until}"

    def _one(self, item: Any, index: int, previous: dict[str, Any] | None) -> StepResult:
        if self.run.stop.is_set() and self.run.interrupted:
            raise Interrupted(self.run.stop_reason or "interrupted")
        context = self._context(item, index, previous)
        when = self.step.common.when
        try:
            run_it = when is None or holds(when, context)
        except TemplateError as exc:
            # This item fails; the items before it keep their results.
            return StepResult(
                step_id=self.scope.step_id, name=self.step.name, host=self.scope.host.name,
                state=State.FAILED, error=f"when: {exc}",
            )  # fmt: skip
        if not run_it:
            return StepResult(
                step_id=self.scope.step_id, name=self.step.name, host=self.scope.host.name,
                state=State.SKIPPED, skip_reason=f"when: {when}",
            )  # fmt: skip
        return TypedStepRun(self.run, self.step, replace(self.scope, context=context)).result()

    def _context(self, item: Any, index: int, previous: dict[str, Any] | None) -> dict[str, Any]:
        return {**self.scope.context, self.var: item, "loop_index": index, "previous": previous}

    def _total(self, done: list[tuple[Any, StepResult]], error: str | None) -> StepResult:
        """The step's one result from its items'."""
        step = self.step
        results = [
            {**r.template_value(), self.var: item, "loop_index": i}
            for i, (item, r) in enumerate(done)
        ]
        if error is not None:
            state = State.FAILED
        elif all(r.state is State.SKIPPED for _, r in done):  # none ran (or no items)
            state = State.SKIPPED
        else:
            state = worst([r.counted_state for _, r in done])
        metrics: dict[str, Metric] = {}
        for i, (item, r) in enumerate(done):
            for name, m in r.metrics.items():
                key = f"{name}[{label(item, i)}]"
                metrics[key] = replace(m, name=key)
        rendered = [r.rendered for _, r in done if r.rendered is not None]
        return StepResult(
            step_id=self.scope.step_id,
            name=step.name,
            host=self.scope.host.name,
            state=state,
            data={"results": results, "items": len(done), "loop_var": self.var},
            duration_ms=sum(r.duration_ms for _, r in done),
            attempts=sum(r.attempts for _, r in done),
            dry_run=self.run.options.dry_run,
            metrics=metrics,
            error=error,
            ignored=error is not None and step.common.ignore_errors,
            sensitive=step.common.sensitive,
            skip_reason="loop: no items" if not done else None,
            rendered={"loop": rendered} if rendered else None,
        )


def label(item: Any, index: int | None = None) -> str:
    """An item as a metric name or an error shows it."""
    if isinstance(item, str | int | float) and not isinstance(item, bool):
        text = str(item)
        if len(text) <= _LABEL_MAX and "\n" not in text:
            return text
    return f"#{index}" if index is not None else repr(item)[:_LABEL_MAX]
