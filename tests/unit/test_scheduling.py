"""The linear strategy's scheduler and the event bus's batching, on plain threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from engine.events import EventBus, LogMessage, _Ticket
from engine.execution.lockstep import Lockstep
from engine.redaction import Redactor


class Trace:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, int]] = []
        self.running = 0
        self.most = 0

    def walker(self, name: str, steps: int) -> Iterator[None]:
        for n in range(steps):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.002 * (hash(name) % 3))  # hosts finish a step at different times
            with self.lock:
                self.running -= 1
                self.log.append((name, n))
            yield None


def _run(lockstep: Lockstep, forks: int) -> None:
    threads = [threading.Thread(target=lockstep.work) for _ in range(forks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive()


@pytest.mark.parametrize("forks", [1, 2, 5])
def test_every_host_finishes_a_step_before_any_starts_the_next(forks: int) -> None:
    trace = Trace()
    steps = {"a": 3, "b": 1, "c": 3, "d": 2, "e": 3}
    rounds: list[int] = []
    walkers = {name: trace.walker(name, k) for name, k in steps.items()}
    lockstep = Lockstep(walkers, after_round=lambda: rounds.append(len(trace.log)))
    _run(lockstep, forks)
    numbers = [n for _, n in trace.log]
    assert numbers == sorted(numbers)  # no step N+1 anywhere before every step N
    assert sorted(trace.log) == sorted((h, n) for h, k in steps.items() for n in range(k))
    assert trace.most <= forks
    # A round ends when its hosts yielded; the last one ends when the walkers are done.
    assert rounds == [5, 9, 12, 12]
    assert lockstep.error is None


def test_a_bug_in_a_walk_stops_the_rounds_and_is_kept() -> None:
    def broken() -> Iterator[None]:
        yield None
        raise RuntimeError("engine bug")

    trace = Trace()
    lockstep = Lockstep({"ok": trace.walker("ok", 5), "bad": broken()}, after_round=lambda: None)
    _run(lockstep, 2)
    assert isinstance(lockstep.error, RuntimeError)
    assert [n for _, n in trace.log] == [0, 1]  # the round with the bug finished, no more


class SlowRecorder:
    """Records what it was handed, one call at a time, slowly (like a commit)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.inside = 0
        self.overlapped = False

    def handle(self, event: LogMessage) -> None:
        self.handle_batch([event])

    def handle_batch(self, events: list[LogMessage]) -> None:
        self.inside += 1
        self.overlapped |= self.inside > 1
        time.sleep(0.01)
        self.calls.append([e.message for e in events])
        self.inside -= 1


