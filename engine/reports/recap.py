"""The end-of-run recap: one line per host that is not ok, worst first, with
its reason; ok hosts folded into one line.

In an incident the question after a run is "which hosts, and why": the
counts of the summary line do not say. Failures the operator must act on
come first (failed, unreachable, critical), then hosts the operator stopped,
then warnings, then hosts a stop came before.
"""

from __future__ import annotations

from engine.results import HostResult, RunResult, State

# Lines of hosts shown one by one; the rest are counted (history has them all).
MAX_HOST_LINES = 50
_OK_NAMES = 10

_RANK = {
    State.FAILED: 0,
    State.UNREACHABLE: 1,
    State.CRITICAL: 2,
    State.ABORTED: 3,
    State.WARN: 4,
}
_NOT_STARTED_RANK = 5


def rank(host: HostResult) -> int:
    if host.not_started:
        return _NOT_STARTED_RANK
    return _RANK.get(host.state, 6)


def label(host: HostResult) -> str:
    return "not started" if host.not_started else host.state.value


def needed(result: RunResult) -> bool:
    """A recap says something the summary line does not: several hosts, or a
    host that is not ok."""
    hosts = result.hosts.values()
    return len(result.hosts) > 1 or any(rank(h) < 6 for h in hosts)


def recap_rows(
    result: RunResult,
) -> tuple[str, list[tuple[HostResult, str]], list[str], list[str]]:
    """(header, the hosts to show one by one with their reasons, the names of
    the hosts never started, the ok hosts' names). Hosts never started share
    one reason, the stop the run's "stopped:" line gives: one line names them."""
    hosts = sorted(result.hosts.values(), key=lambda h: (rank(h), h.host))
    counts: dict[str, int] = {}
    for h in hosts:
        counts[label(h)] = counts.get(label(h), 0) + 1
    order = ["ok", "warn", "critical", "failed", "unreachable", "aborted", "not started", "skipped"]
    parts = [f"{k} {counts[k]}" for k in order if counts.get(k)]
    header = f"RECAP  {len(hosts)} host(s): " + " · ".join(parts)
    shown = [(h, h.reason()) for h in hosts if rank(h) < _NOT_STARTED_RANK]
    not_started = [h.host for h in hosts if h.not_started]
    ok = [h.host for h in hosts if rank(h) > _NOT_STARTED_RANK]
    return header, shown, not_started, ok


def names_line(what: str, names: list[str]) -> str:
    """`what: a, b, c … (+N)`: hosts that need no line each."""
    listed = ", ".join(names[:_OK_NAMES])
    more = f" … (+{len(names) - _OK_NAMES})" if len(names) > _OK_NAMES else ""
    return f"{what}: {listed}{more}"
