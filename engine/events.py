"""Events of a run, and the processors that consume them.

The executor and runner only emit events; console output, JSON, JUnit, HTML and
the history store are processors listening to the same stream. Every event is
redacted once (`Event.redacted`, through engine/redaction.py), on its way into
the bus, so no processor can leak a secret or a `sensitive` step's result by
forgetting to redact.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from .redaction import Redactor, redact_result, redact_run
from .results import RunResult, StepResult


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Event:
    run_id: str
    at: str = field(default_factory=now_iso, kw_only=True)

    kind = "event"

    def redacted(self, redactor: Redactor) -> Event:
        """This event as processors may see it. Every text, mapping and list field
        goes through the redactor, so a new event type is safe without a rule of
        its own, except the identifiers in IDENTITY; events carrying results add
        the `sensitive` rule."""
        if not redactor:
            return self
        changes = {
            f.name: redactor(value)
            for f in fields(self)
            if f.name not in IDENTITY
            and isinstance(value := getattr(self, f.name), str | dict | list)
        }
        return replace(self, **changes)


# Fields that name things rather than say things: the run, hosts, steps, files,
# the operator. They are never masked: history keys rows by them (a step's start
# is matched to its finish by host and step id) and resume reads the runbook path,
# hosts and inventory back, so a secret that merely equals a host or directory
# name ("postgres") must not turn them into "***". The engine writes them; no
# template output reaches them. Step names are rendered (`Queries in {{ db }}`),
# so `name` is free text, masked like any other.
IDENTITY = frozenset(
    {
        "run_id",
        "at",
        "runbook",
        "path",
        "hosts",
        "inventory",
        "inventory_digest",
        "runbook_digest",
        "resumed_from",
        "operator",
        "host",
        "step_id",
    }
)


@dataclass
class RunStarted(Event):
    runbook: str
    path: str
    hosts: list[str]
    params: dict[str, Any]
    operator: str
    dry_run: bool
    inventory: str = "localhost"
    inventory_digest: str = ""
    runbook_digest: str = ""
    resumed_from: str | None = None
    kind = "run_started"


@dataclass
class StepStarted(Event):
    host: str
    step_id: str
    name: str
    depth: int = 0
    kind = "step_started"


@dataclass
class StepFinished(Event):
    host: str
    result: StepResult
    depth: int = 0
    kind = "step_finished"

    def redacted(self, redactor: Redactor) -> StepFinished:
        result = redact_result(self.result, redactor)  # a sensitive step even without secrets
        return self if result is self.result else replace(self, result=result)


@dataclass
class LogMessage(Event):
    host: str
    step_id: str
    level: str
    message: str
    kind = "log"


@dataclass
class Approval(Event):
    host: str
    step_id: str
    approved: bool
    by: str
    prompt: str
    kind = "approval"


@dataclass
class HostFinished(Event):
    host: str
    state: str
    reason: str = ""  # why it is not ok (HostResult.reason): unreachable, failed, aborted
    not_started: bool = False  # the run stopped before this host's batch
    worker: str = ""  # the `runbook worker` that walked it; "" for the controller
    kind = "host_finished"


@dataclass
class RunAborted(Event):
    reason: str
    kind = "run_aborted"


@dataclass
class RunFinished(Event):
    result: RunResult
    kind = "run_finished"

    def redacted(self, redactor: Redactor) -> RunFinished:
        return replace(self, result=redact_run(self.result, redactor))


class Processor(Protocol):
    """Consumes events. Called from worker threads, one event at a time.

    A processor may also have `handle_batch(events)`: the bus then hands it the
    events that queued up together in one call (the history commits them in one
    transaction); without it, `handle` is called for each, in order.
    """

    def handle(self, event: Event) -> None: ...


class _Ticket:
    """One emitted event's place in the queue; `wake` is held until it is handled
    (or until its thread is handed the batch to handle)."""

    __slots__ = ("done", "error", "wake")

    def __init__(self) -> None:
        self.done = False
        self.error: BaseException | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class EventBus:
    """Fans events out to processors, redacted, in order, one batch at a time.

    `emit` returns once every processor has handled the event, as if each event
    were handled under one lock. Events that other hosts' threads emit while a
    batch is being handled queue up, and the next emitter hands them all to the
    processors at once: with 50 hosts finishing a step together that is one
    history transaction and one console write instead of fifty (group commit).
    No thread of its own: the emitter at the head of the queue does the work, and
    each waiting emitter is woken once, when its event is handled or when the
    batch is handed to it (no wake-ups of all waiters to re-check).
    """

    def __init__(self, processors: list[Processor], redactor: Redactor) -> None:
        self.processors = list(processors)
        self.redactor = redactor
        self._lock = threading.Lock()
        self._queue: list[tuple[Event, _Ticket]] = []
        self._busy = False  # a thread is handling a batch

    def emit(self, event: Event) -> None:
        ticket = _Ticket()
        safe = event.redacted(self.redactor)  # outside the lock: others queue meanwhile
        with self._lock:
            self._queue.append((safe, ticket))
            wait, self._busy = self._busy, True
        self._await(ticket, wait)

    def emit_all(self, events: list[Event]) -> None:
        """Several events, in order, handled in one batch (one history commit):
        what a distributed run's controller receives from its workers at once."""
        if not events:
            return
        ticket = _Ticket()  # one for all: each entry of the batch carries it
        safe = [event.redacted(self.redactor) for event in events]
        with self._lock:
            self._queue.extend((event, ticket) for event in safe)
            wait, self._busy = self._busy, True
        self._await(ticket, wait)

    def _await(self, ticket: _Ticket, wait: bool) -> None:
        """Until `ticket`'s events are handled, by another emitter or by this one."""
        if wait:
            try:
                ticket.wake.acquire()  # handled, or handed the batch
            except BaseException:  # interrupted while waiting: leave the queue working
                self._abandon(ticket)
                raise
        if not ticket.done:
            self._drain()
        if ticket.error is not None:
            raise ticket.error

    def _abandon(self, ticket: _Ticket) -> None:
        """An emitter stops waiting: its event is dropped if not yet taken, and if
        the batch was handed to it, it is handed on, so no emitter waits forever."""
        with self._lock:
            if ticket.done:
                return
            self._queue = [(e, t) for e, t in self._queue if t is not ticket]
            if ticket.wake.acquire(blocking=False):  # it was handed the batch
                if self._queue:
                    self._queue[0][1].wake.release()
                else:
                    self._busy = False

    def _drain(self) -> None:
        """Handle everything queued (this thread's event among it), then pass on."""
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._handle(batch)
        finally:
            with self._lock:
                for ticket in {id(t): t for _, t in batch}.values():  # emit_all shares one
                    ticket.done = True
                    ticket.wake.release()
                if self._queue:  # arrived meanwhile: its first emitter handles them
                    self._queue[0][1].wake.release()
                else:
                    self._busy = False

    def _handle(self, batch: list[tuple[Event, _Ticket]]) -> None:
        events = [e for e, _ in batch]
        for processor in self.processors:
            handle_batch = getattr(processor, "handle_batch", None)
            if handle_batch is not None and len(batch) > 1:
                try:
                    handle_batch(events)
                except BaseException as exc:  # reaches every emitter of the batch
                    for _, ticket in batch:
                        ticket.error = ticket.error or exc
                continue
            for event, ticket in batch:
                try:
                    processor.handle(event)
                except BaseException as exc:  # reaches the event's emitter, as before
                    ticket.error = ticket.error or exc
