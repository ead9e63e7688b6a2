"""Run history: every event of every run, durable as it happens.

open_store()                    # location.py: $RUNBOOK_HISTORY (a PostgreSQL
                                # DSN) or SQLite at $RUNBOOK_HOME/history.db
store.py, sqlite.py, postgres.py  the store protocol and its two back-ends
recorder.py                     an event processor that writes the run
session.py                      recorded_run(): history, locks, file reports
lock.py                         one run of a runbook per host at a time
resume.py                       what a resumed run repeats and may skip
replay.py                       a run rebuilt from its rows (reports, resume)
view.py                         `runbook history` as text
"""

from __future__ import annotations

from .location import history_location, open_history, open_store
from .store import HistoryError, HistoryStore

__all__ = ["HistoryError", "HistoryStore", "history_location", "open_history", "open_store"]
