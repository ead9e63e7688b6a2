"""What one run shares across its hosts: options, the event bus, the operator,
the stop flag (Ctrl-C, max_fail), run_once results, the cancels of the second
Ctrl-C (cancel.py) and the bound on open connections (connections/pool.py).

Kept apart from executor.py so the runner and the step walk share one small
vocabulary without either reaching into the other.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.connections.base import Connection
from engine.connections.output import DEFAULT_LIMIT, OutputSpec
from engine.connections.pool import ConnectionLimit
from engine.errors import Aborted, HostUnreachable, RecordLost
from engine.events import Event, EventBus
from engine.inventory.host import Host
from engine.redaction import Redactor
from engine.results import StepResult
from engine.secrets import Secrets

from .approvals import Operator
from .cancel import Cancellers

if TYPE_CHECKING:
    from engine.format.model import Step
    from engine.steps.base import StepContext, StepType


# (step, its type) → what runs instead of the type's run(spec, ctx).
StandIn = Callable[["Step", "StepType"], Callable[[Any, "StepContext"], dict[str, Any]]]


class Interrupted(Aborted):
    """Ctrl-C: stop now, run no cleanup steps, leave the run resumable."""


@dataclass
class RunOptions:
    dry_run: bool = False
    forks: int = 10
    max_connections: int = 256  # open at once (threads, sockets): see ConnectionLimit
    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    start_at: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    # step ids (per host) that already succeeded in the run being resumed, with their results
    resume_results: dict[str, dict[str, StepResult]] = field(default_factory=dict)
    # step ids (per host) that may have run in the resumed run: skipped, not run again
    resume_unknown: dict[str, frozenset[str]] = field(default_factory=dict)
    output_limit: int = DEFAULT_LIMIT  # bytes of each output stream a step result keeps
    keep_output: Path | None = None  # the whole output of every command goes under here
    timeout: float | None = None  # --timeout: seconds for the whole run, over the runbook's
    incident: str | None = None  # --incident: the incident this run belongs to
    # `runbook test` (engine/testing): what runs in place of each typed step's
    # type, given the step and its type; no delay is waited for either.
    stand_in: StandIn | None = None


class RunOnce:
    """Runs a `run_once` step on the first host that reaches it; others share the result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, tuple[threading.Event, list[StepResult]]] = {}

    def get_or_run(
        self,
        key: str,
        fn: Callable[[], StepResult],
        may_hand_over: Callable[[], bool] = lambda: False,
    ) -> tuple[StepResult, bool]:
        """The step's result and whether this host ran it.

        An owner whose host turns out unreachable before anything ran there
        (`may_hand_over()`: it never connected) hands the step to the next host
        that reaches it, as Ansible runs run_once on the first available host;
        otherwise every waiting host would be aborted by one dead host.
        """
        while True:
            with self._lock:
                entry = self._results.get(key)
                owner = entry is None
                if owner:
                    entry = self._results[key] = (threading.Event(), [])
            assert entry is not None
            done, box = entry
            if owner:
                try:
                    box.append(fn())
                except HostUnreachable:
                    if may_hand_over():
                        with self._lock:  # before done.set(): waiters find it gone
                            del self._results[key]
                    raise
                finally:
                    done.set()
                return box[0], True
            done.wait()
            if box:
                return box[0], False
            with self._lock:
                handed_over = self._results.get(key) is not entry
            if not handed_over:
                raise Aborted(f"run_once step {key} did not complete on its first host")


@dataclass
class RunContext:
    """What every host of one run shares."""

    run_id: str
    options: RunOptions
    bus: EventBus
    redactor: Redactor
    secrets: Secrets
    operator: Operator
    run_info: dict[str, Any]
    connect: Callable[[Host], Connection]
    connection_limit: ConnectionLimit | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # no new steps
    stop_reason: str = ""
    stopped_by_failure: bool = False  # max_fail: the run failed, nobody aborted it
    interrupted: bool = False
    run_once: RunOnce = field(default_factory=RunOnce)
    cancellers: Cancellers = field(default_factory=Cancellers)

    def emit(self, event: Event) -> bool:
        """Hand `event` to the processors. False when the run history lost it: the
        run then stops as after Ctrl-C twice (no step, no cleanup starts), so
        that nothing it cannot record runs, and resume knows what may have run."""
        try:
            self.bus.emit(event)
        except RecordLost as exc:
            self.request_stop(f"stopped: {exc}; nothing started after it", interrupt=True)
            return False
        return True

    def emit_all(self, events: list[Event]) -> bool:
        """`emit` for several events at once, in one batch (engine/distributed)."""
        try:
            self.bus.emit_all(events)
        except RecordLost as exc:
            self.request_stop(f"stopped: {exc}; nothing started after it", interrupt=True)
            return False
        return True

    def output_for(self, host: str, step_id: str) -> OutputSpec:
        """What a command of `step_id` on `host` keeps of its output, and where
        the whole of it goes when the operator asked (`--keep-output`)."""
        files = None
        if self.options.keep_output is not None:
            where = self.options.keep_output / self.run_id / _safe_name(host)
            files = (
                where / f"{_safe_name(step_id)}.stdout",
                where / f"{_safe_name(step_id)}.stderr",
            )
        return OutputSpec(self.options.output_limit, files, self.redactor)

    def request_stop(self, reason: str, interrupt: bool = False, failure: bool = False) -> None:
        """No new step starts. `interrupt`: kill what runs (Ctrl-C twice);
        `failure`: hosts failed (max_fail), not the operator's decision."""
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stopped_by_failure = failure
        self.interrupted = self.interrupted or interrupt
        self.stop.set()

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the run is interrupted; True when it was."""
        if self.options.stand_in is not None:  # a test of the runbook: no time passes
            return self.interrupted
        return self.stop.wait(seconds) and self.interrupted


def _safe_name(name: str) -> str:
    """A host or step name as one path component (no `/`, no `..`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._@-]", "_", name).lstrip(".")
    return cleaned or "_"
