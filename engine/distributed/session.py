"""One host's walk on a worker: the same HostExecutor, the run's shared parts
asked of the controller (proxies.py)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import replace
from typing import Any, Protocol

from engine.connections.base import Connection, connection_types
from engine.connections.pool import ConnectionLimit
from engine.errors import Aborted, EngineError, HostUnreachable, SecretError, UsageError
from engine.events import EventBus
from engine.execution.context import Interrupted, RunContext
from engine.execution.executor import HostExecutor, holding
from engine.inventory.host import Host
from engine.redaction import Redactor

from .logs import log_bug
from .messages import (
    Ask,
    Begin,
    End,
    Events,
    Reply,
    RunShared,
    StopState,
    ToController,
    WalkOrder,
    Yield,
)
from .proxies import Forwarder, RemoteOperator, RemoteRunOnce, RemoteSecrets


class Hub(Protocol):
    """What a walk needs of its worker process (hub.py)."""

    name: str
    address: str
    slots: threading.BoundedSemaphore
    connection_limit: ConnectionLimit
    dead_after: float

    def heard(self, run_id: str) -> float: ...

    def shared(self, run_id: str) -> RunShared | None: ...

    def keep_shared(self, run_id: str, shared: RunShared) -> None: ...

    def send(self, to: str, message: ToController) -> None: ...


log = logging.getLogger("runbook.worker")

# Errors the controller's answer may carry, raised here as they would be there.
_ERRORS: dict[str, type[Exception]] = {
    "aborted": Aborted,
    "secret": SecretError,
    "usage": UsageError,
}


class ControllerGone(Interrupted):
    """The controller stopped answering: the walk stops before its next step."""


class WalkSession:
    def __init__(self, hub: Hub, order: WalkOrder) -> None:
        self.hub = hub
        self.order = order
        self.run_id = order.run_id
        self.worker = hub.name
        self.ssh_config_error = ""
        self.host = self._own_ssh_config(order.host)
        self.jump_hosts = {n: self._own_ssh_config(h) for n, h in order.jump_hosts.items()}
        self.inbox: queue.Queue[Reply | None] = queue.Queue()  # None: look up
        self.pending: list[Any] = []  # events not yet sent
        self._asks = 0
        self._kills = 0
        self._stop: StopState = None  # told before the walk began
        self.ctx: RunContext | None = None  # once the controller said go
        self.executor: HostExecutor | None = None

    def _context(self, shared: RunShared) -> RunContext:
        """The run's context as this walk sees it: its own redactor and bus,
        the controller's operator, run_once and secrets through stand-ins."""
        redactor = Redactor()
        redactor.learn_run_inputs(shared.secret_params, shared.params, shared.options.extra_vars)
        name = self.host.name
        options = replace(
            shared.options,
            resume_results={name: dict(self.order.resume_results)},
            resume_unknown={name: self.order.resume_unknown},
        )
        ctx = RunContext(
            run_id=self.run_id,
            options=options,
            bus=EventBus([Forwarder(self)], redactor),
            redactor=redactor,
            secrets=RemoteSecrets(redactor, self),
            operator=RemoteOperator(
                self, str(shared.run_info.get("operator", "unknown")), shared.step_mode
            ),
            run_info=shared.run_info,
            connect=self._connect,
            connection_limit=self.hub.connection_limit,
        )
        ctx.run_once = RemoteRunOnce(self)
        return ctx

    # ------------------------------------------------------------ the walk

    def run(self) -> None:
        shared = self.ask_begin()
        if shared is None:
            return  # the controller gave up on this host (or is gone): nothing ran
        ctx = self.ctx = self._context(shared)
        self.apply_stop(self._stop)
        executor = self.executor = HostExecutor(ctx, self.host, shared.runbook, shared.params)
        if self.ssh_config_error:  # nothing can connect: said as for any unreachable host
            executor.result.unreachable = self.ssh_config_error
            self.send(
                End(self.run_id, self.worker, self.host.name,
                    unreachable=self.ssh_config_error, aborted=None)
            )  # fmt: skip
            return
        walker = holding(executor.walk(), executor.connection)  # a generator: close()
        try:
            while True:
                with self.hub.slots:  # --concurrency: hosts working at once
                    try:
                        next(walker)
                    except StopIteration:
                        break
                if shared.linear:
                    self.ask(("yield",), message=Yield)  # the controller opens the next round
                else:
                    self.send(Yield(self.run_id, self.worker, self.host.name))
        except ControllerGone as exc:
            executor.result.aborted = executor.result.aborted or str(exc)
        except Exception as exc:  # a bug: the host's end says so, and the worker's log
            log_bug(log, ctx.redactor, exc, f"run {self.run_id}: walking {self.host.name}")
            executor.result.aborted = ctx.redactor.text(
                f"internal error on worker {self.worker}: {type(exc).__name__}: {exc}"
            )
        finally:
            walker.close()
            result = executor.result
            self.send(
                End(
                    self.run_id, self.worker, self.host.name,
                    unreachable=result.unreachable, aborted=result.aborted,
                )
            )  # fmt: skip

    def ask_begin(self) -> RunShared | None:
        """Begin; the run's shared part once the controller says go, else None.

        The controller sends the shared part once per worker process (it is the
        bulk of a task: the runbook, the run's host list); the hub keeps it."""
        self._asks += 1
        begin = Begin(
            self.run_id, self.worker, self.host.name, reply_to=self.hub.address, ask_id=self._asks
        )
        self.send(begin)
        try:
            reply = self._wait(self._asks)
            self._stop = reply.stop
            if reply.value != "go":
                return None
            shared = self.hub.shared(self.run_id)
            if shared is None:  # forgotten since (a long run, many runs): asked again
                shared = self.ask(("shared",))
                self.hub.keep_shared(self.run_id, shared)
            return shared
        except ControllerGone:
            return None

    # ------------------------------------------------------------ messages

    def send(self, message: ToController) -> None:
        message.events, self.pending = [*self.pending, *message.events], []
        self.hub.send(self.order.controller, message)

    def flush(self) -> None:
        if self.pending:
            self.send(Events(self.run_id, self.worker, self.host.name))

    def ask(self, question: tuple[Any, ...], message: type[Ask | Yield] = Ask) -> Any:
        """Send `question` with the pending events; wait for the controller's answer."""
        self._asks += 1
        ask_id = self._asks
        if message is Yield:
            self.send(Yield(self.run_id, self.worker, self.host.name, ask_id=ask_id))
        else:
            self.send(
                Ask(self.run_id, self.worker, self.host.name, ask_id=ask_id, question=question)
            )
        reply = self._wait(ask_id)
        self.apply_stop(reply.stop)
        if reply.error is not None:
            kind, text = reply.error
            if kind == "unreachable":
                raise HostUnreachable(self.host.name, text)
            raise _ERRORS.get(kind, Aborted)(text)
        return reply.value

    def _wait(self, ask_id: int) -> Reply:
        """The reply to `ask_id`. The wait may be long (a person answers, other
        hosts finish their round) but not past the controller's silence: the hub
        puts None in the inbox when the controller has been silent too long (a
        thousand waiting walks polling their inboxes would cost a core)."""
        while True:
            reply = self.inbox.get()
            if reply is None:
                silent = time.monotonic() - self.hub.heard(self.run_id)
                if silent <= self.hub.dead_after:
                    continue
                reason = (
                    f"the controller stopped answering ({silent:.0f}s without a word): "
                    "stopped before the next step"
                )
                log.warning("run %s: %s: %s", self.run_id, self.host.name, reason)
                if self.ctx is not None:
                    self.ctx.request_stop(reason, interrupt=True)
                raise ControllerGone(reason)
            if reply.ask_id == ask_id:
                return reply

    # ------------------------------------------------------ stop and kill

    def apply_stop(self, stop: StopState) -> None:
        if stop is None:
            return
        if self.ctx is None:
            self._stop = stop  # applied when the walk begins
            return
        reason, interrupted = stop
        self.ctx.request_stop(reason, interrupt=interrupted)

    def kill(self, count: int) -> None:
        """The controller's second Ctrl-C (or its timeout): kill what runs."""
        if count <= self._kills:
            return
        self._kills = count
        if self.ctx is None:
            return  # nothing runs yet
        self.ctx.cancellers.cancel_all()
        if self.executor is not None:
            threading.Thread(
                target=_interrupt, args=(self.executor.connection,), daemon=True
            ).start()

    def _connect(self, host: Host) -> Connection:
        factory = connection_types.get(host.connection)
        assert self.ctx is not None  # connections open only once the walk began
        return factory(host, secrets=self.ctx.secrets, resolve_host=self._resolve)

    def _resolve(self, name: str) -> Host:
        return self.jump_hosts[name]

    def _own_ssh_config(self, host: Host) -> Host:
        """The host with this worker's ~/.ssh/config applied (its keys, its
        jump hosts), as the controller applies its own to the hosts it walks."""
        if host.connection != "ssh":
            return host
        from engine.inventory.sshconfig import apply_ssh_config

        try:
            return apply_ssh_config(host)
        except EngineError as exc:
            self.ssh_config_error = f"worker {self.worker}: {exc}"
            return host


def _interrupt(holder: Any) -> None:
    try:
        holder.interrupt()
    except Exception:
        pass  # best effort: the step then ends at its timeout


__all__ = ["ControllerGone", "ToController", "WalkSession"]