def test_events_emitted_together_are_handed_over_together_in_order() -> None:
    recorder = SlowRecorder()
    bus = EventBus([recorder], Redactor())
    done: dict[str, bool] = {}

    def host(name: str) -> None:
        for n in range(5):
            bus.emit(LogMessage("r", host=name, step_id="s", level="info", message=f"{name}-{n}"))
            # emit returned: the processor has the event already (nothing is left queued)
            done[f"{name}-{n}"] = any(f"{name}-{n}" in call for call in recorder.calls)

    threads = [threading.Thread(target=host, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    handed = [m for call in recorder.calls for m in call]
    assert sorted(handed) == sorted(f"h{i}-{n}" for i in range(8) for n in range(5))
    for i in range(8):  # each host's events in the order it emitted them
        mine = [m for m in handed if m.startswith(f"h{i}-")]
        assert mine == [f"h{i}-{n}" for n in range(5)]
    assert all(done.values())
    assert not recorder.overlapped  # one batch at a time
    assert max(len(call) for call in recorder.calls) > 1  # and batches did form


def test_a_processor_error_reaches_the_emitter() -> None:
    class Broken:
        def handle(self, event: LogMessage) -> None:
            raise OSError("disk full")

    bus = EventBus([Broken()], Redactor())
    with pytest.raises(OSError, match="disk full"):
        bus.emit(LogMessage("r", host="h", step_id="s", level="info", message="x"))


class FakeConnection:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def open(self) -> None:
        self.log.append(f"open {self.name}")

    def close(self) -> None:
        self.log.append(f"close {self.name}")


def test_the_limit_closes_the_most_recently_used_idle_connection() -> None:
    from engine.connections.pool import ConnectionHolder, ConnectionLimit
    from engine.inventory.host import Host

    log: list[str] = []
    limit = ConnectionLimit(2)
    holders = {
        n: ConnectionHolder(Host(name=n), lambda h: FakeConnection(log, h.name), limit)  # type: ignore[arg-type, return-value]
        for n in "abc"
    }
    for n in "ab":  # a round over a and b: both stay open
        with holders[n].in_use():
            holders[n].get()
    assert log == ["open a", "open b"]
    with holders["c"].in_use():
        holders["c"].get()  # one too many: b, used last and idle, goes (a is needed first)
    assert log[-2:] == ["open c", "close b"]
    with holders["a"].in_use():
        holders["a"].get()  # still open: no reconnect
        with holders["b"].in_use():
            holders["b"].get()  # b reconnects; a is busy, so c goes
    assert log[-2:] == ["open b", "close c"]
    assert holders["c"].opened  # it was connected once: run_once's hand-over asks that


def test_an_emitter_interrupted_while_waiting_does_not_stall_the_bus() -> None:
    handled: list[str] = []
    first_in = threading.Event()

    class Slow:
        def handle(self, event: LogMessage) -> None:
            handled.append(event.message)
            if event.message == "first":
                first_in.set()
                time.sleep(0.3)

    bus = EventBus([Slow()], Redactor())

    def log(message: str) -> LogMessage:
        return LogMessage("r", host="h", step_id="s", level="info", message=message)

    first = threading.Thread(target=bus.emit, args=(log("first"),))
    first.start()
    first_in.wait(5)

    class Interrupted(BaseException):
        pass

    original = _Ticket  # the next emitter's wait is interrupted, as Ctrl-C would

    def interrupted_ticket() -> _Ticket:
        ticket = original()
        ticket.wake = _RaisingLock(ticket.wake, Interrupted)  # type: ignore[assignment]
        return ticket

    import engine.events as events_module

    events_module._Ticket = interrupted_ticket  # type: ignore[misc, assignment]
    try:
        with pytest.raises(Interrupted):
            bus.emit(log("abandoned"))
    finally:
        events_module._Ticket = original  # type: ignore[misc]
    first.join(5)
    later = threading.Thread(target=bus.emit, args=(log("later"),))
    later.start()
    later.join(5)
    assert not later.is_alive()  # the bus still hands events over
    assert handled[0] == "first" and handled[-1] == "later"


class _RaisingLock:
    """A ticket's wake lock whose blocking acquire is interrupted once."""

    def __init__(self, lock: threading.Lock, exc: type[BaseException]) -> None:
        self.lock, self.exc, self.raised = lock, exc, False

    def acquire(self, blocking: bool = True) -> bool:
        if blocking and not self.raised:
            self.raised = True
            raise self.exc()
        return self.lock.acquire(blocking)

    def release(self) -> None:
        self.lock.release()


def test_a_processor_that_raises_any_exception_reaches_its_emitter_only() -> None:
    seen: list[str] = []

    class Exits:
        def handle(self, event: LogMessage) -> None:
            if event.message == "boom":
                raise SystemExit("processor exits")

    class Records:
        def handle(self, event: LogMessage) -> None:
            seen.append(event.message)

    bus = EventBus([Exits(), Records()], Redactor())
    with pytest.raises(SystemExit):
        bus.emit(LogMessage("r", host="h", step_id="s", level="info", message="boom"))
    bus.emit(LogMessage("r", host="h", step_id="s", level="info", message="fine"))
    assert seen == ["boom", "fine"]  # the history still records what the console failed on


def test_a_reconnect_during_an_idle_close_stays_counted() -> None:
    from engine.connections.pool import ConnectionHolder, ConnectionLimit
    from engine.inventory.host import Host

    live: list[str] = []  # names of the connection objects open now

    class Conn:
        def __init__(self, name: str) -> None:
            self.name = name

        def open(self) -> None:
            live.append(self.name)

        def close(self) -> None:
            live.remove(self.name)

    gate = threading.Event()

    class SlowLimit(ConnectionLimit):  # widens the window inside an idle close
        def closed(self, holder: ConnectionHolder) -> None:
            if holder.host.name == "a" and not gate.is_set():
                gate.wait(0.3)  # the window: wider than step("a") needs to reach it
            super().closed(holder)

    limit = SlowLimit(1)
    holders = {
        n: ConnectionHolder(Host(name=n), lambda h: Conn(h.name), limit)  # type: ignore[arg-type, return-value]
        for n in "abc"
    }

    def step(name: str) -> None:
        with holders[name].in_use():
            holders[name].get()

    step("a")
    opener = threading.Thread(target=step, args=("b",))  # closes idle a, slowly
    opener.start()
    time.sleep(0.1)
    step("a")  # a's next step reconnects meanwhile
    gate.set()
    opener.join(5)
    step("c")
    assert live == ["c"]  # every connection the limit let open was closed in turn
