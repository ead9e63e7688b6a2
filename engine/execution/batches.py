"""`serial` and `max_fail`: a run's hosts in batches, and limits given as a
number or a percentage of the hosts. Pure functions, kept apart from the
runner that schedules the batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from engine.inventory.host import Host


def parse_limit(value: int | str | None, total: int) -> int | None:
    """`serial` / `max_fail`: an int, or "25%" of `total`, rounded down."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    pct = float(value.strip().rstrip("%"))
    return math.floor(total * pct / 100)


def batches(hosts: list[Host], serial: int | str | list[int | str] | None) -> list[list[Host]]:
    """The hosts in batches of `serial`; no serial (or 0) is one batch of all.

    A list is canaries first: `[1, 5, "25%"]` is one host, then five, then a
    quarter of all hosts at a time until none is left (the last size repeats).
    A percentage is of all hosts, and one that rounds down to no host means one
    host per batch, as in Ansible: "10%" of 5 hosts must not become all five."""
    sizes = serial if isinstance(serial, list) else [serial]
    out: list[list[Host]] = []
    start = 0
    for one in _repeat_last(sizes):
        if start >= len(hosts):
            break
        size = parse_limit(one, len(hosts))
        if isinstance(one, str):
            size = max(1, size or 0)
        if not size:  # 0 or none: everyone left
            size = len(hosts) - start
        out.append(hosts[start : start + size])
        start += size  # at least one host a batch: the loop ends
    return out


def _repeat_last(sizes: list[Any]) -> Iterator[Any]:
    yield from sizes
    while True:
        yield sizes[-1]
