"""One typed step (shell, sql, http, ...) on one host: render its body, run it,
judge what came back, retry as its policy says, and make a StepResult of it.

Kept apart from executor.py, which owns the walk around it (tags, `when`,
approvals, blocks, includes, recording): this module is everything between
"this step runs now" and "here is its result".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from engine.errors import Aborted, HostUnreachable, StepError, TemplateError
from engine.events import LogMessage
from engine.format.model import Retry, Step
from engine.results import (
    FORBIDDEN_FIELDS,
    RESERVED_FIELDS,
    Metric,
    State,
    StepResult,
    shown_number,
    worst,
)
from engine.steps.base import StepContext, StepSpec, get_step_type
from engine.templating import holds, render_value

from . import outcome
from .context import Interrupted

if TYPE_CHECKING:
    from engine.connections.base import Connection
    from engine.inventory.host import Host

    from .context import RunContext


@dataclass
class _Attempt:
    data: dict[str, Any]
    failure: str | None
    state: State
    metrics: dict[str, Metric]
    retry: bool = False
    until_met: bool = True
    dry_run_skip: bool = False
    rendered: dict[str, Any] | None = None
    skip_reason: str = "dry run: not executed"


@dataclass
class StepScope:
    """What one typed step sees of its host's walk; the executor fills it in."""

    host: Host
    step_id: str  # as recorded: with the include's prefix
    context: dict[str, Any]  # the template context: params, vars, host, steps, ...
    variables: dict[str, Any]  # the host's vars, which `set` writes
    connection: Callable[[], Connection]  # opened on first use
    rerun: Callable[[str], dict[str, Any]]  # `wait: {check: id}` runs an earlier step
    dry_skipped: set[str]  # steps a dry run did not execute; a skipped one joins


