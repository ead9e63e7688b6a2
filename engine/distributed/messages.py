"""What the controller and the workers say to each other.

One task per host walk (WalkOrder, through Celery to the zone's queue); after
that, small messages between mailboxes. Worker → controller messages carry the
events the walk emitted since the last message (the controller emits them into
its own bus: console, history and reports see them as from a local host).
Controller → worker messages answer a question or carry the run's stop state.
All are pickled and sealed (seal.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.events import Event
from engine.execution.context import RunOptions
from engine.format.model import Runbook
from engine.inventory.host import Host
from engine.results import StepResult

# (reason, interrupted): the controller's stop flag, or None while the run goes on.
StopState = tuple[str, bool] | None


@dataclass
class WalkOrder:
    """The Celery task: walk one host through the run's runbook, in `host.zone`.

    Only what is the host's own: the rest (RunShared) is the same for every
    host and reaches each worker process once, with its first host's go."""

    run_id: str
    controller: str  # the run's mailbox
    host: Host
    jump_hosts: dict[str, Host]  # the host's jump chain, by name
    resume_results: dict[str, StepResult]  # this host's steps a resumed run finished
    resume_unknown: frozenset[str]  # this host's steps that may have run
    sent_at: float


@dataclass
class RunShared:
    """What every walk of a run shares."""

    runbook: Runbook  # parsed and validated by the controller; its digest is recorded
    params: dict[str, Any]
    secret_params: list[str]
    options: RunOptions  # without resume state or stand-in
    run_info: dict[str, Any]
    linear: bool  # wait for the controller between top-level steps
    step_mode: bool  # --step: ask the controller before every step


# ------------------------------------------------------------ worker → controller


@dataclass
class ToController:
    run_id: str
    worker: str
    host: str
    events: list[Event] = field(default_factory=list, kw_only=True)


@dataclass
class Begin(ToController):
    """The worker took the walk; its mailbox is `reply_to`. Answered go / stop."""

    reply_to: str
    ask_id: int


@dataclass
class Ask(ToController):
    """A question only the controller can answer: an approval, a secret, a
    run_once result, whether a step's start is recorded. Answered by Reply."""

    ask_id: int
    question: tuple[Any, ...]


@dataclass
class Yield(ToController):
    """A top-level step ended. In a linear run (`ask_id` set) the walk then
    waits for the Reply that opens its next round."""

    ask_id: int = 0


@dataclass
class Events(ToController):
    """Events that should not wait for the walk's next question (log lines)."""


@dataclass
class End(ToController):
    """The walk is over; the host's final state."""

    unreachable: str | None
    aborted: str | None


@dataclass
class OnceDone(ToController):
    """A run_once step this host owned has ended: its result, for the others."""

    key: str
    result: StepResult | None = None
    unreachable: str | None = None
    hand_over: bool = False


@dataclass
class Alive(ToController):
    """A worker's heartbeat, once a second per run it walks hosts of."""


# ------------------------------------------------------------ controller → worker


@dataclass
class ToWorker:
    run_id: str
    host: str  # "" for the whole run


@dataclass
class Reply(ToWorker):
    ask_id: int
    value: Any = None
    error: tuple[str, str] | None = None  # (kind, message): raised on the worker
    stop: StopState = None
    shared: RunShared | None = None  # with a worker process's first go of the run


@dataclass
class Beat(ToWorker):
    """The controller is alive, once a second; the run's stop state with it."""

    stop: StopState = None
    kill: int = 0  # how many times running steps were ordered killed
