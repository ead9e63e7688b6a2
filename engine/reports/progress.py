"""What is still running, for the operator watching a run.

A finished step prints a line; a step still running printed nothing, so one
slow host of twenty looked like a hung engine. `Progress` follows the step
events (which host runs which step, since when); the console shows it as a
status line redrawn at the bottom of a terminal (`LiveStatus`), or, in a CI
log or a pipe, as a "still running" line every `every` seconds (`Ticker`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# Hosts named one by one in a status line; the rest are counted.
_NAMED = 4


class Progress:
    """Which host runs which step since when, and how many hosts are done."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.total = 0
        self.done = 0
        # host → the steps it is in, outermost first: (step id, name, since)
        self.running: dict[str, list[tuple[str, str, float]]] = {}
        self.lock = threading.Lock()

    def run_started(self, hosts: int) -> None:
        with self.lock:
            self.total, self.done = hosts, 0

    def step_started(self, host: str, step_id: str, name: str) -> None:
        with self.lock:
            self.running.setdefault(host, []).append((step_id, name, self.clock()))

    def step_finished(self, host: str, step_id: str) -> None:
        with self.lock:
            stack = self.running.get(host, [])
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == step_id:
                    del stack[i:]
                    break
            if not stack:
                self.running.pop(host, None)

    def host_finished(self, host: str) -> None:
        with self.lock:
            self.running.pop(host, None)
            self.done += 1

    def busy(self, older_than: float = 0.0) -> list[tuple[str, str, float]]:
        """(host, innermost step name, seconds in its outermost step), longest first."""
        now = self.clock()
        with self.lock:
            rows = [
                (host, stack[-1][1], now - stack[0][2])
                for host, stack in self.running.items()
                if stack and now - stack[0][2] >= older_than
            ]
        return sorted(rows, key=lambda r: (-r[2], r[0]))

    def status(self) -> str:
        """`check · 17/20 hosts done · running: node3 12s, node7 12s (+3)`."""
        rows = self.busy()
        if not rows:
            return f"{self.done}/{self.total} hosts done"
        steps: dict[str, int] = {}
        for _, name, _ in rows:
            steps[name] = steps.get(name, 0) + 1
        current = max(steps, key=lambda n: steps[n])
        return f"{current} · {self.done}/{self.total} hosts done · running: {_named(rows)}"


def _named(rows: list[tuple[str, str, float]]) -> str:
    shown = ", ".join(f"{host} {_secs(secs)}" for host, _, secs in rows[:_NAMED])
    return shown + (f" (+{len(rows) - _NAMED})" if len(rows) > _NAMED else "")


def _secs(seconds: float) -> str:
    s = int(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s"


def still_running(progress: Progress, every: float) -> str | None:
    """The ticker's line: hosts in a step for `every` seconds or more; None if none."""
    rows = progress.busy(older_than=every)
    if not rows:
        return None
    listed = ", ".join(f"{host} {name} {_secs(secs)}" for host, name, secs in rows[:_NAMED])
    more = f" (+{len(rows) - _NAMED})" if len(rows) > _NAMED else ""
    return f"… still running: {listed}{more} · {progress.done}/{progress.total} hosts done"


class Ticker:
    """Off a terminal: calls `say(line)` every `every` seconds while steps run long."""

    def __init__(self, progress: Progress, every: float, say: Callable[[str], None]) -> None:
        self.progress, self.every, self.say = progress, every, say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            line = still_running(self.progress, self.every)
            if line:
                self.say(line)

    def stop(self) -> None:
        self._stop.set()


class LiveStatus:
    """On a terminal: one status line under the step lines, redrawn 4 times a
    second; taken away while the operator is asked something (`paused`)."""

    def __init__(self, console: Any, progress: Progress, lock: threading.RLock) -> None:
        from rich.live import Live

        self.progress = progress
        self.lock = lock  # the console's: lines and redraws never interleave
        self.live = Live(console=console, auto_refresh=False, transient=True)
        self._held = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        from rich.text import Text

        while not self._stop.wait(0.25):
            with self.lock:
                if self._held or self._stop.is_set():
                    continue
                if not self.live.is_started:
                    self.live.start()
                self.live.update(Text("⏵ " + self.progress.status(), style="dim"), refresh=True)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No status line during the block (a prompt must not be drawn over)."""
        with self.lock:
            self._held += 1
            if self.live.is_started:
                self.live.stop()
        try:
            yield
        finally:
            with self.lock:
                self._held -= 1

    def stop(self) -> None:
        with self.lock:
            self._stop.set()
            if self.live.is_started:
                self.live.stop()