class TypedStepRun:
    """Every attempt of one typed step on one host (a new one per run of the step)."""

    def __init__(self, run: RunContext, step: Step, scope: StepScope) -> None:
        self.run = run
        self.step = step
        self.scope = scope
        self.stype = get_step_type(step.type)
        stand_in = run.options.stand_in  # `runbook test`: a case's results, not the host
        self.execute = self.stype.run if stand_in is None else stand_in(step, self.stype)
        self.sid = scope.step_id
        self.attempts = 0

    def result(self) -> StepResult:
        step = self.step
        started = time.monotonic()
        dry_run = self.run.options.dry_run
        try:
            retry = self._policy()
        except StepError as exc:
            return StepResult(
                step_id=self.sid, name=step.name, host=self.scope.host.name, state=State.FAILED,
                error=str(exc), dry_run=dry_run, ignored=step.common.ignore_errors,
            )  # fmt: skip
        unverifiable = dry_run and bool(self.scope.dry_skipped)
        if unverifiable:
            retry = None  # no waiting for the effect of steps that did not run
        attempt = self._attempt() if retry is None else self._retried(retry)
        failure = attempt.failure
        if step.common.until and not attempt.until_met and not attempt.dry_run_skip:
            failure = (
                failure or f"until not met after {self.attempts} attempts: {step.common.until}"
            )
        if failure and self.run.interrupted:
            # Killed, most likely: "rc -15" alone does not say by whom.
            failure = f"{failure} ({self.run.stop_reason})"
        res = StepResult(
            step_id=self.sid,
            name=step.name,
            host=self.scope.host.name,
            state=State.FAILED if failure else attempt.state,
            data=attempt.data,
            duration_ms=int((time.monotonic() - started) * 1000),
            attempts=self.attempts,
            dry_run=dry_run,
            metrics=attempt.metrics,
            error=failure,
            ignored=bool(failure) and step.common.ignore_errors,
            sensitive=step.common.sensitive,
            rendered=attempt.rendered,
        )
        if attempt.dry_run_skip:
            if self.stype.skipping_leaves_a_change:
                self.scope.dry_skipped.add(step.id)
            res.state = State.SKIPPED
            res.skip_reason = attempt.skip_reason
        elif unverifiable and failure:
            # A check after a write the dry run skipped fails because the write
            # did not happen: not a finding. Said, with the error, not counted.
            self.scope.dry_skipped.add(step.id)
            res.state, res.error, res.ignored = State.SKIPPED, None, False
            skipped = ", ".join(sorted(self.scope.dry_skipped - {step.id}))
            res.skip_reason = (
                f"dry run: not judged, it may check the effect of steps this dry run "
                f"did not execute ({skipped}); it reported: {failure}"
            )
            res.data = {**res.data, "would_fail": failure}
        return res

    def _retried(self, retry: Retry) -> _Attempt:
        """Attempts until one needs no retry or the policy is spent; the last one."""
        # tenacity only for steps that retry: ~15 ms of imports the others never pay.
        from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential

        retrying = Retrying(
            stop=stop_after_attempt(retry.attempts),
            wait=wait_exponential(
                multiplier=retry.delay,
                exp_base=retry.backoff,
                max=retry.max_delay if retry.max_delay is not None else float("inf"),
            ),
            retry=retry_if_result(lambda a: a.retry),
            sleep=self._sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        attempt: _Attempt = retrying(self._attempt)
        return attempt

    def _policy(self) -> Retry | None:
        """The step's retry policy; a templated one is rendered for this host."""
        step = self.step
        if step.retry_template is None:
            return step.common.retry
        try:
            values = {
                k: render_value(v, self.scope.context) for k, v in step.retry_template.items()
            }
            return Retry.model_validate(values)
        except TemplateError as exc:
            raise StepError(f"retry: {exc}") from None
        except ValidationError as exc:
            errs = "; ".join(
                f"retry.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise StepError(f"invalid value after rendering: {errs}") from None

    def _sleep(self, seconds: float) -> None:
        if self.run.sleep(seconds):
            raise Interrupted(self.run.stop_reason or "interrupted")

    def _render_spec(self) -> Any:
        step, stype = self.step, self.stype
        if step.spec is not None:
            return step.spec  # nothing templated: validated once, at load
        body = step.body
        if isinstance(body, dict):
            rendered = {}
            for key, value in body.items():
                if key in stype.expression_fields or key in stype.raw_fields:
                    rendered[key] = value
                    continue
                try:
                    rendered[key] = render_value(value, self.scope.context)
                except TemplateError as exc:
                    raise TemplateError(exc.reason, field=f"{step.type}.{key}") from None
        else:
            try:
                rendered = render_value(body, self.scope.context)
            except TemplateError as exc:
                raise TemplateError(exc.reason, field=step.type) from None
        try:
            return stype.Spec.model_validate(rendered)
        except ValidationError as exc:
            errs = "; ".join(
                f"{step.type}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise StepError(f"invalid value after rendering: {errs}") from None

    def _attempt(self) -> _Attempt:
        self.attempts += 1
        step, stype, common = self.step, self.stype, self.step.common
        dry_run = self.run.options.dry_run
        try:
            spec = self._render_spec()
        except (TemplateError, StepError) as exc:
            if dry_run and self.scope.dry_skipped and isinstance(exc, TemplateError):
                note = {"not_rendered": f"depends on a step the dry run did not execute ({exc})"}
                return _Attempt({}, None, State.SKIPPED, {}, dry_run_skip=True, rendered=note)
            return _Attempt({}, str(exc), State.FAILED, {})
        if step.type == "assert" and common.message and not getattr(spec, "message", None):
            # `assert: [...]` with `message:` beside it: the step's own message.
            text = outcome.message(common.message, self.scope.context)
            spec = spec.model_copy(update={"message": text})
        if dry_run and not (common.safe or stype.dry_run_safe(spec)):
            return _Attempt(
                {}, None, State.SKIPPED, {}, dry_run_skip=True, rendered=self._shown(spec)
            )
        error: str | None = None
        try:
            data = self.execute(spec, self._context()) or {}
        except (HostUnreachable, Aborted):
            raise
        except StepError as exc:
            if dry_run and exc.data.get("would_write"):
                # The type tried it read-only and the service refused the write: a
                # dry run reports that as a change it did not make, not a failure.
                return _Attempt(
                    dict(exc.data), None, State.SKIPPED, {}, dry_run_skip=True,
                    rendered=self._shown(spec, describe=False), skip_reason=f"dry run: {exc}",
                )  # fmt: skip
            data, error = dict(exc.data), str(exc)
        except TemplateError as exc:
            data, error = {}, str(exc)
        except Exception as exc:  # a bug in a step type must not kill the run
            error = f"internal error in step type {step.type}: {type(exc).__name__}: {exc}"
            data = {}
        return self._judge(spec, data, error)

    def _shown(self, spec: StepSpec, describe: bool = True) -> dict[str, Any]:
        """What a dry run reports it would have executed."""
        shown = spec.model_dump(exclude_none=True, exclude_defaults=True, by_alias=True)
        if describe and self.stype.describe(spec):
            shown = {"describe": self.stype.describe(spec), **shown}
        return shown

    def _context(self) -> StepContext:
        scope, run = self.scope, self.run
        return StepContext(
            host=scope.host,
            step_id=self.sid,
            timeout=self.step.common.timeout,
            dry_run=run.options.dry_run,
            redactor=run.redactor,
            get_connection=scope.connection,
            variables=scope.variables,
            template_context=scope.context,
            emit_log=self._log,
            operator=run.operator,
            interrupted=lambda: run.interrupted,
            sleep=run.sleep,
            rerun=scope.rerun,
            cancellable=run.cancellers.scope,
            output=run.output_for(scope.host.name, self.sid),
        )

    def _log(self, level: str, message: str) -> None:
        """A step's log line (`log:`) as an event; a lost one stops the run (RunContext.emit)."""
        host = self.scope.host.name
        event = LogMessage(
            self.run.run_id, host=host, step_id=self.sid, level=level, message=message
        )
        self.run.emit(event)

    def _judge(self, spec: Any, data: dict[str, Any], error: str | None) -> _Attempt:
        """failed_when / the type's rule / thresholds / until, on what the attempt returned."""
        step, common = self.step, self.step.common
        clash = (set(data) & (RESERVED_FIELDS | FORBIDDEN_FIELDS)) - {"dry_run"}
        if clash:
            error = (
                error or f"step type {step.type} returned reserved result fields {sorted(clash)}"
            )
        value = {
            **data,
            "state": "ok",
            "attempts": self.attempts,
            "dry_run": self.run.options.dry_run,
        }
        rctx = {**self.scope.context, "result": value}
        failure = outcome.failure(step, self.stype, spec, data, error, rctx)
        metrics: dict[str, Metric] = {}
        state = State.OK
        if failure is None and common.thresholds:
            try:
                metrics = outcome.thresholds(step, rctx)
            except TemplateError as exc:
                failure = str(exc)
            state = worst([m.state for m in metrics.values()])
            value["metrics"] = {k: m.value for k, m in metrics.items()}
            if state is State.CRITICAL and common.on_critical == "fail":
                crit = [
                    f"{k}={shown_number(m.value)} ({m.critical})"
                    for k, m in metrics.items()
                    if m.state is State.CRITICAL and m.value is not None
                ]
                failure = "critical threshold: " + ", ".join(crit)
        until_met = True
        if common.until:
            value["state"] = "failed" if failure else state.value
            try:
                until_met = failure is None and holds(common.until, rctx)
            except TemplateError as exc:
                until_met, failure = False, failure or f"until: {exc}"
            retry = not until_met
        else:
            retry = failure is not None and common.retry is not None
        if retry and self.run.interrupted:
            retry = False
        return _Attempt(data, failure, state, metrics, retry=retry, until_met=until_met)
