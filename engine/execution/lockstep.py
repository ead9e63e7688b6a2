"""The linear strategy's scheduler: every host finishes step N before any starts N+1."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any


class Lockstep:
    """The linear strategy: every host finishes step N before any starts N+1.

    `forks` threads share each round's hosts, taking the next one as they become
    free; the thread that finishes a round's last host checks max_fail and opens
    the next round. No future or task per host and step: a round costs two lock
    acquisitions per host and one wake-up of the waiting threads.
    """

    def __init__(self, walkers: dict[str, Iterator[Any]], after_round: Callable[[], None]) -> None:
        self.walkers = walkers
        self.after_round = after_round
        self.round = list(walkers)  # hosts of the current round, in inventory order
        self.taken = 0  # how many of them a thread has taken
        self.left = len(self.round)  # how many have not finished the round
        self.more: set[str] = set()  # hosts with steps after this round
        self.error: BaseException | None = None
        self._cv = threading.Condition()

    def work(self) -> None:
        while True:
            with self._cv:
                while self.round and self.taken == len(self.round):
                    self._cv.wait()
                if not self.round:
                    return
                name = self.round[self.taken]
                self.taken += 1
            try:
                more = _advance(self.walkers[name])
            except BaseException as exc:  # an engine bug: stop, and re-raise in the runner
                more = False
                self.error = self.error or exc
            with self._cv:
                if more:
                    self.more.add(name)
                self.left -= 1
                if self.left == 0:
                    self._next_round()

    def _next_round(self) -> None:
        try:
            self.after_round()
        except BaseException as exc:
            self.error = self.error or exc
        nxt = [] if self.error else [n for n in self.round if n in self.more]
        self.round, self.taken, self.left, self.more = nxt, 0, len(nxt), set()
        self._cv.notify_all()


def _advance(walker: Iterator[Any]) -> bool:
    try:
        next(walker)
    except StopIteration:
        return False
    return True
