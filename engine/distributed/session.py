"""One host's walk on a worker: the same HostExecutor, the run's shared parts
asked of the controller (proxies.py)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Protocol

from engine.connections.base import Connection, connection_types
from engine.connections.pool import ConnectionLimit
from engine.errors import Aborted, HostUnreachable, SecretError, UsageError
from engine.events import EventBus
from engine.execution.context import Interrupted, RunContext
from engine.execution.executor import HostExecutor, holding
from engine.inventory.host import Host
from engine.redaction import Redactor

from .messages import (
    Ask,
    Begin,
    End,
    Events,
    Reply,
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
        self.host = order.host
        self.worker = hub.name
        self.inbox: queue.Queue[Reply] = queue.Queue()
        self.pending: list[Any] = []  # events not yet sent
        self._asks = 0
        self._kills = 0
        redactor = Redactor()
        redactor.learn_run_inputs(order.secret_params, order.params, order.options.extra_vars)
        self.ctx = RunContext(
            run_id=order.run_id,
            options=order.options,
            bus=EventBus([Forwarder(self)], redactor),
            redactor=redactor,
            secrets=RemoteSecrets(redactor, self),
            operator=RemoteOperator(self, str(order.run_info.get("operator", "unknown"))),
            run_info=order.run_info,
            connect=self._connect,
            connection_limit=hub.connection_limit,
        )
        self.ctx.run_once = RemoteRunOnce(self)
        self.executor: HostExecutor | None = None

    # ------------------------------------------------------------ the walk

    def run(self) -> None:
        if self.ask_begin() != "go":
            return  # the controller gave up on this host (or is gone): nothing ran
        executor = self.executor = HostExecutor(
            self.ctx, self.host, self.order.runbook, self.order.params
        )
        walker = holding(executor.walk(), executor.connection)  # a generator: close()
        try:
            while True:
                with self.hub.slots:  # --concurrency: hosts working at once
                    try:
                        next(walker)
                    except StopIteration:
                        break
                if self.order.linear:
                    self.ask(("yield",), message=Yield)  # the controller opens the next round
                else:
                    self.send(Yield(self.run_id, self.worker, self.host.name))
        except ControllerGone as exc:
            executor.result.aborted = executor.result.aborted or str(exc)
        except Exception as exc:  # a bug: the host's end says so, the worker's log has it all
            log.exception("run %s: walking %s", self.run_id, self.host.name)
            executor.result.aborted = self.ctx.redactor.text(
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

    def ask_begin(self) -> Any:
        self._asks += 1
        begin = Begin(
            self.run_id, self.worker, self.host.name, reply_to=self.hub.address, ask_id=self._asks
        )
        self.send(begin)
        try:
            reply = self._wait(self._asks)
        except ControllerGone:
            return "stop"
        self.apply_stop(reply.stop)
        return reply.value

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
        hosts finish their round) but not past the controller's silence."""
        while True:
            try:
                reply = self.inbox.get(timeout=0.5)
            except queue.Empty:
                silent = time.monotonic() - self.hub.heard(self.run_id)
                if silent > self.hub.dead_after:
                    reason = (
                        f"the controller stopped answering ({silent:.0f}s without a word): "
                        "stopped before the next step"
                    )
                    log.warning("run %s: %s: %s", self.run_id, self.host.name, reason)
                    self.ctx.request_stop(reason, interrupt=True)
                    raise ControllerGone(reason) from None
                continue
            if reply.ask_id == ask_id:
                return reply

    # ------------------------------------------------------ stop and kill

    def apply_stop(self, stop: StopState) -> None:
        if stop is not None:
            reason, interrupted = stop
            self.ctx.request_stop(reason, interrupt=interrupted)

    def kill(self, count: int) -> None:
        """The controller's second Ctrl-C (or its timeout): kill what runs."""
        if count <= self._kills:
            return
        self._kills = count
        self.ctx.cancellers.cancel_all()
        if self.executor is not None:
            threading.Thread(
                target=_interrupt, args=(self.executor.connection,), daemon=True
            ).start()

    def _connect(self, host: Host) -> Connection:
        factory = connection_types.get(host.connection)
        return factory(host, secrets=self.ctx.secrets, resolve_host=self._resolve)

    def _resolve(self, name: str) -> Host:
        return self.order.jump_hosts[name]


def _interrupt(holder: Any) -> None:
    try:
        holder.interrupt()
    except Exception:
        pass  # best effort: the step then ends at its timeout


__all__ = ["ControllerGone", "ToController", "WalkSession"]
