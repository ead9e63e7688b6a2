"""The linear strategy's scheduler and the event bus's batching, on plain threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from engine.events import EventBus, LogMessage
from engine.runner import Lockstep
from engine.secrets import Redactor


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
    from engine.context import ConnectionHolder, ConnectionLimit
    from engine.host import Host

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

