"""One run of a runbook per host at a time, held in the history store.

The lock is a row per (runbook, host) naming its holder: run id, pid and the
control node it runs on. A holder whose process is gone from this control node
(a crash, a `kill -9`) is stale and is taken over; a holder on another control
node cannot be checked from here and is honoured. Refusing is exit 4 (aborted:
nothing ran) so schedulers treat it like any other aborted run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from engine.errors import Aborted
from engine.events import now_iso

from .store import HistoryError, HistoryStore, LockHolder


class LockHeld(Aborted):
    """Another live run holds the runbook's lock on one of the hosts."""

    def __init__(self, holder: LockHolder) -> None:
        self.holder = holder
        super().__init__(
            f"runbook {holder.runbook} is already running on {holder.host}: "
            f"run {holder.run_id} (pid {holder.pid} on {holder.control_node}, "
            f"since {holder.started_at}); wait for it to finish, or stop it"
        )


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def is_stale(holder: LockHolder, here: str | None = None) -> bool:
    return holder.control_node == (here or socket.gethostname()) and not pid_alive(holder.pid)


def acquire_locks(
    store: HistoryStore, runbook: str, hosts: Iterable[str], run_id: str
) -> list[str]:
    """Lock every host for `run_id`, or none: raises LockHeld naming the live holder,
    HistoryError when the store cannot take the locks (nothing has run yet)."""
    try:
        return _acquire(store, runbook, hosts, run_id)
    except (LockHeld, HistoryError):
        raise
    except Exception as exc:  # a full disk, a server gone: the store's own error
        raise HistoryError(
            f"run history {store.location}: cannot lock the hosts ({type(exc).__name__}: "
            f"{exc}); nothing was run"
        ) from None


def _acquire(store: HistoryStore, runbook: str, hosts: Iterable[str], run_id: str) -> list[str]:
    here = socket.gethostname()
    taken: list[str] = []
    try:
        for host in hosts:
            me = LockHolder(runbook, host, run_id, os.getpid(), here, now_iso())
            while True:
                holder = store.try_lock(me)
                if holder is None or holder.run_id == run_id:
                    break
                if not is_stale(holder, here):
                    raise LockHeld(holder)
                if store.take_over_lock(holder, me):
                    break
                # Someone else replaced the stale holder first: look again.
            taken.append(host)
    except BaseException:
        if taken:
            store.release_locks(run_id)
        raise
    return taken


def release_locks(store: HistoryStore, run_id: str) -> None:
    store.release_locks(run_id)
