"""What runs in place of a step type while a case is tested.

Plugged in at one place (RunOptions.stand_in, called by execution/attempts.py
for each typed step): the type's `run(spec, ctx)` is replaced, and nothing
else. So a stand-in result goes through the same handling as a real one
(failed_when, the type's own failure rule, thresholds, until/retry, register,
loops, rescue), and the thresholds a case proves are really evaluated.

Control steps (set, assert, log, wait, manual) run for real: they touch no
host. Every other type is answered from the case's `results:`; one without an
answer stops its host, and the case reports it: nothing real is ever touched.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.errors import Aborted, HostUnreachable, StepError, StepTimeout

if TYPE_CHECKING:
    from engine.format.model import Step
    from engine.steps.base import StepContext, StepType

# Types that touch no host or server: run as written.
CONTROL_TYPES = frozenset({"set", "assert", "log", "wait", "manual"})
# Keys of a stand-in that say how the step ended, rather than what it returned.
_ENDINGS = ("failed", "error", "timeout", "unreachable")

RunFn = Callable[[Any, "StepContext"], dict[str, Any]]


class MissingStandIn(Aborted):
    """A step would have touched a host, and the case gives no result for it."""


class StandIns:
    """One case's stand-in results, handed out attempt by attempt."""

    def __init__(self, case_name: str, results: dict[str, Any]) -> None:
        self.case_name = case_name
        self.results = results
        self.missing: list[str] = []  # "host: step id", in the order met
        self._calls: dict[tuple[str, str, int | None], int] = {}
        self._lock = threading.Lock()

    def __call__(self, step: Step, stype: StepType) -> RunFn:
        """RunOptions.stand_in: what runs for `step` instead of `stype.run`."""
        looped = step.common.loop is not None

        def run(spec: Any, ctx: StepContext) -> dict[str, Any]:
            if ctx.step_id in self.results:
                given = self._pick(ctx, looped)
                return _result(stype.name, spec, ctx, given)
            if stype.name in CONTROL_TYPES:
                return stype.run(spec, ctx)
            with self._lock:
                self.missing.append(f"{ctx.host.name}: {ctx.step_id}")
            raise MissingStandIn(
                f"step {ctx.step_id} has no result in case {self.case_name!r} "
                f"(a {stype.name} step: give it under results.{ctx.step_id})"
            )

        return run

    def _pick(self, ctx: StepContext, looped: bool) -> dict[str, Any]:
        """This attempt's result. A list is per item for a loop (an item's own
        list: per attempt), else per attempt; the last one repeats."""
        given = self.results[ctx.step_id]
        index = ctx.template_context.get("loop_index") if looped else None
        with self._lock:
            key = (ctx.host.name, ctx.step_id, index)
            attempt = self._calls.get(key, 0)
            self._calls[key] = attempt + 1
        if isinstance(given, list) and index is not None:
            if index >= len(given):
                raise MissingStandIn(
                    f"step {ctx.step_id}: case {self.case_name!r} gives results for "
                    f"{len(given)} items, the loop reached item {index + 1}"
                )
            given = given[index]
        if isinstance(given, list):
            given = given[min(attempt, len(given) - 1)]
        assert isinstance(given, dict)  # checked when the file was read
        return given


def _result(type_name: str, spec: Any, ctx: StepContext, given: dict[str, Any]) -> dict[str, Any]:
    """A stand-in as the step type would have returned it, or raised it."""
    data = {
        k: v for k, v in given.items() if k not in ("failed", "error", "timeout", "unreachable")
    }
    if type_name == "shell":
        data = _shell(spec, data)
    if given.get("unreachable"):
        raise HostUnreachable(ctx.host.name, str(given["unreachable"]))
    if given.get("timeout"):
        raise StepTimeout(f"timed out (stand-in): {given['timeout']}")
    if given.get("failed") or given.get("error"):
        last = str(data.get("stderr") or "").strip().splitlines()[-1:]
        raise StepError(str(given.get("error") or (last[0] if last else "failed")), data=data)
    return data


def _shell(spec: Any, data: dict[str, Any]) -> dict[str, Any]:
    """What `shell` returns, from what the case gave: rc 0 and empty output by
    default, stdout_lines and `parse: json` derived as the real type does."""
    out = {"rc": 0, "stdout": "", "stderr": "", **data}
    for stream in ("stdout", "stderr"):
        if not isinstance(out[stream], str):
            out[stream] = str(out[stream])  # `stdout: 95` in YAML is the text "95"
    out.setdefault("stdout_lines", out["stdout"].splitlines())
    if getattr(spec, "parse", None) == "json" and "json" not in out:
        try:
            out["json"] = json.loads(out["stdout"])
        except json.JSONDecodeError as exc:
            if out["rc"] == 0:
                raise StepError(
                    f"stdout is not JSON ({exc.msg} at char {exc.pos})", data=out
                ) from None
    return out
