"""Around one execution: history recorder, per-host locks, file reports.

`runbook run` and `runbook resume` both wrap `run_runbook` in `recorded_run`,
so a run and its resume are recorded, locked and reported the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from engine.events import now_iso

from .location import history_location, open_store
from .lock import acquire_locks, release_locks
from .recorder import HistoryRecorder
from .store import CRASHED, RUNNING, HistoryStore

if TYPE_CHECKING:
    from engine.execution.runner import Run


@contextmanager
def recorded_run(
    run: Run,
    *,
    options: dict[str, Any] | None = None,
    junit: str | None = None,
    report: str | None = None,
    store: HistoryStore | None = None,
    record: bool = True,
) -> Iterator[Run]:
    """Open the history, lock the hosts, attach the processors; undo all of it after.
    `record=False` (engine.run's choice): the file reports only, no history, no lock."""
    own_store = store is None
    if store is None and record:
        location = history_location()
        store = open_store(location) if location else None
    try:
        if store is not None:
            if not run.options.dry_run:  # a dry run changes nothing: it needs no lock
                acquire_locks(store, run.runbook.name, [h.name for h in run.hosts], run.run_id)
            if run.operator.board is None:  # `runbook serve` brings its own, with its users
                from engine.users import roles_from_env

                from .gates import GateBoard

                run.operator.board = GateBoard(store, roles_from_env())
            run.processors.insert(
                0,
                HistoryRecorder(
                    store,
                    redactor=run.redactor,
                    extra={"step_ids": run.runbook.step_ids(), "options": options or {}},
                ),
            )
        if junit:
            from engine.reports.junit import junit_report

            run.processors.append(junit_report(junit))
        if report:
            from engine.reports.html import html_report

            run.processors.append(html_report(report))
        try:
            yield run
        except BaseException:
            if store is not None:
                _mark_crashed(store, run.run_id)
            raise
    finally:
        if store is not None:
            try:
                _release(store, run.run_id)
            finally:
                if own_store:
                    store.close()


def _release(store: HistoryStore, run_id: str) -> None:
    """Release the run's host locks. A store that fails now (its disk filled up,
    its server went away) must not turn the run's own exit code into a crash:
    the locks then outlive this process, and the next run takes them over as
    stale once it finds the process gone."""
    try:
        release_locks(store, run_id)
    except Exception as exc:
        sys.stderr.write(
            f"warning: run history {store.location}: cannot release the host locks of run "
            f"{run_id} ({type(exc).__name__}: {exc}); the next run takes them over once "
            "this process has ended\n"
        )


def _mark_crashed(store: HistoryStore, run_id: str) -> None:
    try:
        row = store.get_run(run_id)
        if row is not None and row["state"] == RUNNING:
            store.update_run(run_id, state=CRASHED, finished_at=now_iso())
    except Exception:  # the original exception matters more than this bookkeeping
        pass
