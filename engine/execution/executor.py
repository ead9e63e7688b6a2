"""One host's walk through a runbook's steps.

For each step: tags / --start-at / `when` → approval → block, include, or a
typed step (attempts.py: render the body, run it with retry/until/timeout,
judge failed_when / assert / thresholds) → a StepResult, registered under
`steps.<id>` for later templates and emitted as an event. Errors become data
(Nornir's habit): only an unreachable host, an operator's abort or an interrupt
leave the walk early.

`walk()` is a generator that yields after every top-level step, so the runner
can drive hosts in lockstep (strategy: linear) or let each run free.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any

from engine.connections.pool import ConnectionHolder
from engine.errors import Aborted, HostUnreachable, StepError, TemplateError, UsageError
from engine.events import Approval, HostFinished, StepFinished, StepStarted
from engine.format.model import LoopUntil, Runbook, Step
from engine.format.params import resolve_params
from engine.inventory.host import Host
from engine.results import KEPT, HostResult, State, StepResult, worst
from engine.templating import holds, is_template, render_value

from .approvals import gate_policy
from .attempts import StepScope, TypedStepRun
from .context import Interrupted, RunContext
from .loops import LoopRun

# A resumed step that may have run already: its start was recorded, its end not.
UNKNOWN_SKIP = (
    "resumed: it may have run (its start was recorded, its end was not); "
    "not run again without --rerun-unknown"
)

# Keys of StepResult.template_value() that are computed, not data of the step.
_DERIVED = frozenset({"failed", "error"})


class HostExecutor:
    def __init__(
        self,
        run: RunContext,
        host: Host,
        runbook: Runbook,
        params: dict[str, Any],
        *,
        connection: ConnectionHolder | None = None,
        id_prefix: str = "",
        depth: int = 0,
        result: HostResult | None = None,
    ) -> None:
        self.run = run
        self.host = host
        self.runbook = runbook
        self.params = params
        self.connection = connection or ConnectionHolder(host, run.connect, run.connection_limit)
        self.id_prefix = id_prefix
        self.depth = depth
        self.result = result or HostResult(host.name)
        self.results: dict[str, dict[str, Any]] = {}
        self.vars: dict[str, Any] = {}
        self.dry_skipped: set[str] = set()  # steps a dry run did not execute
        self._names: dict[str, str] = {}  # step id → its name as rendered on this host
        self.started = run.options.start_at is None or bool(id_prefix)
        self.resumed = dict(run.options.resume_results.get(host.name, {})) if not id_prefix else {}
        self.unknown = run.options.resume_unknown.get(host.name, frozenset())
        self.context: dict[str, Any] = {
            "params": params,
            "vars": self.vars,
            "host": host.template_value(),
            "steps": self.results,
            "run": run.run_info,
            # This file's own name and place: `{{ runbook.dir }}/helper.sh` finds a
            # script kept beside the runbook (an include sees its own file).
            "runbook": {
                "name": runbook.name,
                "path": os.path.abspath(runbook.path),
                "dir": os.path.dirname(os.path.abspath(runbook.path)),
            },
            "env": run.secrets.environment(),
            "secret": run.secrets,
        }

    # ------------------------------------------------------------------ walk

    def walk(self) -> Iterator[StepResult | None]:
        """Run every step, then rescue on failure, then always; yield after each."""
        self.result.walking = True
        try:
            yield from self._main()
        except HostUnreachable as exc:
            self.result.unreachable = str(exc)
        except Aborted as exc:  # declined approval, max_fail, interrupt
            self.result.aborted = str(exc)
        except (TemplateError, UsageError) as exc:
            self._record(self._failed_pseudo("vars", "runbook vars", str(exc)))
        if not (self.result.unreachable or self.run.interrupted):
            # Cleanup runs even after a declined approval: it is what `always` is for.
            try:
                for step in self.runbook.always:
                    yield self.run_step(step)
            except HostUnreachable as exc:
                self.result.unreachable = str(exc)
            except Aborted as exc:
                self.result.aborted = self.result.aborted or str(exc)
        self.result.walking = False
        if not self.id_prefix:
            self.run.emit(
                HostFinished(
                    self.run.run_id,
                    host=self.host.name,
                    state=self.result.state,
                    reason=self.result.reason(),
                )
            )

    def _main(self) -> Iterator[StepResult]:
        self._init_vars()
        # Failures so far: one stops the walk unless its step says keep_going.
        failures: list[StepResult] = []
        for step in self.runbook.steps:
            if self.run.stop.is_set():
                if self.run.interrupted:
                    raise Interrupted(self.run.stop_reason)
                self.result.aborted = self.run.stop_reason
                return
            res = self.run_step(step)
            yield res
            if res.counted_state.is_failure:
                failures.append(res)
                if not step.common.keep_going:
                    break
        if not failures or not self.runbook.rescue:
            return
        for step in self.runbook.rescue:
            res = self.run_step(step)
            yield res
            if res.counted_state.is_failure:
                return
        for failure in failures:
            failure.rescued = True

    def run_all(self) -> HostResult:
        for _ in self.walk():
            pass
        return self.result

    def _init_vars(self) -> None:
        """inventory vars < runbook vars (rendered in order) < -e extra vars."""
        self.vars.update(self.host.vars)
        extra = self.run.options.extra_vars if not self.id_prefix else {}
        self.vars.update(extra)  # first, so runbook vars derived from them see them
        for name, value in self.runbook.header.vars.items():
            if name in extra:
                continue
            try:
                self.vars[name] = render_value(value, self.context)
            except TemplateError as exc:
                raise TemplateError(exc.reason, field=f"vars.{name}") from None

    # ------------------------------------------------------------ one step

    def run_step(
        self, step: Step, depth: int = 0, tags: frozenset[str] = frozenset()
    ) -> StepResult:
        depth += self.depth
        tags = tags | frozenset(step.common.tags)
        name = self._shown_name(step)
        skip = self._skip_reason(step, tags)
        if skip:
            return self._record(self._skipped(step, skip), depth)
        resumed = self.resumed.pop(self._sid(step), None)
        if resumed is not None:
            return self._resumed(step, resumed, depth)
        if self._sid(step) in self.unknown:
            return self._record(self._skipped(step, UNKNOWN_SKIP), depth)
        when = step.common.when
        if when is not None and step.common.loop is None:  # a loop asks it per item
            try:
                go = holds(when, self.context)
            except TemplateError as exc:
                return self._record(self._template_failure(step, "when", exc), depth)
            if not go:
                return self._record(self._skipped(step, f"when: {when}"), depth)
        if self.run.stop.is_set() and self.run.interrupted:
            raise Interrupted(self.run.stop_reason or "interrupted")
        started = StepStarted(
            self.run.run_id, host=self.host.name, step_id=self._sid(step), name=name,
            depth=depth,
        )  # fmt: skip
        if not self.run.emit(started):  # its start is not in the history: it must not run
            raise Interrupted(self.run.stop_reason)
        if self.run.operator.step_gate(self.host.name, self._sid(step), name) == "skip":
            return self._record(self._skipped(step, "skipped by the operator (--step)"), depth)
        if step.common.run_once:
            res, owner = self.run.run_once.get_or_run(
                self._sid(step),
                lambda: self._gated(step, depth, tags),
                may_hand_over=lambda: not self.connection.opened,
            )
            if not owner:
                res = _copy_for(res, self.host.name)
                res.skip_reason = "run_once: result shared from " + (
                    res.data.get("_host") or "first host"
                )
        else:
            res = self._gated(step, depth, tags)
        return self._record(res, depth)

    def _resumed(self, step: Step, kept: StepResult, depth: int) -> StepResult:
        """A step the resumed run finished: not run again. Its recorded result
        (state, data, metrics) stands, marked kept, for templates and reports."""
        res = replace(
            kept,
            step_id=self._sid(step),
            name=step.name,
            host=self.host.name,
            skip_reason=KEPT,
            dry_run=False,
            sensitive=step.common.sensitive,
        )
        self._record(res, depth)
        if step.type == "set":
            self.vars.update(res.data)  # what the `set` did to vars, done again
        for child in step.walk()[1:]:  # a finished block: its children's results too
            child_kept = self.resumed.pop(self._sid(child), None)
            if child_kept is not None:
                self.results[child.id] = child_kept.template_value()
                if child.type == "set":
                    self.vars.update(child_kept.data)
        return res

    def _no_items(self, step: Step) -> bool:
        """A looped step with no item to run (an empty list, or none passing its
        `when`): it would do nothing, so a confirm on it must not be asked (a
        decline would stop the host for nothing). A list that cannot be
        rendered is left to the loop to report."""
        loop = step.common.loop
        if loop is None or isinstance(loop, LoopUntil):
            return False
        try:
            items = render_value(loop, self.context)
        except TemplateError:
            return False
        if not isinstance(items, list | tuple):
            return False
        when = step.common.when
        if when is None or not items:
            return not items
        # `when` on a loop is asked per item: none passing is no work either.
        var = step.common.loop_var
        for index, item in enumerate(items):
            context = {**self.context, var: item, "loop_index": index, "previous": None}
            try:
                if holds(when, context):
                    return False
            except TemplateError:
                return False  # the loop will say why, item by item
        return True

    def _gated(self, step: Step, depth: int, tags: frozenset[str]) -> StepResult:
        by: str | None = None
        if step.common.confirm is not None:
            if self._no_items(step):
                return self._skipped(step, "loop: no items to run")  # nothing to approve
            try:
                prompt = str(render_value(step.common.confirm, self.context))
            except TemplateError as exc:
                return self._template_failure(step, "confirm", exc)
            if self.run.options.dry_run:
                res = self._skipped(step, f"dry run: would ask {prompt!r}")
                res.dry_run = True
                # What it would have done is not done: later checks may miss it.
                self.dry_skipped.add(step.id)
                return res
            approved, by = self.run.operator.confirm(
                self.host.name, self._sid(step), prompt, gate_policy(step.common)
            )
            answer = Approval(
                self.run.run_id, host=self.host.name, step_id=self._sid(step),
                approved=approved, by=by, prompt=prompt,
            )  # fmt: skip
            if not self.run.emit(answer):  # an approval the audit trail lacks: go no further
                raise Interrupted(self.run.stop_reason)
            if not approved:
                res = self._skipped(step, f"declined by {by}")
                res.state = State.ABORTED
                res.error = f"approval declined: {prompt}"
                self._record(res, depth)
                raise Aborted(f"{self.host.name}: step {self._sid(step)} was not approved ({by})")
        try:
            res = self._dispatch(step, depth, tags)
        except Aborted as exc:
            # A manual step refused, an interrupt: show and record which step stopped
            # the host, and why, before the host's walk ends.
            stopped = self._failed_pseudo(self._sid(step), step.name, str(exc))
            stopped.state, stopped.approved_by = State.ABORTED, by
            stopped.sensitive = step.common.sensitive
            self._record(stopped, depth)
            raise
        if step.common.confirm is not None:
            res.approved_by = by
        return res

    def _dispatch(self, step: Step, depth: int, tags: frozenset[str]) -> StepResult:
        if step.type == "block":
            return self._run_block(step, depth, tags)
        if step.type == "include":
            return self._run_include(step, depth)
        return self._run_typed(step)

    # ---------------------------------------------------------- typed steps

    def _run_typed(self, step: Step) -> StepResult:
        scope = StepScope(
            host=self.host,
            step_id=self._sid(step),
            context=self.context,
            variables=self.vars,
            connection=self.connection.get,
            rerun=self.rerun,
            dry_skipped=self.dry_skipped,
        )
        if step.common.loop is not None:
            return LoopRun(self.run, step, scope).result()
        return TypedStepRun(self.run, step, scope).result()

    def rerun(self, step_id: str) -> dict[str, Any]:
        """`wait: {check: id}`: run an earlier step again; its result becomes ours."""
        target = next((s for s in self.runbook.all_steps() if s.id == step_id), None)
        if target is None or target.type in ("block", "include"):
            raise StepError(f"wait.check: {step_id!r} is not a step that can be re-run")
        res = self._run_typed(target)
        self.results[target.id] = res.template_value()
        if res.state is State.FAILED:
            raise StepError(f"check {step_id} failed: {res.error}", data=res.data)
        return dict(res.data)

    # ------------------------------------------------------ block / include

    def _run_block(self, step: Step, depth: int, tags: frozenset[str]) -> StepResult:
        started = time.monotonic()
        children = step.children
        failed: StepResult | None = None  # the first failure
        kept_going: list[StepResult] = []  # every failure (keep_going steps go on)
        rescued = False
        states: list[State] = []
        try:
            for child in children.get("steps", []):
                res = self.run_step(child, depth + 1 - self.depth, tags)
                states.append(res.counted_state)
                if res.counted_state.is_failure:
                    kept_going.append(res)
                    failed = failed or res
                    if not child.common.keep_going:
                        break
            if failed is not None and children.get("rescue"):
                rescued = True
                for child in children["rescue"]:
                    res = self.run_step(child, depth + 1 - self.depth, tags)
                    states.append(res.counted_state)
                    if res.counted_state.is_failure:
                        rescued = False
                        break
                if rescued:
                    for res in kept_going:
                        res.rescued = True
        finally:
            if not self.run.interrupted:
                for child in children.get("always", []):
                    res = self.run_step(child, depth + 1 - self.depth, tags)
                    states.append(res.counted_state)
        if rescued:
            states = [s for s in states if not s.is_failure]
        state = worst(states)
        error = None
        if failed is not None and not rescued:
            state, error = State.FAILED, f"step {failed.step_id} failed: {failed.error}"
        return StepResult(
            step_id=self._sid(step),
            name=step.name,
            host=self.host.name,
            state=state,
            data={"rescued": rescued},
            duration_ms=int((time.monotonic() - started) * 1000),
            attempts=1,
            dry_run=self.run.options.dry_run,
            error=error,
            rescued=rescued,
            ignored=error is not None and step.common.ignore_errors,
        )

    def _run_include(self, step: Step, depth: int) -> StepResult:
        started = time.monotonic()
        included = step.included
        assert included is not None  # the loader refuses includes it could not load
        try:
            raw_params = render_value(step.body.get("params", {}), self.context)
            params = resolve_params(included.params, raw_params)
        except (TemplateError, UsageError) as exc:
            return self._failed_pseudo(step.id, step.name, f"include params: {exc}")
        sub = HostExecutor(
            self.run,
            self.host,
            included,
            params,
            connection=self.connection,
            id_prefix=f"{self.id_prefix}{step.id}.",
            depth=depth + 1,
            result=self.result,
        )
        sub.started = True
        sub.run_all()
        own = [r for r in self.result.steps if r.step_id.startswith(sub.id_prefix)]
        state = worst([r.counted_state for r in own])
        failed = next((r for r in own if r.counted_state.is_failure), None)
        if sub.result is self.result and (self.result.aborted or self.result.unreachable):
            raise Aborted(self.result.aborted or self.result.unreachable or "aborted")
        return StepResult(
            step_id=self._sid(step),
            name=step.name,
            host=self.host.name,
            state=State.FAILED if failed else state,
            data={"steps": sub.results},
            duration_ms=int((time.monotonic() - started) * 1000),
            attempts=1,
            dry_run=self.run.options.dry_run,
            error=f"step {failed.step_id} failed: {failed.error}" if failed else None,
            ignored=failed is not None and step.common.ignore_errors,
        )

    # ------------------------------------------------------------- helpers

    def _sid(self, step: Step) -> str:
        return self.id_prefix + step.id

    def _skip_reason(self, step: Step, tags: frozenset[str]) -> str | None:
        opts = self.run.options
        if not self.started:
            if step.id == opts.start_at:
                self.started = True
            elif step.type == "block" and any(s.id == opts.start_at for s in step.walk()):
                pass  # the start is inside this block: enter it
            else:
                return f"before --start-at {opts.start_at}"
        if opts.skip_tags and tags & opts.skip_tags:
            return "tag skipped: " + ", ".join(sorted(tags & opts.skip_tags))
        if opts.tags and not tags & opts.tags and step.type != "block":
            return "not tagged " + ", ".join(sorted(opts.tags))
        return None

    def _skipped(self, step: Step, reason: str) -> StepResult:
        return StepResult(
            step_id=self._sid(step),
            name=step.name,
            host=self.host.name,
            state=State.SKIPPED,
            dry_run=self.run.options.dry_run,
            skip_reason=reason,
            sensitive=step.common.sensitive,
        )

    def _template_failure(self, step: Step, field_name: str, exc: TemplateError) -> StepResult:
        res = self._failed_pseudo(self._sid(step), step.name, f"{field_name}: {exc.reason}")
        if self.run.options.dry_run and self.dry_skipped:
            # A dry run did not execute an earlier step this one depends on.
            res.state, res.error = State.SKIPPED, None
            res.skip_reason = f"dry run: {field_name} depends on a step that did not run"
        res.ignored = res.state is State.FAILED and step.common.ignore_errors
        return res

    def _failed_pseudo(self, step_id: str, name: str, error: str) -> StepResult:
        return StepResult(
            step_id=step_id,
            name=name,
            host=self.host.name,
            state=State.FAILED,
            dry_run=self.run.options.dry_run,
            error=error,
        )

    def _shown_name(self, step: Step) -> str:
        """The step's name as this host sees it (`Queries in {{ params.db }}`
        rendered), kept for its result; the name as written if it cannot render
        here (it may read a result that does not exist yet)."""
        name = step.name
        if is_template(name):
            try:
                name = str(render_value(name, self.context))
            except TemplateError:
                pass
        self._names[self._sid(step)] = name
        return name

    def _record(self, res: StepResult, depth: int = 0) -> StepResult:
        res.name = self._names.get(res.step_id, res.name)
        local_id = res.step_id.removeprefix(self.id_prefix)
        self.results[local_id] = res.template_value()
        self.result.steps.append(res)
        # Lost by the history: the run stops before the next step (see RunContext.emit).
        self.run.emit(StepFinished(self.run.run_id, host=self.host.name, result=res, depth=depth))
        return res


def holding(walker: Iterator[Any], holder: ConnectionHolder) -> Generator[Any, None, None]:
    """The host's walk, its connection marked in use during each step and closed
    once the walk is over (a finished host frees its thread and socket at once)."""
    try:
        while True:
            with holder.in_use():
                try:
                    item = next(walker)
                except StopIteration:
                    return
            yield item
    finally:
        try:
            holder.close()
        except Exception:
            pass  # closing is best effort: the host's result is already decided


def _copy_for(res: StepResult, host: str) -> StepResult:
    from dataclasses import replace

    return replace(res, host=host, data=dict(res.data), metrics=dict(res.metrics))
