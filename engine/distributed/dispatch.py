"""The controller's side of a distributed run.

For each host with a zone the runner asks `walker(host, result)` for the
host's walk instead of a local HostExecutor's. The walker sends one Celery
task to the zone's queue and then stands for the remote walk: it yields when
the worker reports a top-level step done and, in a linear run, answers the
worker when the runner opens the next round, so `linear` keeps its meaning
across zones. Everything the operator sees stays here: the worker's events
are emitted into this run's bus (console, history, reports), prompts are asked
at this terminal, secrets are read here and sent sealed, one at a time.

Two threads: one reads the run's mailbox; one beats (tells each worker the
controller lives, with the run's stop state) and watches for walks nobody
took and workers gone silent, which end their hosts unreachable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from engine.errors import Aborted, EngineError, HostUnreachable, SecretError, UsageError
from engine.events import Event, HostFinished, StepFinished, StepStarted
from engine.execution.context import RunContext
from engine.inventory.host import Host
from engine.redaction import redact_dsn
from engine.results import HostResult, StepResult

from .app import make_app, send_walk
from .hub import HEARTBEAT_SECONDS, dead_after, pickup_seconds
from .logs import log_bug
from .mailbox import Outbox, open_mailbox
from .messages import (
    Alive,
    Ask,
    Beat,
    Begin,
    End,
    OnceDone,
    Reply,
    RunShared,
    StopState,
    ToController,
    WalkOrder,
    Yield,
)
from .seal import Sealer, Unauthenticated

log = logging.getLogger("runbook.dispatch")

_END = -1  # in a RemoteHost's inbox: the walk is over
_WAKE = "wake"  # sent by close() to its own mailbox: the reader looks up at once


@dataclass
class RemoteHost:
    host: Host
    result: HostResult
    linear: bool
    inbox: queue.Queue[int] = field(default_factory=queue.Queue)  # ask ids of Yields; _END
    once: queue.Queue[OnceDone] = field(default_factory=queue.Queue)
    sent_at: float = 0.0
    worker: str = ""
    address: str = ""  # the worker's mailbox
    begun: bool = False
    ended: bool = False
    step: str = ""  # the step it last started, for the reason it was cut short
    hand_over: bool = False


class Dispatch:
    def __init__(
        self,
        broker: str,
        ctx: RunContext,
        run: Any,  # engine.execution.runner.Run
        sealer: Sealer,
    ) -> None:
        self.ctx = ctx
        self.run = run
        self.sealer = sealer
        self.app = make_app(broker)
        self.address = f"runbook.run.{ctx.run_id}"
        try:
            self.mailbox = open_mailbox(broker, self.address)
        except Exception as exc:  # said before the run starts: nothing is recorded
            raise UsageError(
                f"broker {redact_dsn(broker)}: cannot reach it ({type(exc).__name__}: "
                f"{ctx.redactor.text(str(exc))})"
            ) from None
        self.outbox = Outbox(self.mailbox, "dispatch-send")
        self.hosts: dict[str, RemoteHost] = {}
        self._seen: dict[str, float] = {}  # worker → when last heard of
        self._lock = threading.Lock()
        self._kills = 0
        self._run_shared: RunShared | None = None
        self._shared_sent: set[str] = set()  # worker mailboxes that have it
        self._closing = threading.Event()
        self.dead_after = dead_after()
        self.pickup = pickup_seconds()
        self._orders: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._receive, name="dispatch-receive", daemon=True),
            threading.Thread(target=self._watch, name="dispatch-watch", daemon=True),
            threading.Thread(target=self._send_orders, name="dispatch-orders", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ the walk

    def walker(self, host: Host, result: HostResult, linear: bool) -> Iterator[None]:
        rh = RemoteHost(host, result, linear)
        with self._lock:
            self.hosts[host.name] = rh
        return self._walk(rh)

    def _walk(self, rh: RemoteHost) -> Iterator[None]:
        rh.result.walking = True
        try:
            self._send_order(rh)
            while True:
                ask_id = rh.inbox.get()
                if ask_id == _END:
                    return
                yield None
                if rh.linear and ask_id:
                    self._reply(rh, ask_id, "advance")  # the runner opened the next round
        finally:
            rh.result.walking = False

    def _send_order(self, rh: RemoteHost) -> None:
        options = self.ctx.options
        name = rh.host.name
        order = WalkOrder(
            run_id=self.ctx.run_id,
            controller=self.address,
            host=_as_written(rh.host),
            jump_hosts={n: _as_written(h) for n, h in self._jump_chain(rh.host).items()},
            resume_results=options.resume_results.get(name, {}),
            resume_unknown=options.resume_unknown.get(name, frozenset()),
            sent_at=time.time(),
        )
        rh.sent_at = time.monotonic()
        assert rh.host.zone is not None
        self._orders.put((rh.host.zone, self.sealer.seal(order)))

    def _send_orders(self) -> None:
        """Celery tasks from this one thread: Celery keeps a producer and a
        result backend per sending thread, which cost ~1.5 ms each to make."""
        while True:
            item = self._orders.get()
            if item is None:
                return
            zone, token = item
            try:
                send_walk(self.app, zone, token, expires=self.pickup)
            except Exception as exc:  # the broker went away: the pickup time ends the host
                log.warning("sending a walk to zone %s: %s", zone, exc)

    def _shared(self) -> RunShared:
        """What every walk of the run shares; sent once to each worker process."""
        if self._run_shared is None:
            run = self.run
            self._run_shared = RunShared(
                runbook=run.runbook,
                params=run.params,
                secret_params=[n for n, p in run.runbook.params.items() if p.secret],
                options=replace(
                    self.ctx.options, resume_results={}, resume_unknown={}, stand_in=None
                ),
                run_info=self.ctx.run_info,
                linear=run.runbook.header.strategy != "free",
                step_mode=self.ctx.operator.step_mode,
            )
        return self._run_shared

    def _jump_chain(self, host: Host) -> dict[str, Host]:
        chain: dict[str, Host] = {}
        resolve = self.run.resolve_host
        current = host
        while resolve is not None and current.jump and current.jump not in chain:
            try:
                current = resolve(current.jump)
            except (KeyError, LookupError, EngineError):
                break  # an address, not an inventory host
            chain[current.name] = current
        return chain

    # ------------------------------------------------------------ stop

    def stop_now(self, kill: bool) -> None:
        """Ctrl-C, SIGTERM, the run's timeout: tell every worker now, not at the next beat."""
        if kill:
            self._kills += 1
        self._beat()

    def close(self) -> None:
        self._closing.set()
        self._orders.put(None)
        try:
            self.mailbox.send(self.address, _WAKE)  # the reader stops now, not at its timeout
        except Exception:
            pass  # it stops at its timeout then
        for thread in self._threads:
            thread.join(timeout=3)
        self.outbox.close()  # the last replies and beats go out first
        try:
            self.mailbox.close()
        except Exception as exc:
            log.warning("closing the run's mailbox: %s", exc)
        self.app.close()

    def _stop_state(self) -> StopState:
        if not self.ctx.stop.is_set():
            return None
        return (self.ctx.stop_reason, self.ctx.interrupted)

    # ------------------------------------------------------------ receiving

    def _receive(self) -> None:
        while not self._closing.is_set():
            try:
                bodies = self.mailbox.receive_burst(timeout=0.5)
            except Exception as exc:
                log.warning("run mailbox: %s; retrying", exc)
                time.sleep(0.5)
                continue
            messages: list[ToController] = []
            for body in bodies:
                if body == _WAKE:
                    continue
                try:
                    messages.append(self.sealer.open(body))
                except Unauthenticated as exc:
                    log.error("refused a message: %s", exc)
            if not messages:
                continue
            try:
                self._handle(messages)
            except Exception as exc:  # never lose the reader, nor leave hosts waiting
                log_bug(log, self.ctx.redactor, exc, f"handling {len(messages)} message(s)")
                for message in messages:
                    rh = self.hosts.get(message.host)
                    if rh is not None:
                        self._give_up(
                            rh, aborted=f"internal error on the controller: {type(exc).__name__}"
                        )

    def _handle(self, messages: list[ToController]) -> None:
        """What came in together: its events recorded in one batch (one history
        commit for a burst of hosts ending a step), then its questions answered."""
        now = time.monotonic()
        events: list[Event] = []
        starts: list[tuple[RemoteHost, int, bool]] = []  # (host, ask, its start dropped)
        then: list[tuple[RemoteHost, ToController]] = []
        for message in messages:
            with self._lock:
                self._seen[message.worker] = now
                rh = self.hosts.get(message.host)
            if isinstance(message, Alive) or rh is None:
                continue
            if isinstance(message, Begin):
                self._begin(rh, message)
                continue
            if rh.ended:
                continue  # given up on (worker silent, never taken): late words change nothing
            dropped = self._collect(rh, message.events, events)
            if isinstance(message, Ask) and message.question[0] == "started":
                starts.append((rh, message.ask_id, dropped))
            else:
                then.append((rh, message))
        recorded = self.ctx.emit_all(events)
        for rh, ask_id, dropped in starts:
            if not recorded:
                answer = f"lost: {self.ctx.stop_reason}"
            else:
                answer = "interrupted" if dropped else "ok"
            self._reply(rh, ask_id, answer)
        for rh, message in then:
            if isinstance(message, Ask):
                threading.Thread(
                    target=self._answer, args=(rh, message), name="dispatch-ask", daemon=True
                ).start()
            elif isinstance(message, Yield):
                rh.inbox.put(message.ask_id)
            elif isinstance(message, OnceDone):
                rh.once.put(message)
            elif isinstance(message, End):
                self._end(rh, message.unreachable, message.aborted)

    def _begin(self, rh: RemoteHost, message: Begin) -> None:
        with self._lock:
            taken = rh.ended or rh.begun
            if not taken:
                rh.begun, rh.worker, rh.address = True, message.worker, message.reply_to
                rh.result.worker = message.worker
        reply = Reply(self.ctx.run_id, rh.host.name, message.ask_id, "stop" if taken else "go")
        reply.stop = self._stop_state()
        if not taken and message.reply_to not in self._shared_sent:
            self._shared_sent.add(message.reply_to)  # the reader thread alone: no race
            reply.shared = self._shared()
        self._send(message.reply_to, reply)

    def _collect(self, rh: RemoteHost, events: list[Event], into: list[Event]) -> bool:
        """The worker's events as this run records them, added to `into`;
        True when a step's start was dropped (the run was interrupted)."""
        dropped = False
        for event in events:
            if isinstance(event, StepStarted):
                if self.ctx.stop.is_set() and self.ctx.interrupted:
                    # Not recorded, so resume knows it never ran: it does not.
                    dropped = True
                    continue
                rh.step = event.step_id
            elif isinstance(event, StepFinished):
                rh.result.steps.append(event.result)
            elif isinstance(event, HostFinished):
                event = replace(event, worker=rh.worker)
            into.append(event)
        return dropped

    def _end(self, rh: RemoteHost, unreachable: str | None, aborted: str | None) -> None:
        with self._lock:
            if rh.ended:
                return
            rh.ended = True
        rh.result.unreachable = rh.result.unreachable or unreachable
        rh.result.aborted = rh.result.aborted or aborted
        rh.inbox.put(_END)

    def _give_up(self, rh: RemoteHost, unreachable: str = "", aborted: str = "") -> None:
        """End a host the worker cannot end itself; said in the host's result."""
        with self._lock:
            if rh.ended:
                return
            rh.ended = True
        rh.result.unreachable = unreachable or None
        rh.result.aborted = aborted or None
        self.ctx.emit(
            HostFinished(
                self.ctx.run_id,
                host=rh.host.name,
                state=rh.result.state,
                reason=rh.result.reason(),
                worker=rh.worker,
            )
        )
        rh.once.put(
            OnceDone(
                self.ctx.run_id, rh.worker, rh.host.name, key="", unreachable=unreachable or aborted
            )
        )
        rh.inbox.put(_END)

    # ------------------------------------------------------------ answering

    def _answer(self, rh: RemoteHost, ask: Ask) -> None:
        """A question that may take a while (a person, a vault): in its own thread."""
        value: Any = None
        error: tuple[str, str] | None = None
        try:
            value = self._question(rh, ask)
        except Aborted as exc:
            error = ("aborted", str(exc))
        except SecretError as exc:
            error = ("secret", str(exc))
        except HostUnreachable as exc:
            error = ("unreachable", str(exc))
        except Exception as exc:
            error = ("aborted", f"{type(exc).__name__}: {exc}")
        if value is _OWNED:
            return  # the run_once owner was told already
        self._reply(rh, ask.ask_id, value, error)

    def _question(self, rh: RemoteHost, ask: Ask) -> Any:
        kind, *args = ask.question
        host, operator, secrets = rh.host.name, self.ctx.operator, self.ctx.secrets
        if kind == "confirm":
            step_id, prompt, policy = args
            return operator.confirm(host, step_id, prompt, policy)
        if kind == "manual":
            return operator.acknowledge(host, args[0], args[1])
        if kind == "step_gate":
            return operator.step_gate(host, args[0], args[1])
        if kind == "secret":
            return secrets.get(args[0])
        if kind == "env":
            return secrets.environment().get(args[0])
        if kind == "env_names":
            return list(secrets.environment())
        if kind == "password":
            return secrets.password_for(rh.host)
        if kind == "once":
            return self._once(rh, ask, args[0])
        if kind == "shared":
            return self._shared()
        raise Aborted(f"the controller does not know the question {kind!r}")

    def _once(self, rh: RemoteHost, ask: Ask, key: str) -> Any:
        """run_once across hosts wherever they run: the first to ask runs it."""

        def run_there() -> StepResult:
            self._reply(rh, ask.ask_id, ("own",))
            done = rh.once.get()
            if done.result is None:
                rh.hand_over = done.hand_over
                raise HostUnreachable(rh.host.name, done.unreachable or "the step did not finish")
            return done.result

        try:
            result, owner = self.ctx.run_once.get_or_run(
                key, run_there, may_hand_over=lambda: rh.hand_over
            )
        except HostUnreachable:
            return _OWNED  # the owner's own walk says so
        if owner:
            return _OWNED
        return ("shared", result)

    def _reply(
        self, rh: RemoteHost, ask_id: int, value: Any, error: tuple[str, str] | None = None
    ) -> None:
        reply = Reply(self.ctx.run_id, rh.host.name, ask_id, value, error, self._stop_state())
        self._send(rh.address, reply)

    def _send(self, to: str, message: Any) -> None:
        if not to:
            return
        self.outbox.post(to, self.sealer.seal(message))

    # ------------------------------------------------------------ watching

    def _watch(self) -> None:
        while not self._closing.wait(HEARTBEAT_SECONDS):
            try:
                self._beat()
                self._check()
            except Exception as exc:
                log_bug(log, self.ctx.redactor, exc, "watching the workers")

    def _beat(self) -> None:
        with self._lock:
            addresses = {rh.address for rh in self.hosts.values() if rh.begun and not rh.ended}
        beat = Beat(self.ctx.run_id, "", self._stop_state(), self._kills)
        for address in addresses:
            self._send(address, beat)

    def _check(self) -> None:
        now = time.monotonic()
        with self._lock:
            waiting = [rh for rh in self.hosts.values() if not rh.ended]
            seen = dict(self._seen)
        for rh in waiting:
            if not rh.begun:
                if not rh.sent_at:
                    continue
                if self.ctx.stop.is_set() and self.ctx.interrupted:
                    self._give_up(rh, aborted=self.ctx.stop_reason)
                elif now - rh.sent_at > self.pickup:
                    zone = rh.host.zone
                    self._give_up(
                        rh,
                        unreachable=(
                            f"no worker of zone {zone} took the host within {self.pickup:g}s "
                            f"(start one: runbook worker --zone {zone})"
                        ),
                    )
                continue
            silent = now - seen.get(rh.worker, now)
            if silent > self.dead_after:
                where = f" during step {rh.step}" if rh.step else ""
                self._give_up(
                    rh,
                    unreachable=(
                        f"worker {rh.worker} stopped answering{where} "
                        f"(no heartbeat for {silent:.0f}s): the host's walk was cut short"
                    ),
                )


_OWNED = object()  # a run_once answer already given by run_there


def _as_written(host: Host) -> Host:
    """The worker applies its own ~/.ssh/config (the zone's network), not ours."""
    from engine.inventory.sshconfig import as_written

    return as_written(host) if host.connection == "ssh" else host
