"""A worker process's side of the conversation: its mailbox, its walks, heartbeats.

Celery hands each walk task to a pool thread (worker.py); the hub is what those
threads share: one mailbox for every answer from every controller, routed to
the walk it is for; a heartbeat per run to its controller; the bound on hosts
working at once (`--concurrency`) and on open connections.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from engine.connections.pool import ConnectionLimit

from .mailbox import Mailbox, Outbox, open_mailbox
from .messages import Alive, Beat, Reply, RunShared, ToController, ToWorker, WalkOrder
from .seal import Sealer, Unauthenticated
from .session import WalkSession

log = logging.getLogger("runbook.worker")

HEARTBEAT_SECONDS = 1.0
KEPT_RUNS = 32  # runs whose shared part a worker keeps (a run's runbook, its hosts)


def dead_after() -> float:
    """Seconds of silence after which the other side is taken for dead."""
    return float(os.environ.get("RUNBOOK_WORKER_DEAD_AFTER", "10"))


def pickup_seconds() -> float:
    """How long a walk may wait in its zone's queue for a worker to take it."""
    return float(os.environ.get("RUNBOOK_WORKER_PICKUP", "60"))


class Hub:
    def __init__(self, broker: str, name: str, zone: str, concurrency: int, sealer: Sealer) -> None:
        self.name = name
        self.zone = zone
        self.sealer = sealer
        self.address = f"runbook.worker.{name}.{uuid.uuid4().hex[:8]}"
        self.mailbox: Mailbox = open_mailbox(broker, self.address)
        self.outbox = Outbox(self.mailbox, "hub-send")
        self.slots = threading.BoundedSemaphore(max(1, concurrency))
        self.connection_limit = ConnectionLimit(max(256, concurrency))
        self.dead_after = dead_after()
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], WalkSession] = {}
        self._heard: dict[str, float] = {}
        self._controllers: dict[str, str] = {}  # run → its mailbox
        self._shared: dict[str, RunShared] = {}  # run → what its walks share, oldest first
        self._stopping = threading.Event()
        for target, label in ((self._receive, "receive"), (self._beat, "heartbeat")):
            threading.Thread(target=target, name=f"hub-{label}", daemon=True).start()

    # ------------------------------------------------------------ tasks

    def walk(self, token: str) -> None:
        """The Celery task's body: open the order, walk the host, report the end."""
        try:
            order: WalkOrder = self.sealer.open(token, ttl=int(pickup_seconds()) + 3600)
        except Unauthenticated as exc:
            log.error("refused a walk task: %s", exc)
            return
        if order.host.zone != self.zone:
            log.error("refused a walk of %s: zone %s is not this worker's (%s)",
                      order.host.name, order.host.zone, self.zone)  # fmt: skip
            return
        session = WalkSession(self, order)
        key = (order.run_id, order.host.name)
        with self._lock:
            self._sessions[key] = session
            self._heard.setdefault(order.run_id, time.monotonic())
            self._controllers[order.run_id] = order.controller
        log.info("run %s: walking %s", order.run_id, order.host.name)
        try:
            session.run()
        finally:
            with self._lock:
                del self._sessions[key]
                if not any(run == order.run_id for run, _ in self._sessions):
                    self._heard.pop(order.run_id, None)
                    self._controllers.pop(order.run_id, None)
            log.info("run %s: done with %s", order.run_id, order.host.name)

    def send(self, to: str, message: ToController) -> None:
        self.outbox.post(to, self.sealer.seal(message))

    def heard(self, run_id: str) -> float:
        with self._lock:
            return self._heard.get(run_id, 0.0)

    def shared(self, run_id: str) -> RunShared | None:
        with self._lock:
            return self._shared.get(run_id)

    def keep_shared(self, run_id: str, shared: RunShared) -> None:
        with self._lock:
            self._shared.pop(run_id, None)
            self._shared[run_id] = shared
            while len(self._shared) > KEPT_RUNS:
                del self._shared[next(iter(self._shared))]

    def close(self) -> None:
        self._stopping.set()
        self.outbox.close()
        self.mailbox.close()

    # ------------------------------------------------------------ threads

    def _receive(self) -> None:
        while not self._stopping.is_set():
            try:
                body = self.mailbox.receive(timeout=1.0)
            except Exception as exc:  # the broker went away: retry, as Celery does
                if self._stopping.is_set():
                    return
                log.warning("mailbox: %s; retrying", exc)
                time.sleep(1.0)
                continue
            if body is None:
                continue
            try:
                message: ToWorker = self.sealer.open(body)
            except Unauthenticated as exc:
                log.error("refused a message: %s", exc)
                continue
            self._route(message)

    def _route(self, message: ToWorker) -> None:
        if isinstance(message, Reply) and message.shared is not None:
            # Kept before any walk of the run reads its reply: a later walk's
            # go (without it) is routed after this one.
            self.keep_shared(message.run_id, message.shared)
        with self._lock:
            if message.run_id in self._heard:
                self._heard[message.run_id] = time.monotonic()
            if isinstance(message, Beat):
                sessions = [s for (run, _), s in self._sessions.items() if run == message.run_id]
            else:
                one = self._sessions.get((message.run_id, message.host))
                sessions = [one] if one is not None else []
        for session in sessions:
            if isinstance(message, Reply):
                session.inbox.put(message)
            elif isinstance(message, Beat):
                session.apply_stop(message.stop)
                if message.kill:
                    session.kill(message.kill)

    def _beat(self) -> None:
        """Alive, once a second, to every controller this worker walks hosts for;
        and the walks of a run whose controller fell silent are told to look up."""
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            now = time.monotonic()
            with self._lock:
                runs = dict(self._controllers)
                silent = {
                    run for run, heard in self._heard.items() if now - heard > self.dead_after
                }
                waking = [s for (run, _), s in self._sessions.items() if run in silent]
            for session in waking:
                session.inbox.put(None)
            for run_id, controller in runs.items():
                try:
                    self.send(controller, Alive(run_id, self.name, ""))
                except Exception as exc:
                    log.warning("heartbeat to run %s: %s", run_id, exc)


def default_name(zone: str) -> str:
    return f"{zone}@{socket.gethostname()}"
